//! Unit tests of [`super`].
use super::*;

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn uboot_reads_raucs_variables() {
    let env = vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
    ]);
    let view = RaucUboot.read(&env).unwrap();
    assert_eq!(view.order, vec![SlotName::B, SlotName::A]);
    assert!(!view.bootable(SlotName::B));
    assert!(view.bootable(SlotName::A));
}

#[test]
fn uboot_bad_removes_from_order_and_zeroes_counter() {
    let mut env = vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ]);
    RaucUboot.set_bad(&mut env, SlotName::B);
    assert_eq!(env["BOOT_ORDER"], "A");
    assert_eq!(env["BOOT_B_LEFT"], "0");
}

#[test]
fn uboot_primary_moves_to_front_and_resets_counter() {
    let mut env = vars(&[
        ("BOOT_ORDER", "A"),
        ("BOOT_A_LEFT", "2"),
        ("BOOT_B_LEFT", "0"),
    ]);
    RaucUboot.set_primary(&mut env, SlotName::B, 3);
    assert_eq!(env["BOOT_ORDER"], "B A");
    assert_eq!(env["BOOT_B_LEFT"], "3");
    assert_eq!(env["BOOT_A_LEFT"], "2");
}

#[test]
fn uboot_boot_takes_a_try_then_falls_back() {
    let mut env = vars(&[
        ("BOOT_ORDER", "B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "1"),
    ]);
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::B));
    assert_eq!(env["BOOT_B_LEFT"], "0");
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::A));
    assert_eq!(env["BOOT_A_LEFT"], "2");
}

#[test]
fn uboot_boot_with_no_slot_resets_counters() {
    let mut env = vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
    ]);
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::NoSlotResetCounters);
    assert_eq!(env["BOOT_A_LEFT"], "3");
}

#[test]
fn uboot_missing_counter_boots_with_the_env_attempts() {
    // The script: `test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT ${bascule_attempts}`.
    let mut env = vars(&[("BOOT_ORDER", "A B"), ("BASCULE_ATTEMPTS", "5")]);
    assert_eq!(RaucUboot.read(&env).unwrap().tries, [5, 5]);
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::A));
    assert_eq!(env["BOOT_A_LEFT"], "4");
    assert_eq!(env["BOOT_B_LEFT"], "5");
    let mut bare = vars(&[("BOOT_ORDER", "B")]);
    assert_eq!(RaucUboot.boot(&mut bare), BootDecision::Boot(SlotName::B));
    assert_eq!(bare["BOOT_B_LEFT"], "2", "3 without BASCULE_ATTEMPTS");
}

#[test]
fn uboot_missing_or_empty_order_is_a_b_and_is_saved() {
    for env in [vars(&[]), vars(&[("BOOT_ORDER", "")])] {
        let mut env = env;
        assert_eq!(RaucUboot.read(&env).unwrap().order, SlotName::ALL.to_vec());
        assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::A));
        assert_eq!(env["BOOT_ORDER"], "A B");
    }
}

#[test]
fn uboot_reads_order_words_and_counters_as_bytes() {
    // A vendor byte in BOOT_ORDER: U-Boot skips the word it does not know.
    let mut env = vars(&[("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "3")]);
    env.insert("BOOT_ORDER", &b"B\xe9 A"[..]);
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::A));
    assert_eq!(env.get("BOOT_ORDER").unwrap().as_bytes(), b"B\xe9 A");
}

#[test]
fn uboot_bad_never_writes_an_empty_order() {
    // An empty order means "A B" to the script: it would revive both slots.
    let mut env = vars(&[("BOOT_ORDER", "A"), ("BOOT_A_LEFT", "3")]);
    RaucUboot.set_bad(&mut env, SlotName::A);
    assert_eq!(env["BOOT_ORDER"], NO_SLOT_ORDER);
    assert!(RaucUboot.read(&env).unwrap().order.is_empty());
}

#[test]
fn uboot_skips_unknown_words_in_the_order() {
    let mut env = vars(&[
        ("BOOT_ORDER", "X B A"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ]);
    assert_eq!(
        RaucUboot.read(&env).unwrap().order,
        [SlotName::B, SlotName::A]
    );
    assert_eq!(RaucUboot.boot(&mut env), BootDecision::Boot(SlotName::B));
}

#[test]
fn uboot_counters_read_as_test_and_setexpr_do() {
    // `test` reads base 0 (decimal, 0x hex, 0 octal); `setexpr` reads hex, prints hex.
    for (value, bootable, after) in [
        ("10", true, "f"),
        ("0x3", true, "2"),
        ("a", false, ""),
        ("-1", false, ""),
        ("010", true, "f"),
    ] {
        let mut env = vars(&[("BOOT_ORDER", "A"), ("BOOT_A_LEFT", value)]);
        let decision = RaucUboot.boot(&mut env);
        assert_eq!(
            decision == BootDecision::Boot(SlotName::A),
            bootable,
            "{value}"
        );
        if bootable {
            assert_eq!(env["BOOT_A_LEFT"], after, "{value}");
        }
    }
    assert_eq!(uboot_strtol("0x1F"), 31);
    assert_eq!(uboot_strtol("9z"), 9);
    assert_eq!(uboot_setexpr_decrement("1"), "0");
}

#[test]
fn uboot_primary_keeps_the_attempts_in_the_env() {
    let mut env = vars(&[("BOOT_ORDER", "A")]);
    RaucUboot.set_primary(&mut env, SlotName::B, 5);
    assert_eq!(env[ATTEMPTS_VAR], "5");
    RaucUboot.set_good(&mut env, SlotName::B, 4);
    assert_eq!(
        env[ATTEMPTS_VAR], "5",
        "a confirm leaves it: init-env and install write it"
    );
    let mut reset = vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "0"),
        ("BOOT_B_LEFT", "0"),
        (ATTEMPTS_VAR, "5"),
    ]);
    assert_eq!(
        RaucUboot.boot(&mut reset),
        BootDecision::NoSlotResetCounters
    );
    assert_eq!(
        (reset.get_str("BOOT_A_LEFT"), reset.get_str("BOOT_B_LEFT")),
        (Some("5"), Some("5"))
    );
}

#[test]
fn grub_missing_or_empty_order_is_a_b_and_flags_are_exact() {
    for order in [None, Some("")] {
        let mut env = vars(&[("A_OK", "1"), ("B_OK", "1")]);
        if let Some(order) = order {
            env.insert("ORDER", order);
        }
        assert_eq!(RaucGrub.boot(&mut env), BootDecision::Boot(SlotName::A));
    }
    let env = vars(&[
        ("ORDER", "A B"),
        ("A_OK", " 1"),
        ("B_OK", "1"),
        ("B_TRY", ""),
    ]);
    assert_eq!(RaucGrub.read(&env).unwrap().tries, [0, 0]);
}

#[test]
fn grub_good_means_ok_and_not_tried() {
    let env = vars(&[
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "1"),
        ("B_OK", "1"),
        ("B_TRY", "0"),
    ]);
    let view = RaucGrub.read(&env).unwrap();
    assert_eq!(view.tries, [0, 1]);
}

#[test]
fn grub_boot_sets_try_and_primary_clears_it() {
    let mut env = vars(&[
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "0"),
        ("B_OK", "0"),
        ("B_TRY", "0"),
    ]);
    RaucGrub.set_primary(&mut env, SlotName::B, 3);
    assert_eq!(env["ORDER"], "B A");
    assert_eq!(RaucGrub.boot(&mut env), BootDecision::Boot(SlotName::B));
    assert_eq!(env["B_TRY"], "1");
    // B failed to confirm: next boot falls back to A.
    assert_eq!(RaucGrub.boot(&mut env), BootDecision::Boot(SlotName::A));
}

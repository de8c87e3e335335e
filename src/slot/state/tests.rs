//! Unit tests of [`super`].
use super::*;
use crate::slot::scheme::{BootDecision, RaucGrub, RaucUboot};

fn fresh_uboot() -> EnvVars {
    [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn v2() -> InstalledImage {
    InstalledImage {
        version: "2.0.0".into(),
        security_version: 1,
    }
}

/// Begins an install of B while A runs; panics on a refusal.
fn begin_b(s: &dyn BootScheme, vars: &EnvVars) -> BeginInstall {
    begin_install(s, vars, SlotName::B, SlotName::A, 3).expect("A stays bootable")
}

/// A whole install of `image` into B while A runs.
fn install_b(s: &dyn BootScheme, vars: &EnvVars, attempts: u8) -> EnvVars {
    let begun = begin_install(s, vars, SlotName::B, SlotName::A, attempts).expect("A bootable");
    mark_pending(s, &begun.vars, &begun.marked, &v2(), attempts)
}

#[test]
fn install_cycle_good_pending_confirmed() {
    let s = &RaucUboot;
    let begun = begin_b(s, &fresh_uboot());
    let st = BootState::read(s, &begun.vars).unwrap();
    assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
    assert_eq!(st.slot(SlotName::A).state, SlotState::Good);

    let mut env = mark_pending(s, &begun.vars, &begun.marked, &v2(), 3);
    let st = BootState::read(s, &env).unwrap();
    assert_eq!(
        st.slot(SlotName::B).state,
        SlotState::Pending { tries_left: 3 }
    );
    assert!(st.slot(SlotName::B).primary);
    assert_eq!(st.slot(SlotName::B).version.as_deref(), Some("2.0.0"));

    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::B));
    let env = confirm(s, &env, SlotName::B, 3).unwrap();
    let st = BootState::read(s, &env).unwrap();
    assert_eq!(st.slot(SlotName::B).state, SlotState::Good);
    assert!(st.pending.is_empty());
}

#[test]
fn confirming_a_confirmed_slot_writes_nothing() {
    assert_eq!(confirm(&RaucUboot, &fresh_uboot(), SlotName::A, 3), None);
}

#[test]
fn pending_slot_that_runs_out_of_tries_is_a_rollback() {
    let s = &RaucUboot;
    let mut env = install_b(s, &fresh_uboot(), 2);
    for _ in 0..2 {
        assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::B));
    }
    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::A));
    let st = BootState::read(s, &env).unwrap();
    assert_eq!(
        st.slot(SlotName::B).state,
        SlotState::Bad {
            reason: BadReason::TriesExhausted
        }
    );
    // B still leads BOOT_ORDER, but A is what the bootloader boots: the primary.
    assert_eq!(st.view.order.first(), Some(&SlotName::B));
    assert!(st.slot(SlotName::A).primary && !st.slot(SlotName::B).primary);
}

#[test]
fn grub_cycle_uses_one_try() {
    let s = &RaucGrub;
    let base: EnvVars = [
        ("ORDER", "A B"),
        ("A_OK", "1"),
        ("A_TRY", "0"),
        ("B_OK", "1"),
        ("B_TRY", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut env = install_b(s, &base, 3);
    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::B));
    let env = confirm(s, &env, SlotName::B, 3).unwrap();
    assert_eq!(
        BootState::read(s, &env).unwrap().slot(SlotName::B).state,
        SlotState::Good
    );
}

#[test]
fn factory_state_is_complete_for_every_scheme() {
    let v1 = InstalledImage {
        version: "1.0.0".into(),
        security_version: 0,
    };
    let schemes: [&dyn BootScheme; 2] = [&RaucUboot, &RaucGrub];
    for s in schemes {
        let mut vars = EnvVars::new();
        vars.insert("bootdelay", "2");
        vars.insert("BASCULE_PENDING", "A");
        let env = factory_state(s, &vars, SlotName::A, Some(&v1), 3);
        let st = BootState::read(s, &env).unwrap();
        assert_eq!(st.slot(SlotName::A).state, SlotState::Good, "{}", s.name());
        assert!(st.slot(SlotName::A).primary);
        assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
        assert!(st.pending.is_empty());
        assert_eq!(st.slot(SlotName::A).version.as_deref(), Some("1.0.0"));
        assert_eq!(env["bootdelay"], "2");
        let unknown = factory_state(s, &vars, SlotName::B, None, 3);
        assert_eq!(
            BootState::read(s, &unknown)
                .unwrap()
                .slot(SlotName::B)
                .version,
            None
        );
    }
}

#[test]
fn mark_bad_of_a_bad_slot_writes_nothing() {
    let s = &RaucUboot;
    let env = begin_b(s, &fresh_uboot()).vars;
    assert_eq!(mark_bad(s, &env, SlotName::B), None);
}

#[test]
fn an_install_that_leaves_no_fallback_cannot_begin() {
    // `mark-bad booted` on A, then an install into B: nothing would be bootable.
    for s in [&RaucUboot as &dyn BootScheme, &RaucGrub] {
        let factory = factory_state(s, &EnvVars::new(), SlotName::A, None, 3);
        let both = install_b(s, &factory, 3);
        let mut booted_b = both.clone();
        s.boot(&mut booted_b);
        let good_b = confirm(s, &booted_b, SlotName::B, 3).unwrap();
        let a_bad = mark_bad(s, &good_b, SlotName::A).unwrap();
        let refused = begin_install(s, &a_bad, SlotName::A, SlotName::B, 3);
        assert!(
            refused.is_ok(),
            "{}: writing the bad slot is fine",
            s.name()
        );
        let b_bad = mark_bad(s, &good_b, SlotName::B).unwrap();
        let err = begin_install(s, &b_bad, SlotName::A, SlotName::B, 3).unwrap_err();
        assert_eq!(
            (err.target, err.fallback),
            (SlotName::A, SlotName::B),
            "{}",
            s.name()
        );
        assert!(
            err.to_string().contains("no other slot would be bootable"),
            "{err}"
        );
    }
}

#[test]
fn begin_install_rearms_a_confirmed_booted_slot_in_the_same_write() {
    // GRUB after a normal boot of confirmed A: A_TRY=1. Without the re-arm, a
    // broken B would be tried, then GRUB would find no slot, reset the flags and
    // try B again: twice its tries before falling back.
    let s = &RaucGrub;
    let mut env = factory_state(s, &EnvVars::new(), SlotName::A, None, 3);
    s.boot(&mut env);
    let st = BootState::read_running(s, &env, SlotName::A).unwrap();
    assert_eq!(st.slot(SlotName::A).state, SlotState::Unarmed);
    let mut env = install_b(s, &env, 3);
    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::B));
    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::A));
    // The same for U-Boot with A's counter spent by unconfirmed boots.
    let u = &RaucUboot;
    let mut env = factory_state(u, &EnvVars::new(), SlotName::A, None, 2);
    u.boot(&mut env);
    u.boot(&mut env);
    let mut env = install_b(u, &env, 2);
    assert_eq!(env["BOOT_A_LEFT"], "2");
    let boots: Vec<_> = (0..3).map(|_| u.boot(&mut env)).collect();
    let b = BootDecision::Boot(SlotName::B);
    assert_eq!(boots, [b, b, BootDecision::Boot(SlotName::A)]);
}

#[test]
fn a_booted_slot_on_its_last_try_is_pending_not_rolled_back() {
    let s = &RaucUboot;
    let mut env = install_b(s, &fresh_uboot(), 1);
    assert_eq!(s.boot(&mut env), BootDecision::Boot(SlotName::B));
    let running = BootState::read_running(s, &env, SlotName::B).unwrap();
    assert_eq!(
        running.slot(SlotName::B).state,
        SlotState::Pending { tries_left: 0 }
    );
    assert!(running
        .slot(SlotName::B)
        .state
        .to_string()
        .contains("last try"));
    let from_a = BootState::read_running(s, &env, SlotName::A).unwrap();
    assert!(matches!(
        from_a.slot(SlotName::B).state,
        SlotState::Bad {
            reason: BadReason::TriesExhausted
        }
    ));
    assert_eq!(
        predict_next_boot(s, &env),
        NextBoot {
            slot: Some(SlotName::A),
            after_reset: false
        }
    );
}

#[test]
fn next_boot_names_the_slot_after_a_reset() {
    let s = &RaucGrub;
    let mut env = factory_state(s, &EnvVars::new(), SlotName::A, None, 3);
    s.boot(&mut env);
    assert_eq!(
        predict_next_boot(s, &env),
        NextBoot {
            slot: Some(SlotName::A),
            after_reset: true
        }
    );
}

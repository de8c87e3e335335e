//! What Debian's U-Boot 2023.01 does with the two commands the shipped script uses on
//! counters, `test ${X} -gt 0` and `setexpr X ${X} - 1`, for the values a field env
//! may hold. Run on the real U-Boot with a probe script through the same harness;
//! bascule's model must do the same (see `uboot_differential`).
use std::collections::BTreeMap;

use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;
use bascule_qemu::uboot::{UbootHarness, ENV_SIZE};

/// Records `test ${X} -gt 0` in X_GT0 and the result of `setexpr` in X.
const PROBE: &str = "\
if test ${X} -gt 0; then setenv X_GT0 yes; else setenv X_GT0 no; fi
setexpr X ${X} - 1
saveenv
";

/// (stored value or None for missing, `test -gt 0`, X after `setexpr X ${X} - 1`)
const FACTS: &[(Option<&str>, &str, Option<&str>)] = &[
    (Some("3"), "yes", Some("2")),
    (Some("1"), "yes", Some("0")),
    // setexpr reads hex and prints lowercase hex without 0x; test reads C-style
    // (0x hex, leading 0 octal, else decimal) and stops at the first bad digit.
    (Some("10"), "yes", Some("f")),
    (Some("15"), "yes", Some("14")),
    (Some("0x3"), "yes", Some("2")),
    (Some("a"), "no", Some("9")),
    (Some("f"), "no", Some("e")),
    (Some("08"), "no", Some("7")),
    (Some("010"), "yes", Some("f")),
    (Some("1a"), "yes", Some("19")),
    (Some("0"), "no", Some("ffffffffffffffff")),
    (Some("-1"), "no", Some("ffffffffffffffff")),
    // An empty value is dropped by `env import`; a missing X makes `test -gt 0`
    // true (two arguments) and `setexpr X - 1` a usage error that leaves X missing.
    (Some(""), "yes", None),
    (None, "yes", None),
    // A blank value splits to no word: the same as missing, but X stays " ".
    (Some(" "), "yes", Some(" ")),
];

#[test]
fn test_and_setexpr_on_counters_as_uboot_2023_01_does_them() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("probe.cmd");
    std::fs::write(&script, PROBE).unwrap();
    let mut harness = UbootHarness::new(&script).unwrap();
    let codec = UbootCodec::new(ENV_SIZE, false).unwrap();
    let images: Vec<Vec<u8>> = FACTS
        .iter()
        .map(|(value, _, _)| {
            let vars: EnvVars = value
                .iter()
                .map(|v| ("X".to_string(), v.to_string()))
                .collect();
            codec.encode(&vars, 0).unwrap()
        })
        .collect();
    let boots = harness.boot_each(&images).unwrap();
    let mut wrong = BTreeMap::new();
    for ((value, gt0, after), boot) in FACTS.iter().zip(&boots) {
        let saved = codec.decode(&boot.saved).unwrap().vars;
        let seen = (saved.get_str("X_GT0"), saved.get_str("X"));
        if seen != (Some(*gt0), *after) {
            wrong.insert(format!("{value:?}"), format!("{seen:?}\n{}", boot.console));
        }
    }
    assert!(wrong.is_empty(), "U-Boot differs from FACTS: {wrong:#?}");
}

/// bascule's model of the two commands agrees with every fact above (no QEMU needed:
/// this pins the model to what the real U-Boot was seen to do).
#[test]
fn the_model_reads_and_decrements_counters_as_uboot_does() {
    use bascule::slot::scheme::{uboot_setexpr_decrement, uboot_strtol};
    for (value, gt0, after) in FACTS {
        let Some(word) = value.and_then(|v| v.split_whitespace().next()) else {
            continue; // no word: `test` sees two arguments; the script fills these in
        };
        let model_gt0 = if uboot_strtol(word) > 0 { "yes" } else { "no" };
        assert_eq!(model_gt0, *gt0, "test {word:?} -gt 0");
        assert_eq!(
            Some(uboot_setexpr_decrement(word).as_str()),
            *after,
            "setexpr {word:?}"
        );
    }
}

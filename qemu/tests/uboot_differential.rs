//! The bounded U-Boot differential: every hostile env and a sample of the walk states,
//! booted on Debian's real U-Boot 2023.01 with the shipped `bootloader/uboot/boot.cmd`,
//! must agree with bascule's model. Fails (never skips) when QEMU or U-Boot is missing.
use std::time::Instant;

use bascule_qemu::corpus::uboot_bounded;
use bascule_qemu::uboot::{shipped_script_path, UbootHarness};
use bascule_qemu::uboot_diff;

#[test]
fn real_uboot_agrees_with_the_model_on_the_bounded_corpus() {
    let start = Instant::now();
    let mut harness = UbootHarness::new(&shipped_script_path()).unwrap();
    let report = uboot_diff::run(&mut harness, &uboot_bounded()).unwrap();
    for d in &report.disagreements {
        println!("{d}\n");
    }
    println!(
        "{} ({} QEMU runs, {:?})",
        report.summary(),
        report.qemu_runs,
        start.elapsed()
    );
    assert!(report.boots >= report.envs);
    assert!(
        report.disagreements.is_empty(),
        "{} (the disagreements are printed above)",
        report.summary()
    );
}

/// The comparison is not vacuous: a script that always boots B without taking a try
/// disagrees with the model on a fresh env, on the slot and on the counter.
#[test]
fn a_script_that_boots_the_wrong_slot_is_caught() {
    use bascule_qemu::corpus::{UbootCase, UbootEnvImage};
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("always-b.cmd");
    std::fs::write(
        &script,
        "setenv bascule_slot B\nsetenv bascule_load \"${bascule_load_B}\"\nsaveenv\n\
         run bascule_load\nrun bascule_boot\n",
    )
    .unwrap();
    let fresh = [
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "3"),
    ];
    let cases = vec![UbootCase {
        name: "fresh".into(),
        env: UbootEnvImage::Vars(
            fresh
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }];
    let mut harness = UbootHarness::new(&script).unwrap();
    let report = uboot_diff::run(&mut harness, &cases).unwrap();
    assert_eq!(report.disagreements.len(), 1, "{}", report.summary());
    let text = report.disagreements[0].to_string();
    assert!(
        text.contains("U-Boot: boot B") && text.contains("model : boot A"),
        "{text}"
    );
    assert!(
        text.contains("BOOT_A_LEFT: U-Boot \"3\", model \"2\""),
        "{text}"
    );
}

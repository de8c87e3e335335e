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

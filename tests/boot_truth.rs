//! Issue 15's CLI defects, through the CLI on the file-backed device (RAUC U-Boot
//! scheme, 3 attempts): an install after `mark-bad booted` (no fallback while the
//! target is written), an install while the booted slot's tries are spent (the
//! fallback is re-armed in the same write), and what `status` says the bootloader
//! will do at the next boot.
mod common;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture};

const IMAGE_LEN: usize = (256 << 10) + 99;

#[test]
fn install_after_mark_bad_of_the_booted_slot_is_refused_before_anything_is_written() {
    let fx = common::booted_b_fixture(IMAGE_LEN, 51);
    // B is booted and confirmed, A (v1) is good: marking B bad is allowed.
    fx.run(&["mark-bad", "booted"]).ok();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 52),
        &BundleOpts::default().version("3.0.0"),
    );
    let before = fx.snapshot();
    fx.install(&bundle, &["--force"]).fails_with(&[
        "refusing to write slot A",
        "no other slot would be bootable",
    ]);
    fx.assert_untouched(&before);
}

#[test]
fn mark_bad_of_the_confirmed_slot_while_the_other_is_on_trial_is_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 53), &BundleOpts::default());
    fx.install(&bundle, &[]).ok();
    let before = fx.snapshot();
    // A is the only confirmed slot; B is pending. Without A, a failing B leaves the
    // device with nothing confirmed to fall back to.
    fx.run(&["mark-bad", "A"])
        .fails_with(&["refusing to mark slot A bad", "slot B is pending"]);
    fx.assert_untouched(&before);
}

#[test]
fn install_while_the_booted_slot_spent_its_tries_rearms_it_in_the_same_write() {
    let fx = Fixture::new();
    // Three boots of A without a confirm: its counter is spent.
    for _ in 0..3 {
        fx.run(&["simulate-boot"]).ok();
    }
    assert_eq!(fx.env().get_str("BOOT_A_LEFT"), Some("0"));
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Bad {
            reason: bascule::slot::BadReason::NoTriesLeft
        }
    );
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 54), &BundleOpts::default());
    fx.install(&bundle, &[]).ok();
    assert_eq!(fx.env().get_str("BOOT_A_LEFT"), Some("3"), "A re-armed");
    // A broken B gets its 3 tries, then A boots: not a counter reset and 3 more of B.
    let mut boots = Vec::new();
    for _ in 0..4 {
        fx.run(&["simulate-boot"]).ok();
        boots.push(fx.booted());
    }
    let (a, b) = (SlotName::A, SlotName::B);
    assert_eq!(boots, [b, b, b, a]);
}

#[test]
fn status_says_a_slot_runs_its_last_try_and_what_boots_next() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 55), &BundleOpts::default());
    fx.install(&bundle, &[]).ok();
    for _ in 0..3 {
        fx.run(&["simulate-boot"]).ok();
    }
    assert_eq!(fx.booted(), SlotName::B);
    let status = fx.run(&["status"]).ok().stdout;
    assert!(
        status.contains("slot B:      pending, running its last try"),
        "{status}"
    );
    assert!(!status.contains("rolled back"), "{status}");
    assert!(status.contains("next boot:   slot A\n"), "{status}");
    let json = fx.status_json();
    assert_eq!(json["next_boot"]["slot"], "A");
    assert_eq!(json["next_boot"]["after_reset"], false);
}

#[test]
fn status_of_a_confirmed_slot_whose_tries_are_spent_names_the_boot_after_the_reset() {
    let fx = Fixture::new();
    for _ in 0..3 {
        fx.run(&["simulate-boot"]).ok();
    }
    let status = fx.run(&["status"]).ok().stdout;
    assert!(
        status.contains("slot A:      good, but this boot spent its last try"),
        "{status}"
    );
    assert!(
        status.contains("next boot:   slot A, after the bootloader finds no slot"),
        "{status}"
    );
    // mark-good re-arms it; then the next boot is plainly A.
    fx.run(&["mark-good"]).ok();
    let status = fx.run(&["status"]).ok().stdout;
    assert!(status.contains("slot A:      good —"), "{status}");
    assert!(status.contains("next boot:   slot A\n"), "{status}");
}

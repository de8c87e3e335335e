//! `mark-good` and `mark-bad` through the CLI: neither may leave the device with no
//! bootable slot, and mark-good never reports a bad slot as good.
mod common;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::Fixture;

const IMAGE_LEN: usize = (512 << 10) + 777;

#[test]
fn mark_bad_of_the_only_bootable_slot_is_refused() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    // A is booted and the only bootable slot: marking it bad leaves the bootloader
    // nothing to boot.
    let run = fx.run(&["mark-bad", "A"]);
    let after = fx.boot_state();
    let bootable: Vec<_> = SlotName::ALL
        .into_iter()
        .filter(|s| after.view.bootable(*s))
        .collect();
    assert!(
        !bootable.is_empty(),
        "mark-bad A (exit {}) left no bootable slot: {:?}\n{}{}",
        run.code,
        fx.env(),
        run.stdout,
        run.stderr
    );
    run.fails_with(&["slot A"]);
    fx.assert_untouched(&before);
}

#[test]
fn mark_good_never_claims_a_bad_slot_is_good() {
    let fx = common::booted_b_fixture(IMAGE_LEN, 36);
    fx.run(&["mark-bad", "B"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Bad {
            reason: bascule::slot::BadReason::NotInBootOrder
        }
    );
    let run = fx.run(&["mark-good"]);
    let state = fx.slot_state(SlotName::B);
    if run.code == 0 {
        assert_eq!(
            state,
            SlotState::Good,
            "mark-good exited 0 but B is {state}: {}",
            run.stdout
        );
    } else {
        assert!(
            matches!(state, SlotState::Bad { .. }),
            "refused but changed B to {state}"
        );
        run.fails_with(&["slot B"]);
    }
}

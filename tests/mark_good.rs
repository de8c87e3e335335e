//! `mark-good` and the security floor through the CLI (and, for the order of the two
//! writes, through the library with recording stores).
//!
//! Only the booted slot confirming itself raises the floor. `mark-good other` of a
//! release that rolled back (or is otherwise not good) is refused without `--force`,
//! and with it puts the slot back on trial without touching the floor. The env commit
//! that confirms a slot happens before the floor rises, never after.
mod common;

use std::sync::{Arc, Mutex};

use bascule::config::SystemConfig;
use bascule::device::Device;
use bascule::ops::{self, GoodOutcome, SlotSelector};
use bascule::slot::{BadReason, SlotState};
use bascule_hal::{EnvStore, EnvVars, HalError, MemFloor, SecurityFloorStore};
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture, ATTEMPTS};

const IMAGE_LEN: usize = (256 << 10) + 333;

fn floor(fx: &Fixture) -> u64 {
    fx.status_json()["security_floor"]
        .as_u64()
        .expect("status has a security_floor")
}

/// v2 (security version 1) confirmed on B; v3 (security version 2) installed into A,
/// booted `ATTEMPTS` times without being confirmed, and rolled back to B.
fn rolled_back_v3() -> Fixture {
    let fx = Fixture::new();
    fx.install_boot_confirm(
        IMAGE_LEN,
        1,
        &BundleOpts::default().version("2.0.0").secver(1),
    );
    let v3 = fx.bundle(
        &fx.image(IMAGE_LEN, 2),
        &BundleOpts::default().version("3.0.0").secver(2),
    );
    fx.install(&v3, &[]).ok();
    for _ in 0..ATTEMPTS {
        fx.run(&["simulate-boot"]).ok();
        assert_eq!(fx.booted(), SlotName::A);
    }
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B, "no rollback to B");
    fx.run(&["mark-good"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Bad {
            reason: BadReason::TriesExhausted
        }
    );
    assert_eq!(floor(&fx), 1);
    fx
}

#[test]
fn mark_good_other_refuses_to_revive_a_rolled_back_release_without_force() {
    let fx = rolled_back_v3();
    let before = fx.snapshot();
    for which in ["other", "A"] {
        fx.run(&["mark-good", which]).fails_with(&[
            "slot A (v3.0.0) rolled back after its tries ran out",
            "--force makes it primary with 3 fresh tries",
            "security floor (1) is not raised until it boots and confirms itself",
        ]);
        fx.assert_untouched(&before);
        assert_eq!(floor(&fx), 1, "mark-good {which} raised the floor");
    }
    // A fix at the old security version still installs (v3's 2 was never accepted).
    let fix = fx.bundle(
        &fx.image(IMAGE_LEN, 3),
        &BundleOpts::default().version("3.0.1").secver(1),
    );
    fx.install(&fix, &[]).ok();
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Pending {
            tries_left: ATTEMPTS
        }
    );
}

#[test]
fn forced_revival_goes_on_trial_and_raises_the_floor_only_once_it_confirms_itself() {
    let fx = rolled_back_v3();
    let run = fx.run(&["mark-good", "other", "--force"]).ok();
    assert!(
        run.stdout.contains("slot A (v3.0.0) was bad")
            && run.stdout.contains("primary with 3 fresh tries")
            && run.stdout.contains("security floor stays 1"),
        "{}",
        run.stdout
    );
    let st = fx.boot_state();
    assert_eq!(
        st.slot(SlotName::A).state,
        SlotState::Pending {
            tries_left: ATTEMPTS
        }
    );
    assert!(st.slot(SlotName::A).primary, "revived slot is not primary");
    assert_eq!(st.slot(SlotName::B).state, SlotState::Good, "fallback lost");
    assert_eq!(floor(&fx), 1, "revival raised the floor");
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::A);
    let run = fx.run(&["mark-good"]).ok();
    assert!(
        run.stdout.contains("security floor raised from 1 to 2"),
        "{}",
        run.stdout
    );
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
    assert_eq!(floor(&fx), 2);
}

#[test]
fn mark_good_of_a_pending_slot_that_never_booted_needs_force_and_never_raises_the_floor() {
    let fx = Fixture::new();
    let v2 = fx.bundle(
        &fx.image(IMAGE_LEN, 4),
        &BundleOpts::default().version("2.0.0").secver(3),
    );
    fx.install(&v2, &[]).ok();
    let before = fx.snapshot();
    fx.run(&["mark-good", "B"]).fails_with(&[
        "slot B (v2.0.0) is on trial",
        "has not confirmed itself by booting",
    ]);
    fx.assert_untouched(&before);
    fx.run(&["mark-good", "B", "--force"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: ATTEMPTS
        }
    );
    assert_eq!(floor(&fx), 0, "a slot that never booted raised the floor");
}

#[test]
fn mark_good_of_a_slot_holding_no_known_release_is_refused_even_with_force() {
    // As provisioned: B holds bytes no install finished writing.
    let fx = Fixture::new();
    let before = fx.snapshot();
    fx.run(&["mark-good", "other", "--force"])
        .fails_with(&["slot B", "does not know what it holds"]);
    fx.assert_untouched(&before);
}

#[test]
fn mark_good_of_a_good_slot_that_is_not_booted_keeps_the_floor() {
    let fx = Fixture::new();
    fx.install_boot_confirm(
        IMAGE_LEN,
        5,
        &BundleOpts::default().version("2.0.0").secver(1),
    );
    // A (v1, security version 0) is good and not booted; B (security version 1) booted.
    let run = fx.run(&["mark-good", "other"]).ok();
    assert!(run.stdout.contains("not raised"), "{}", run.stdout);
    assert_eq!(floor(&fx), 1);
}

/// Stores that log their writes in one shared order.
type Log = Arc<Mutex<Vec<&'static str>>>;

struct LoggedEnv {
    inner: Box<dyn EnvStore + Send>,
    log: Log,
    fail: bool,
}

impl EnvStore for LoggedEnv {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        self.inner.load()
    }
    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        if self.fail {
            return Err(HalError::PowerCut);
        }
        self.log.lock().unwrap().push("env commit");
        self.inner.commit(vars)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

struct LoggedFloor {
    inner: MemFloor,
    log: Log,
}

impl SecurityFloorStore for LoggedFloor {
    fn read(&mut self) -> Result<u32, HalError> {
        self.inner.read()
    }
    fn raise(&mut self, to: u32) -> Result<bool, HalError> {
        let raised = self.inner.raise(to)?;
        if raised {
            self.log.lock().unwrap().push("floor raise");
        }
        Ok(raised)
    }
    fn describe(&self) -> String {
        "logged memory".into()
    }
}

/// The device of `fx` with logging stores; its env commits fail when `fail_commit`.
fn logged_device(fx: &Fixture, fail_commit: bool) -> (Device, Log) {
    let mut dev = Device::open(SystemConfig::load(&fx.config()).unwrap()).unwrap();
    let log = Log::default();
    let inner = std::mem::replace(
        &mut dev.env,
        Box::new(bascule_hal::env::GrubEnv::new(
            bascule_hal::env::MemFiles::new(),
        )),
    );
    dev.env = Box::new(LoggedEnv {
        inner,
        log: log.clone(),
        fail: fail_commit,
    });
    dev.floor = Box::new(LoggedFloor {
        inner: MemFloor::new(0),
        log: log.clone(),
    });
    (dev, log)
}

/// B pending with v2 (security version 2), booted, not yet confirmed.
fn booted_pending_b() -> Fixture {
    let fx = Fixture::new();
    let v2 = fx.bundle(
        &fx.image(IMAGE_LEN, 6),
        &BundleOpts::default().version("2.0.0").secver(2),
    );
    fx.install(&v2, &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B);
    fx
}

#[test]
fn the_floor_rises_after_the_confirmation_is_committed() {
    let fx = booted_pending_b();
    let (mut dev, log) = logged_device(&fx, false);
    let marked = ops::mark_good(&mut dev, SlotSelector::Booted, false).unwrap();
    assert_eq!(marked.outcome, GoodOutcome::Confirmed { floor: (0, 2) });
    assert_eq!(*log.lock().unwrap(), ["env commit", "floor raise"]);
}

#[test]
fn a_confirmation_that_fails_to_commit_leaves_the_floor_alone() {
    let fx = booted_pending_b();
    let (mut dev, log) = logged_device(&fx, true);
    ops::mark_good(&mut dev, SlotSelector::Booted, false).unwrap_err();
    assert_eq!(
        dev.floor.read().unwrap(),
        0,
        "floor raised before the commit"
    );
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: ATTEMPTS - 1
        }
    );
}

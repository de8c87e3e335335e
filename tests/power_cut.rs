//! The exhaustive power-cut campaign: a whole update cycle on a simulated board (slot A,
//! slot B, a boot environment, all on one power rail), cut at every operation.
//! It runs for every env backend ([`EnvBackend`]): on a block device, a redundant
//! U-Boot env and a native env (RAUC U-Boot scheme), and ChromeOS GPT attributes with
//! a `bascule-env` partition (ChromeOS scheme); on a filesystem, a `grubenv` file
//! replaced by rename (RAUC GRUB scheme), whose directory is a `MemFiles` on the rail.
//!
//! For each scenario the campaign runs it once cleanly and logs every `write_at` and
//! `sync` of every device, and for GRUB every `write` (of `grubenv.new`), `sync_file`,
//! `rename` (over `grubenv`) and `sync_dir` of the env directory, in one global order.
//! Then, for each cut point, it runs the scenario again on a fresh board armed to lose
//! power at that operation (optionally tearing it), keeps only what was durable (bytes,
//! and the env directory's synced entries and content), and reboots with the
//! bootloader model (the backend scheme's `boot` over the env loaded from the rebuilt
//! env device or directory).
//! It checks:
//! - the env loads (never an error) and the scheme can read it;
//! - the previously confirmed slot still holds its image, the env still names its
//!   version, and it boots within the boots the try counters allow when nothing is ever
//!   confirmed again (the new image may fail its health check forever). ChromeOS
//!   takes no try from a successful slot, so there the chain may instead settle on a
//!   slot bascule confirmed during the scenario (see `check_reboot`,
//!   tests/powercut/reboot.rs);
//! - every slot the bootloader boots in that chain holds exactly the image of the
//!   version the env records for it (SHA-256 over the image length);
//! - a chain never ends with no bootable slot (a brick): with RAUC's U-Boot scheme a
//!   second counter reset in a row (likewise a second `<x>_TRY` reset with GRUB's), with
//!   ChromeOS the first boot that finds no bootable slot (the firmware enters recovery
//!   and changes nothing);
//! - every slot in the boot order right after the cut (under GRUB: in `ORDER` with
//!   `<x>_OK=1`, the only ones its reset can make bootable) holds exactly the image of
//!   the version the env records for it (a fallback the chain never takes, e.g. a
//!   ChromeOS slot behind a successful one, could still boot it);
//! - the security floor file in the data slot's `state_dir` (a fourth rail member, a
//!   `MemFiles` directory; v1, v2, v3 carry security versions 1, 2, 3) reads, is not
//!   below its value before the scenario (never lost), and is above it only at the
//!   security version of a slot the env shows confirmed (never raised early);
//! - the health history in the same directory (appended, fsynced, its directory
//!   fsynced when new, all on the rail) reads, keeps every record it held before the
//!   scenario, gains only whole records the scenario writes (never a half one), and a
//!   confirmation it gained is one the env shows (the record follows the confirm).
//!
//! Scenario 1: from the factory state (v1 good on A), install v2 into B with the real
//! engine, boot B, health passes, confirm B (env commit, then the floor rises to 2,
//! then the pass is recorded in the history). Scenario 2: from scenario 1's end state,
//! install v3 into A, boot A as many times as the scheme tries a pending slot with
//! failing health (`ATTEMPTS`; once under GRUB, see [`EnvBackend::pending_tries`]),
//! each failure recorded in the history, fall back to B, confirm B. Scenario 3: from
//! the factory state, `install --no-activate` v2 into B (written, verified, the staged
//! record replaced atomically in the data slot's `state_dir`, then the env commit
//! naming B staged), `activate` B (record re-authenticated, B read back, one env
//! commit marking it pending), boot B, confirm B. After each of its cuts, bascule and
//! the scheme must agree: when the env names a slot staged, the other slot boots,
//! `activate` on the rebooted board succeeds and the next boot tries the staged slot
//! (`staged_slot_activates`, tests/powercut/scenario.rs).
//!
//! File operations (GRUB's env, the floor, the history) follow `MemFiles`'s rules:
//! unsynced content and directory entries are lost; appends are cut like writes.
//!
//! Default run (1 539 cut points, about 1.5x the 3-4 s in debug it took before scenario 3;
//! the full run 29 656, 6 min on 2 shared cores):
//! every operation, each cut (a) before it with nothing landing, and for device writes
//! (b) a torn prefix ending mid-sector and (c) the even 512-byte sectors landing; for
//! device syncs (c) over the dirty sectors. For GRUB's file operations (`MemFiles`'s
//! rules: unsynced content and directory entries are lost): (a) for each, (b) for the
//! write of `grubenv.new`, and for the rename the journal committing it before the
//! directory sync.
//!     cargo test --test power_cut -- --nocapture
//! Full run: every operation with every tear `FaultyBlock::cut_plans` makes (prefixes
//! every 256 bytes, each single sector landing or missing, even and odd sectors), and
//! for `grubenv.new` writes prefixes every 256 bytes:
//!     BASCULE_POWERCUT_FULL=1 cargo test --test power_cut -- --nocapture
//! `BASCULE_POWERCUT_PREFIX_STEP=1` with it tears every write and sync at every byte
//! (hundreds of thousands of cut points: use `--release`).
//! Both print one line per scenario, one per backend, and
//! `power-cut campaign (default|full): N cut points, 0 bricks`.
//!
//! The code is in tests/powercut/: the board, env backends and update steps
//! (`mod.rs`), the signed releases (`releases.rs`), the GPT disk (`gpt_disk.rs`), the
//! power rail (`rail.rs`) and its cut points (`cut_plans.rs`), the scenarios
//! (`scenario.rs`), the campaign driver (`campaign.rs`), the reboot checks
//! (`reboot.rs`) and the planted unsafe installers the campaign must catch
//! (`planted.rs`). This file holds the tests.
mod powercut;

use bascule::slot::BootState;
use bascule_hal::block::Tear;
use bascule_hal::gpt::table::read_tables;
use bascule_hal::{BlockDevice, MemBlock};
use bascule_partitions::SlotName;

use powercut::campaign::{campaign, every_backend, SECTOR};
use powercut::planted::{
    commit_renaming_before_fsync, confirm_raising_the_floor_first,
    record_the_pass_before_confirming, stage_without_syncing_the_record, unsafe_update,
};
use powercut::rail::{FileOp, Op, RailCut};
use powercut::scenario::{
    end_state, new_rail, staged_slot_activates, update_and_confirm, AfterCut, Scenario, Steps,
};
use powercut::Image;
use powercut::*;

/// Failures printed in full; the rest are counted.
const MAX_PRINTED: usize = 20;

/// Every scenario on every backend (powercut::campaign::every_backend), cut at every
/// cut point: no cut may leave the board unsafe.
#[test]
fn power_cut_campaign() {
    let full = std::env::var("BASCULE_POWERCUT_FULL").is_ok_and(|v| v == "1");
    let failures = every_backend(full);
    for failure in failures.iter().take(MAX_PRINTED) {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} cut points leave the board unsafe (first: {})",
        failures.len(),
        failures[0]
    );
}

/// The campaign catches [`unsafe_update`], which writes the target slot before marking
/// it unbootable.
#[test]
fn campaign_catches_an_installer_that_writes_before_marking_bad() {
    for backend in EnvBackend::ALL {
        // Start where A holds v1 and is still in the boot order behind B.
        let start = end_state(backend, &factory_board(backend), update_and_confirm);
        let scenario = Scenario {
            name: match backend {
                EnvBackend::Uboot => "unsafe installer (uboot env)",
                EnvBackend::Native => "unsafe installer (native env)",
                EnvBackend::Gpt => "unsafe installer (gpt attributes)",
                EnvBackend::Grub => "unsafe installer (grubenv file)",
            }
            .into(),
            backend,
            start,
            confirmed: (SlotName::B, "2.0.0"),
            steps: unsafe_update,
            after_cut: None,
        };
        // RAUC's U-Boot scheme boots A once B's unconfirmed boots use up its counter,
        // RAUC's GRUB scheme on the boot after B's one try.
        // Under ChromeOS, B is successful and never loses its priority, so the chain
        // never boots A: the check of every slot in the boot order after the cut must
        // catch it instead.
        let caught_by = match backend {
            EnvBackend::Uboot | EnvBackend::Native | EnvBackend::Grub => "boots slot A",
            EnvBackend::Gpt => "after the cut (slot A is in the boot order)",
        };
        let findings = campaign(&scenario, false);
        assert!(
            findings
                .failures
                .iter()
                .any(|f| f.contains(caught_by) && f.contains("does not hold that image")),
            "{}: the campaign missed a half-written bootable slot: {:?}",
            backend.name(),
            findings.failures.first()
        );
    }
}

/// The GPT disk built with the hal's table code has two valid, equal tables, and its
/// factory state reads as v1 good on A (successful, in the boot order), B not bootable.
#[test]
fn gpt_factory_disk_is_well_formed() {
    let mut blank = MemBlock::from_bytes("gpt disk", blank_gpt_disk());
    let t = read_tables(&mut blank, 512).expect("read tables");
    let (p, b) = (t.primary.expect("primary"), t.backup.expect("backup"));
    assert_eq!(p.entries(), b.entries());
    assert_eq!((p.my_lba(), p.alternate_lba(), b.my_lba()), (1, 127, 127));
    let backend = EnvBackend::Gpt;
    let env_dev = MemBlock::from_bytes("gpt disk", backend.factory_env().bytes().to_vec());
    let vars = backend.open(env_dev).unwrap().load().unwrap();
    let st = BootState::read(backend.scheme(), &vars).unwrap();
    assert_eq!(st.view.order, vec![SlotName::A]);
    assert_eq!(st.slot(SlotName::A).version.as_deref(), Some("1.0.0"));
    assert_eq!(vars.get_str("GPT_A_SUCCESSFUL"), Some("1"));
}

/// The rail numbers operations across devices and a cut on one loses the others'
/// unsynced writes.
#[test]
fn rail_cut_spans_devices() {
    let rail = new_rail(
        EnvBackend::Uboot,
        &[
            Image::Block(vec![0; 1024]),
            Image::Block(vec![0; 1024]),
            Image::Block(vec![0; 1024]),
        ],
    );
    rail.arm(RailCut {
        at: 3,
        tear: Tear::Prefix(2),
    });
    let (mut a, mut b, mut env) = (rail.device(SLOT_A), rail.device(SLOT_B), rail.device(ENV));
    a.write_at(0, &[1; 8]).unwrap();
    a.sync().unwrap();
    b.write_at(0, &[2; 8]).unwrap();
    assert!(env.write_at(0, &[3; 8]).is_err());
    assert!(rail.is_down());
    let mut buf = [0; 1];
    assert!(a.read_at(0, &mut buf).is_err(), "every device loses power");
    let durable = rail.durable();
    assert_eq!(&durable[SLOT_A].bytes()[..8], &[1; 8]);
    assert_eq!(
        &durable[SLOT_B].bytes()[..8],
        &[0; 8],
        "unsynced write on another device is lost"
    );
    assert_eq!(
        &durable[ENV].bytes()[..3],
        &[3, 3, 0],
        "torn prefix of the cut write lands"
    );
    let plans = rail.plans(false, 0, 512);
    assert!(plans.iter().any(|c| c.at == 3 && c.tear == Tear::None));
}

/// GRUB's file operations are numbered on the same rail as the slots: a cut at any of
/// them loses the slots' unsynced writes, and `grubenv` is the old block unless the
/// rename reached the disk (its journal commit, or the directory sync).
#[test]
fn rail_cuts_grub_file_operations() {
    let backend = EnvBackend::Grub;
    let start = factory_board(backend);
    // Op 0: slot B write (never synced); 1: write grubenv.new; 2: fsync it; 3: rename
    // over grubenv; 4: fsync of the directory; 5: after the last.
    let cases = [
        (1, Tear::None, false),
        (1, Tear::Prefix(700), false),
        (2, Tear::None, false),
        (3, Tear::None, false),
        (3, Tear::Prefix(1), true),
        (4, Tear::None, false),
        (5, Tear::None, true),
    ];
    for (at, tear, lands) in cases {
        let rail = new_rail(backend, &start);
        rail.arm(RailCut { at, tear });
        rail.device(SLOT_B).write_at(0, &[9; 8]).unwrap();
        let mut env = env_store(&rail, backend).unwrap();
        let mut vars = env.load().unwrap();
        vars.insert("X", "new");
        let committed = env.commit(&vars);
        assert_eq!(committed.is_err(), at < 5, "cut at {at} {tear:?}");
        assert_eq!(rail.is_down(), at < 5, "cut at {at} {tear:?}");
        let durable = rail.durable();
        assert_ne!(
            &durable[SLOT_B].bytes()[..8],
            &[9; 8],
            "unsynced slot write"
        );
        let after = backend.open_image(&durable[ENV]).unwrap().load().unwrap();
        assert_eq!(
            after.contains_key("X"),
            lands,
            "cut at {at} {tear:?}: {after:?}"
        );
    }
    let rail = new_rail(backend, &start);
    let mut env = env_store(&rail, backend).unwrap();
    let vars = env.load().unwrap();
    env.commit(&vars).unwrap();
    let ops: Vec<Op> = rail.ops().into_iter().map(|o| o.op).collect();
    let (tmp, grubenv) = (String::from("grubenv.new"), String::from("grubenv"));
    assert_eq!(
        ops,
        [
            Op::File(FileOp::Write {
                name: tmp.clone(),
                len: 1024
            }),
            Op::File(FileOp::SyncFile { name: tmp.clone() }),
            Op::File(FileOp::Rename {
                from: tmp,
                to: grubenv
            }),
            Op::File(FileOp::SyncDir),
        ]
    );
    let plans = rail.plans(false, 0, SECTOR);
    assert!(plans.contains(&RailCut {
        at: 0,
        tear: Tear::Prefix(682)
    }));
    assert!(plans.contains(&RailCut {
        at: 2,
        tear: Tear::Prefix(1)
    }));
    assert_eq!(plans.len(), 4 + 2 + 1);
    assert_eq!(rail.plans(true, 256, SECTOR).len(), 4 + 3 + 1 + 1);
}

/// The campaign applies `MemFiles`'s loss rules to the GRUB directory on the rail: a
/// store that renames before fsync leaves an empty `grubenv` when the journal commits
/// the rename and the content never reached the disk.
#[test]
fn campaign_catches_a_grubenv_renamed_before_fsync() {
    let backend = EnvBackend::Grub;
    let start = end_state(backend, &factory_board(backend), update_and_confirm);
    let scenario = Scenario {
        name: "grubenv renamed before fsync".into(),
        backend,
        start,
        confirmed: (SlotName::B, "2.0.0"),
        steps: commit_renaming_before_fsync,
        after_cut: None,
    };
    let findings = campaign(&scenario, false);
    assert!(
        findings
            .failures
            .iter()
            .any(|f| f.contains("rename grubenv.new over grubenv")
                && f.contains("env does not load after the cut")),
        "the campaign missed an empty grubenv: {:?}",
        findings.failures
    );
}

/// Runs the planted `steps` (from a factory board with A confirmed at 1.0.0, checked
/// by `after_cut` too when given) on every backend and asserts that the campaign
/// reports a failure containing `finding`: it catches the defect `what` names.
fn assert_caught_on_every_backend(
    what: &str,
    steps: Steps,
    after_cut: Option<AfterCut>,
    finding: &str,
) {
    for backend in EnvBackend::ALL {
        let scenario = Scenario {
            name: what.into(),
            backend,
            start: factory_board(backend),
            confirmed: (SlotName::A, "1.0.0"),
            steps,
            after_cut,
        };
        let findings = campaign(&scenario, false);
        assert!(
            findings.failures.iter().any(|f| f.contains(finding)),
            "{}: the campaign missed {what}: {:?}",
            backend.name(),
            findings.failures.first()
        );
    }
}

/// The campaign reads the health history after every cut: a pass recorded before the
/// confirmation is left on record for a slot the env never confirmed.
#[test]
fn campaign_catches_a_pass_recorded_before_the_confirmation() {
    assert_caught_on_every_backend(
        "a pass recorded before the confirmation",
        record_the_pass_before_confirming,
        None,
        "confirmed, but the env does not",
    );
}

/// The campaign reads the security floor after every cut: a confirmation that raises
/// the floor before its env commit leaves it raised for a slot still on trial.
#[test]
fn campaign_catches_a_floor_raised_before_the_confirmation() {
    assert_caught_on_every_backend(
        "a floor raised before the confirmation",
        confirm_raising_the_floor_first,
        None,
        "raised before the confirmation",
    );
}

/// Scenario 3's check after every cut catches a `--no-activate` install whose record
/// is not fsynced: the env names B staged, but the record did not survive the cut.
#[test]
fn campaign_catches_a_staged_record_written_without_fsync() {
    assert_caught_on_every_backend(
        "a staged record written without fsync",
        stage_without_syncing_the_record,
        Some(staged_slot_activates),
        "the env shows slot B staged, but activate: nothing to activate",
    );
}

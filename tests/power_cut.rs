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
//!   slot bascule confirmed during the scenario (see `check_reboot`);
//! - every slot the bootloader boots in that chain holds exactly the image of the
//!   version the env records for it (SHA-256 over the image length);
//! - a chain never ends with no bootable slot (a brick): with RAUC's U-Boot scheme a
//!   second counter reset in a row (likewise a second `<x>_TRY` reset with GRUB's), with
//!   ChromeOS the first boot that finds no bootable slot (the firmware enters recovery
//!   and changes nothing);
//! - every slot in the boot order right after the cut (under GRUB: in `ORDER` with
//!   `<x>_OK=1`, the only ones its reset can make bootable) holds exactly the image of
//!   the version the env records for it (a fallback the chain never takes, e.g. a
//!   ChromeOS slot behind a successful one, could still boot it).
//!
//! Scenario 1: from the factory state (v1 good on A), install v2 into B with the real
//! engine, boot B, health passes, confirm B. Scenario 2: from scenario 1's end state,
//! install v3 into A, boot A as many times as the scheme tries a pending slot with
//! failing health (`ATTEMPTS`; once under GRUB, see [`EnvBackend::pending_tries`]),
//! fall back to B, confirm B.
//!
//! Default run (about 3-4 s in debug for all four backends; the full run 1-1.5 min):
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
mod powercut;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bascule::slot::{state, BootDecision, BootState, InstalledImage};
use bascule_hal::block::Tear;
use bascule_hal::env::EnvFiles;
use bascule_hal::env::GrubCodec;
use bascule_hal::gpt::table::read_tables;
use bascule_hal::{BlockDevice, EnvStore, EnvVars, GrubEnv, HalError, MemBlock};
use bascule_partitions::SlotName;

use powercut::rail::{describe, FileOp, Op, RailCut, RailFiles};
use powercut::Image;
use powercut::*;

/// Prefix granularity of the full run's torn writes (half a sector: aligned and
/// mid-sector tears).
const FULL_PREFIX_STEP: u64 = 256;
const SECTOR: u32 = 512;
/// Failures printed in full; the rest are counted.
const MAX_PRINTED: usize = 20;

type Steps = fn(&PowerRail, EnvBackend) -> Result<(), String>;

struct Scenario {
    name: String,
    backend: EnvBackend,
    /// Durable image of each rail member when the scenario starts.
    start: Vec<Image>,
    /// The slot confirmed before the scenario, and its version.
    confirmed: (SlotName, &'static str),
    steps: Steps,
}

fn expect_boot(rail: &PowerRail, backend: EnvBackend, want: SlotName) -> Result<(), String> {
    match boot(rail, backend)? {
        BootDecision::Boot(slot) if slot == want => Ok(()),
        other => Err(format!("bootloader chose {other:?}, expected slot {want}")),
    }
}

/// Install v2 into B, boot it, health passes, confirm.
fn update_and_confirm(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[1], SlotName::A)?;
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

/// Install v3 into A, its health fails on every try, fall back to B, confirm B.
/// RAUC's GRUB scheme gives the pending slot one try (`RaucGrub::boot` saves
/// `A_TRY=1` and nothing resets it but a confirm or a boot with no slot left), so
/// there the second boot already falls back to B; the other schemes count down
/// `ATTEMPTS`.
fn update_and_roll_back(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[2], SlotName::B)?;
    for _ in 0..backend.pending_tries() {
        expect_boot(rail, backend, SlotName::A)?;
    }
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

fn new_rail(backend: EnvBackend, start: &[Image]) -> PowerRail {
    let named: Vec<(&str, Image)> = backend
        .device_names()
        .iter()
        .copied()
        .zip(start.iter().cloned())
        .collect();
    PowerRail::new(&named)
}

/// Checks that a slot the bootloader boots holds the image its env version names.
fn check_booted(
    slot: SlotName,
    vars: &bascule_hal::EnvVars,
    durable: &[Image],
) -> Result<String, String> {
    let version = vars.get(&version_var(slot)).ok_or_else(|| {
        format!("bootloader boots slot {slot} but the env records no version for it")
    })?;
    let release = fixture().release(version).ok_or_else(|| {
        format!("bootloader boots slot {slot}, env says unknown version {version:?}")
    })?;
    if !release.is_in(durable[slot_device(slot)].bytes()) {
        return Err(format!(
            "bootloader boots slot {slot}, env says {version}, but the slot does not hold that image (SHA-256 differs)"
        ));
    }
    Ok(format!("{slot} v{version}"))
}

/// Reboots the board from `durable` bytes and checks every invariant of the module
/// docs. Returns what the first boot ran ("B v2.0.0").
fn check_reboot(
    backend: EnvBackend,
    durable: &[Image],
    confirmed: (SlotName, &str),
) -> Result<String, String> {
    let scheme = backend.scheme();
    let mut env = backend
        .open_image(&durable[ENV])
        .map_err(|e| format!("env does not open after the cut: {e}"))?;
    let mut vars = env
        .load()
        .map_err(|e| format!("env does not load after the cut: {e}"))?;
    let after_cut = BootState::read(scheme, &vars)
        .map_err(|e| format!("env loads but the scheme cannot read it: {e}"))?;
    let (cslot, cversion) = confirmed;
    let release = fixture().release(cversion).expect("confirmed release");
    if !release.is_in(durable[slot_device(cslot)].bytes()) {
        return Err(format!(
            "previously confirmed slot {cslot} no longer holds v{cversion}"
        ));
    }
    if vars.get(&version_var(cslot)).map(String::as_str) != Some(cversion) {
        return Err(format!(
            "env no longer says slot {cslot} holds v{cversion}: {:?}",
            vars.get(&version_var(cslot))
        ));
    }
    let vars_after_cut = vars.clone();
    // Boot with no confirmation ever: the worst case for a new image.
    let mut first = None;
    let mut confirmed_boots = false;
    let mut last_boot = None;
    let mut resets_in_a_row = 0;
    // RAUC's U-Boot script resets every counter when no slot is left, then the board
    // resets and boots again: one such boot is allowed, a second in a row is a brick.
    // RAUC's grub.cfg does the same with every `<x>_TRY` (`RaucGrub::boot`); as each
    // slot has one try there, every other boot of an unconfirmed chain is such a
    // reset, which is the scheme working as documented, not a brick.
    // The ChromeOS scheme documents that `boot` with no bootable slot enters recovery
    // and changes nothing, so the next power-on decides the same: there the first
    // such boot is already a brick.
    let resets_allowed = usize::from(backend.no_slot_resets_counters());
    for n in 0..2 * usize::from(ATTEMPTS) + 3 {
        let decision = scheme.boot(&mut vars, ATTEMPTS);
        env.commit(&vars)
            .map_err(|e| format!("boot {n}: bootloader saveenv failed: {e}"))?;
        match decision {
            BootDecision::NoSlotResetCounters => {
                resets_in_a_row += 1;
                if resets_in_a_row > resets_allowed {
                    return Err(format!(
                        "BRICK: boot {n}: no bootable slot{}",
                        if resets_allowed > 0 {
                            " even after the counter reset"
                        } else {
                            " (the firmware enters recovery mode)"
                        }
                    ));
                }
            }
            BootDecision::Boot(slot) => {
                resets_in_a_row = 0;
                let ran =
                    check_booted(slot, &vars, durable).map_err(|e| format!("boot {n}: {e}"))?;
                first.get_or_insert(ran);
                confirmed_boots |= slot == cslot;
                last_boot = Some(slot);
            }
        }
    }
    // The ChromeOS scheme documents that the firmware takes no try from a successful
    // slot: once bascule confirmed the new slot (successful=1, after its health check
    // passed), it boots on every power-on and the previous slot is never tried again.
    // There the chain must settle on a successful slot: the previously confirmed one,
    // or one confirmed during the scenario. RAUC's U-Boot and GRUB schemes take a try
    // from every slot (GRUB sets `TRY=1` on a confirmed slot too), so there the
    // previously confirmed slot must boot within the chain.
    let settled_on_successful = backend == EnvBackend::Gpt
        && last_boot.is_some_and(|s| {
            vars.get(&format!("GPT_{s}_SUCCESSFUL")).map(String::as_str) == Some("1")
        });
    if !confirmed_boots && !settled_on_successful {
        return Err(format!(
            "previously confirmed slot {cslot} (v{cversion}) never boots when nothing is confirmed"
        ));
    }
    // Slots in the boot order right after the cut (RAUC's counter reset makes any of
    // them bootable again), whether or not this chain reached them: under ChromeOS a
    // successful slot never loses its priority, so the slot behind it only boots when
    // it fails to start, which this model never does.
    // Under GRUB a slot stays in `ORDER` when it is marked bad, and only `<x>_OK=1`
    // makes it bootable again (`EnvBackend::can_boot_later`).
    for slot in SlotName::ALL {
        if backend.can_boot_later(&vars_after_cut, &after_cut.view.order, slot) {
            check_booted(slot, &vars_after_cut, durable)
                .map_err(|e| format!("after the cut (slot {slot} is in the boot order): {e}"))?;
        }
    }
    first.ok_or_else(|| "BRICK: nothing ever boots".to_string())
}

/// What a campaign over one scenario found.
#[derive(Default)]
struct Findings {
    cut_points: usize,
    failures: Vec<String>,
    first_boots: BTreeMap<String, usize>,
}

/// Runs one cut of `scenario` and checks the rebooted board.
fn run_cut(scenario: &Scenario, cut: RailCut, total_ops: u64) -> Result<String, String> {
    let rail = new_rail(scenario.backend, &scenario.start);
    rail.arm(cut);
    let result = (scenario.steps)(&rail, scenario.backend);
    match (rail.is_down(), result) {
        (false, Err(e)) => return Err(format!("failed without a power cut: {e}")),
        (false, Ok(())) if cut.at < total_ops => return Err("power was never cut".into()),
        (true, Ok(())) => {
            return Err(
                "the scenario finished although power was cut (an error was swallowed)".into(),
            )
        }
        _ => {}
    }
    check_reboot(scenario.backend, &rail.durable(), scenario.confirmed)
}

/// The full run's prefix granularity: `BASCULE_POWERCUT_PREFIX_STEP`, else 256.
fn prefix_step() -> u64 {
    std::env::var("BASCULE_POWERCUT_PREFIX_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FULL_PREFIX_STEP)
}

fn campaign(scenario: &Scenario, full: bool) -> Findings {
    let backend = scenario.backend;
    let rail = new_rail(backend, &scenario.start);
    (scenario.steps)(&rail, backend)
        .unwrap_or_else(|e| panic!("{}: clean run failed: {e}", scenario.name));
    let ops = rail.ops();
    check_reboot(backend, &rail.durable(), scenario.confirmed)
        .unwrap_or_else(|e| panic!("{}: clean end state fails the checks: {e}", scenario.name));
    let plans = rail.plans(full, prefix_step(), SECTOR);
    let next = AtomicUsize::new(0);
    let findings = Mutex::new(Findings {
        cut_points: plans.len(),
        ..Findings::default()
    });
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&cut) = plans.get(i) else { break };
                let outcome = run_cut(scenario, cut, ops.len() as u64);
                let mut f = findings.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(ran) => *f.first_boots.entry(ran).or_default() += 1,
                    Err(why) => f.failures.push(format!(
                        "{}: {}: cut point #{i}: {}: {why}",
                        backend.name(),
                        scenario.name,
                        describe(&cut, &ops, &backend.device_names())
                    )),
                }
            });
        }
    });
    let mut findings = findings.into_inner().unwrap_or_else(|p| p.into_inner());
    findings.failures.sort();
    let boots: Vec<String> = findings
        .first_boots
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect();
    println!(
        "  {}: {} ops, {} cut points, {} bricks; first boot after the cut: {}",
        scenario.name,
        ops.len(),
        findings.cut_points,
        findings.failures.len(),
        boots.join(", ")
    );
    findings
}

/// The board at the end of a clean run of `steps` from `start`.
fn end_state(backend: EnvBackend, start: &[Image], steps: Steps) -> Vec<Image> {
    let rail = new_rail(backend, start);
    steps(&rail, backend).expect("clean run");
    rail.durable()
}

/// Both scenarios on `backend`.
fn scenarios(backend: EnvBackend) -> [Scenario; 2] {
    let factory = factory_board(backend);
    let confirmed_v2 = end_state(backend, &factory, update_and_confirm);
    [
        Scenario {
            name: "scenario 1 (install v2 into B, boot, health pass, confirm)".into(),
            backend,
            start: factory,
            confirmed: (SlotName::A, "1.0.0"),
            steps: update_and_confirm,
        },
        Scenario {
            name: format!(
                "scenario 2 (install v3 into A, boot, health fail x{}, fall back to B, confirm B)",
                backend.pending_tries()
            ),
            backend,
            start: confirmed_v2,
            confirmed: (SlotName::B, "2.0.0"),
            steps: update_and_roll_back,
        },
    ]
}

#[test]
fn power_cut_campaign() {
    let full = std::env::var("BASCULE_POWERCUT_FULL").is_ok_and(|v| v == "1");
    let started = std::time::Instant::now();
    let mut cut_points = 0;
    let mut failures = Vec::new();
    for backend in EnvBackend::ALL {
        let backend_started = std::time::Instant::now();
        println!("{}:", backend.name());
        let (mut points, mut bricks) = (0, 0);
        for scenario in &scenarios(backend) {
            let f = campaign(scenario, full);
            points += f.cut_points;
            bricks += f.failures.len();
            failures.extend(f.failures);
        }
        println!(
            "{}: {points} cut points, {bricks} bricks ({:.1} s)",
            backend.name(),
            backend_started.elapsed().as_secs_f64()
        );
        cut_points += points;
    }
    println!(
        "power-cut campaign ({}): {cut_points} cut points, {} bricks ({:.1} s)",
        if full { "full" } else { "default" },
        failures.len(),
        started.elapsed().as_secs_f64()
    );
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

/// An installer that writes the target before marking it unbootable: the campaign
/// must catch it (the stale "A is good" env boots a half-written A).
fn unsafe_update(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    let v3 = &fixture().releases[2];
    let mut slot = rail.device(SLOT_A);
    for (i, chunk) in v3.image.chunks(CHUNK as usize).enumerate() {
        slot.write_at((i * CHUNK as usize) as u64, chunk)
            .map_err(|e| e.to_string())?;
    }
    slot.sync().map_err(|e| e.to_string())?;
    let mut env = env_store(rail, backend)?;
    let vars = env.load().map_err(|e| e.to_string())?;
    let image = InstalledImage {
        version: v3.version.into(),
        security_version: 1,
    };
    let next = state::mark_pending(backend.scheme(), &vars, SlotName::A, &image, ATTEMPTS);
    env.commit(&next).map_err(|e| e.to_string())
}

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
    assert_eq!(vars.get("GPT_A_SUCCESSFUL").map(String::as_str), Some("1"));
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
        vars.insert("X".into(), "new".into());
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

/// A GRUB env store that renames `grubenv.new` over `grubenv` before fsyncing it.
struct RenameBeforeFsync(RailFiles);

impl EnvStore for RenameBeforeFsync {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        GrubEnv::new(self.0.clone()).load()
    }

    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        let block = GrubCodec::default()
            .encode(vars)
            .map_err(|e| e.into_hal("grubenv"))?;
        self.0.write("grubenv.new", &block)?;
        self.0.rename("grubenv.new", "grubenv")?;
        self.0.sync_file("grubenv")?;
        self.0.sync_dir()
    }

    fn describe(&self) -> String {
        "grubenv, renamed before fsync".into()
    }
}

/// Commits one change of a variable through [`RenameBeforeFsync`].
fn commit_renaming_before_fsync(rail: &PowerRail, _backend: EnvBackend) -> Result<(), String> {
    let mut env = RenameBeforeFsync(rail.files(ENV));
    let mut vars = env.load().map_err(|e| e.to_string())?;
    vars.insert("X".into(), "1".into());
    env.commit(&vars).map_err(|e| e.to_string())
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

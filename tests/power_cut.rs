//! The exhaustive power-cut campaign: a whole update cycle on a simulated board (slot A,
//! slot B, a boot environment device, all on one power rail), cut at every operation.
//! It runs for every block-device env backend ([`EnvBackend`]): a redundant U-Boot env
//! and a native env (RAUC U-Boot scheme), and ChromeOS GPT attributes with a
//! `bascule-env` partition (ChromeOS scheme).
//!
//! For each scenario the campaign runs it once cleanly and logs every `write_at` and
//! `sync` of every device in one global order. Then, for each cut point, it runs the
//! scenario again on a fresh board armed to lose power at that operation (optionally
//! tearing it), keeps only the bytes that were durable, and reboots with the bootloader
//! model (the backend scheme's `boot` over the env loaded from the rebuilt env device).
//! It checks:
//! - the env loads (never an error) and the scheme can read it;
//! - the previously confirmed slot still holds its image, the env still names its
//!   version, and it boots within the boots the try counters allow when nothing is ever
//!   confirmed again (the new image may fail its health check forever);
//! - every slot the bootloader boots in that chain holds exactly the image of the
//!   version the env records for it (SHA-256 over the image length);
//! - a chain never ends with no bootable slot (a brick);
//! - every slot the env made bootable right after the cut holds exactly the image of
//!   the version the env records for it (a fallback the chain never takes, e.g. a
//!   ChromeOS slot behind a successful one, could still boot it).
//!
//! Scenario 1: from the factory state (v1 good on A), install v2 into B with the real
//! engine, boot B, health passes, confirm B. Scenario 2: from scenario 1's end state,
//! install v3 into A, boot A `ATTEMPTS` times with failing health, fall back to B,
//! confirm B.
//!
//! Default run (a few seconds in debug): every operation, each cut (a) before it with
//! nothing landing, and for writes (b) a torn prefix ending mid-sector and (c) the even
//! 512-byte sectors landing; for syncs (c) over the dirty sectors.
//!     cargo test --test power_cut -- --nocapture
//! Full run: every operation with every tear `FaultyBlock::cut_plans` makes (prefixes
//! every 256 bytes, each single sector landing or missing, even and odd sectors):
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
use bascule_hal::{BlockDevice, MemBlock};
use bascule_partitions::SlotName;

use powercut::rail::{describe, RailCut};
use powercut::*;

/// Prefix granularity of the full run's torn writes (half a sector: aligned and
/// mid-sector tears).
const FULL_PREFIX_STEP: u64 = 256;
const SECTOR: u32 = 512;
/// Failures printed in full; the rest are counted.
const MAX_PRINTED: usize = 20;

type Steps = fn(&PowerRail, EnvBackend) -> Result<(), String>;

struct Scenario {
    name: &'static str,
    backend: EnvBackend,
    /// Durable bytes of each device when the scenario starts.
    start: Vec<Vec<u8>>,
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
fn update_and_roll_back(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[2], SlotName::B)?;
    for _ in 0..ATTEMPTS {
        expect_boot(rail, backend, SlotName::A)?;
    }
    expect_boot(rail, backend, SlotName::B)?;
    confirm(rail, backend, SlotName::B)
}

fn new_rail(backend: EnvBackend, start: &[Vec<u8>]) -> PowerRail {
    let named: Vec<(&str, Vec<u8>)> = backend
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
    durable: &[Vec<u8>],
) -> Result<String, String> {
    let version = vars.get(&version_var(slot)).ok_or_else(|| {
        format!("bootloader boots slot {slot} but the env records no version for it")
    })?;
    let release = fixture().release(version).ok_or_else(|| {
        format!("bootloader boots slot {slot}, env says unknown version {version:?}")
    })?;
    if !release.is_in(&durable[slot_device(slot)]) {
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
    durable: &[Vec<u8>],
    confirmed: (SlotName, &str),
) -> Result<String, String> {
    let scheme = backend.scheme();
    let env_dev = MemBlock::from_bytes(backend.device_names()[ENV], durable[ENV].clone());
    let mut env = backend
        .open(env_dev)
        .map_err(|e| format!("env does not open after the cut: {e}"))?;
    let mut vars = env
        .load()
        .map_err(|e| format!("env does not load after the cut: {e}"))?;
    let after_cut = BootState::read(scheme, &vars)
        .map_err(|e| format!("env loads but the scheme cannot read it: {e}"))?;
    let (cslot, cversion) = confirmed;
    let release = fixture().release(cversion).expect("confirmed release");
    if !release.is_in(&durable[slot_device(cslot)]) {
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
    let mut resets_in_a_row = 0;
    // RAUC's U-Boot script resets every counter when no slot is left, then the board
    // resets and boots again: one such boot is allowed, a second in a row is a brick.
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
            }
        }
    }
    if !confirmed_boots {
        return Err(format!(
            "previously confirmed slot {cslot} (v{cversion}) never boots when nothing is confirmed"
        ));
    }
    // Slots the env allowed to boot right after the cut, whether or not this chain
    // reached them (under ChromeOS a successful slot never loses its priority, so its
    // fallback only boots when it fails to start, which this model never does).
    for slot in SlotName::ALL {
        if after_cut.view.bootable(slot) {
            check_booted(slot, &vars_after_cut, durable)
                .map_err(|e| format!("after the cut: {e}"))?;
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
    let rail = new_rail(&scenario.start);
    rail.arm(cut);
    let result = (scenario.steps)(&rail);
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
    check_reboot(&rail.durable(), scenario.confirmed)
}

/// The full run's prefix granularity: `BASCULE_POWERCUT_PREFIX_STEP`, else 256.
fn prefix_step() -> u64 {
    std::env::var("BASCULE_POWERCUT_PREFIX_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FULL_PREFIX_STEP)
}

fn campaign(scenario: &Scenario, full: bool) -> Findings {
    let rail = new_rail(&scenario.start);
    (scenario.steps)(&rail).unwrap_or_else(|e| panic!("{}: clean run failed: {e}", scenario.name));
    let ops = rail.ops();
    check_reboot(&rail.durable(), scenario.confirmed)
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
                        "{}: cut point #{i}: {}: {why}",
                        scenario.name,
                        describe(&cut, &ops, &DEVICE_NAMES)
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
        "{}: {} ops, {} cut points, {} bricks; first boot after the cut: {}",
        scenario.name,
        ops.len(),
        findings.cut_points,
        findings.failures.len(),
        boots.join(", ")
    );
    findings
}

/// The board at the end of a clean run of `steps` from `start`.
fn end_state(start: &[Vec<u8>], steps: fn(&PowerRail) -> Result<(), String>) -> Vec<Vec<u8>> {
    let rail = new_rail(start);
    steps(&rail).expect("clean run");
    rail.durable()
}

#[test]
fn power_cut_campaign() {
    let full = std::env::var("BASCULE_POWERCUT_FULL").is_ok_and(|v| v == "1");
    let factory = factory_board();
    let confirmed_v2 = end_state(&factory, update_and_confirm);
    let scenarios = [
        Scenario {
            name: "scenario 1 (install v2 into B, boot, health pass, confirm)",
            start: factory,
            confirmed: (SlotName::A, "1.0.0"),
            steps: update_and_confirm,
        },
        Scenario {
            name: "scenario 2 (install v3 into A, boot, health fail x3, fall back to B, confirm B)",
            start: confirmed_v2,
            confirmed: (SlotName::B, "2.0.0"),
            steps: update_and_roll_back,
        },
    ];
    let mut cut_points = 0;
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let f = campaign(scenario, full);
        cut_points += f.cut_points;
        failures.extend(f.failures);
    }
    println!(
        "power-cut campaign ({}): {cut_points} cut points, {} bricks",
        if full { "full" } else { "default" },
        failures.len()
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
fn unsafe_update(rail: &PowerRail) -> Result<(), String> {
    let v3 = &fixture().releases[2];
    let mut slot = rail.device(SLOT_A);
    for (i, chunk) in v3.image.chunks(CHUNK as usize).enumerate() {
        slot.write_at((i * CHUNK as usize) as u64, chunk)
            .map_err(|e| e.to_string())?;
    }
    slot.sync().map_err(|e| e.to_string())?;
    let mut env = env_store(rail)?;
    let vars = env.load().map_err(|e| e.to_string())?;
    let image = InstalledImage {
        version: v3.version.into(),
        security_version: 1,
    };
    let next = state::mark_pending(&RaucUboot, &vars, SlotName::A, &image, ATTEMPTS);
    env.commit(&next).map_err(|e| e.to_string())
}

#[test]
fn campaign_catches_an_installer_that_writes_before_marking_bad() {
    // Start where A holds v1 and is still in the boot order behind B.
    let start = end_state(&factory_board(), update_and_confirm);
    let scenario = Scenario {
        name: "unsafe installer",
        start,
        confirmed: (SlotName::B, "2.0.0"),
        steps: unsafe_update,
    };
    let findings = campaign(&scenario, false);
    assert!(
        findings
            .failures
            .iter()
            .any(|f| f.contains("boots slot A") && f.contains("does not hold that image")),
        "the campaign missed a half-written bootable slot: {:?}",
        findings.failures.first()
    );
}

/// The rail numbers operations across devices and a cut on one loses the others'
/// unsynced writes.
#[test]
fn rail_cut_spans_devices() {
    let rail = new_rail(&[vec![0; 1024], vec![0; 1024], vec![0; 1024]]);
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
    assert_eq!(&durable[SLOT_A][..8], &[1; 8]);
    assert_eq!(
        &durable[SLOT_B][..8],
        &[0; 8],
        "unsynced write on another device is lost"
    );
    assert_eq!(
        &durable[ENV][..3],
        &[3, 3, 0],
        "torn prefix of the cut write lands"
    );
    let plans = rail.plans(false, 0, 512);
    assert!(plans.iter().any(|c| c.at == 3 && c.tear == Tear::None));
}

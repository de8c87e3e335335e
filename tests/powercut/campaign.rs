//! The campaign driver: runs a scenario once cleanly to log its operations,
//! enumerates the cut points over them ([`super::PowerRail::plans`]), replays the
//! scenario cut at each on worker threads, checks every reboot ([`check_reboot`]) and
//! reports the findings.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cut_plans::describe;
use super::rail::RailCut;
use super::reboot::check_reboot;
use super::scenario::{new_rail, scenarios, Scenario};
use super::EnvBackend;

/// Prefix granularity of the full run's torn writes (half a sector: aligned and
/// mid-sector tears).
const FULL_PREFIX_STEP: u64 = 256;
/// Sector size of the rail's cut plans (sector tears, mid-sector prefixes).
pub const SECTOR: u32 = 512;

/// What a campaign over one scenario found.
#[derive(Default)]
pub struct Findings {
    pub cut_points: usize,
    pub failures: Vec<String>,
    pub first_boots: BTreeMap<String, usize>,
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
    let durable = rail.durable();
    let ran = check_reboot(
        scenario.backend,
        &durable,
        scenario.confirmed,
        &scenario.start,
    )?;
    if let Some(check) = scenario.after_cut {
        check(scenario.backend, &durable)?;
    }
    Ok(ran)
}

/// The full run's prefix granularity: `BASCULE_POWERCUT_PREFIX_STEP`, else 256.
fn prefix_step() -> u64 {
    std::env::var("BASCULE_POWERCUT_PREFIX_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FULL_PREFIX_STEP)
}

/// Cuts `scenario` at every cut point (`full`: every tear the rail plans, else the
/// default subset), prints the scenario's line and returns what it found.
pub fn campaign(scenario: &Scenario, full: bool) -> Findings {
    let backend = scenario.backend;
    let rail = new_rail(backend, &scenario.start);
    (scenario.steps)(&rail, backend)
        .unwrap_or_else(|e| panic!("{}: clean run failed: {e}", scenario.name));
    let ops = rail.ops();
    check_reboot(
        backend,
        &rail.durable(),
        scenario.confirmed,
        &scenario.start,
    )
    .and_then(|_| match scenario.after_cut {
        Some(check) => check(backend, &rail.durable()),
        None => Ok(()),
    })
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

/// Both scenarios on every backend, `full` or the default cut points: prints one line
/// per scenario, one per backend and the campaign's total, and returns every failure.
pub fn every_backend(full: bool) -> Vec<String> {
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
    failures
}

//! `guest`: the arm64 guest scenarios from the command line (see `qemu/README.md`).
//!
//! ```text
//! cargo run -p bascule-qemu --bin guest -- update              # v1 -> v2, confirmed
//! cargo run -p bascule-qemu --bin guest -- rollback            # update, then v3 rolls back
//! cargo run -p bascule-qemu --bin guest -- soak 200 --seed 1   # power cuts
//! ... --console /tmp/guest.log                                  # every boot's serial console
//! ```
//! `soak` prints one line per cut, every finding, then `kills N, bricks N,
//! disagreements N` as its last line, and exits 1 when a cut bricked or disagreed.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::scenario::{rollback, update, Guest, PowerCuts};
use bascule_qemu::guest::world::World;

#[derive(Parser)]
#[command(about = "bascule inside an arm64 QEMU guest booted by the real U-Boot")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Append the serial console of every boot to this file (`tail -f` it).
    #[arg(long, global = true)]
    console: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// v1 installs v2 in the guest; the reboot runs B and confirms it; B stays.
    Update,
    /// The update, then v3 (failing self-test) rolls back to v2.
    Rollback,
    /// N power cuts, alternating the install-write and the probe-commit windows.
    Soak {
        cuts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut world = World::build(Platform::Arm64)?;
    println!("built the guest's parts in {:.1?}", world.build_time);
    if let Some(path) = cli.console {
        world.log_console_to(path);
    }
    match cli.scenario {
        Scenario::Update => {
            let g = update(&world)?;
            print_timings(&g);
            world.remove(&g.disk)?;
        }
        Scenario::Rollback => {
            let mut g = update(&world)?;
            rollback(&mut g)?;
            print_timings(&g);
            world.remove(&g.disk)?;
        }
        Scenario::Soak { cuts, seed } => {
            let mut campaign = PowerCuts::new(&world, seed)?;
            let (install, commit) = campaign.windows();
            println!(
                "seed {seed}; windows: install write {install:.1?}, probe commit {commit:.1?}"
            );
            let counts = campaign.run(cuts, |i, c| {
                println!("cut {i}: {c} ({:.0?})", start.elapsed())
            })?;
            for f in &campaign.findings {
                println!("finding: {f}");
            }
            println!("missed cuts (the boot ended first): {}", counts.missed);
            println!("{counts}");
            if counts.bricks + counts.disagreements > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    eprintln!("total {:.1?}", start.elapsed());
    Ok(ExitCode::SUCCESS)
}

fn print_timings(g: &Guest) {
    for (step, boot, verdict) in &g.timings {
        println!(
            "{boot:>8.1?} boot, {:>8} to the health verdict: {step}",
            verdict.map(|d| format!("{d:.1?}")).unwrap_or("-".into())
        );
    }
}

//! `guest`: the guest scenarios from the command line, on either platform (see
//! `qemu/README.md`): arm64 booted by the real U-Boot (the default) or x86_64 booted
//! by OVMF and the real GRUB (`--platform x86_64`).
//!
//! ```text
//! cargo run -p bascule-qemu --bin guest -- update              # v1 -> v2, confirmed
//! cargo run -p bascule-qemu --bin guest -- rollback            # update, then v3 rolls back
//! cargo run -p bascule-qemu --bin guest -- soak 200 --seed 1   # arm64 power cuts
//! cargo run -p bascule-qemu --bin guest -- --platform x86_64 rollback
//! cargo run -p bascule-qemu --bin guest -- --platform x86_64 cut 0.5 2 4  # N s into the install
//! ... --console /tmp/guest.log                                  # every boot's serial console
//! ```
//! `soak` prints one line per cut, every finding, then `kills N, bricks N,
//! disagreements N` as its last line, and exits 1 when a cut bricked or disagreed.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::power_cuts::PowerCuts;
use bascule_qemu::guest::scenario::{rollback, update};
use bascule_qemu::guest::step::Guest;
use bascule_qemu::guest::world::World;
use bascule_qemu::guest::x86::power_cut::power_cut;

#[derive(Parser)]
#[command(about = "bascule inside a QEMU guest booted by the real U-Boot or GRUB")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The guest platform.
    #[arg(long, global = true, value_enum, default_value_t = Arch::Arm64)]
    platform: Arch,
    /// Append the serial console of every boot to this file (`tail -f` it).
    #[arg(long, global = true)]
    console: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    /// U-Boot, `qemu-system-aarch64 -M virt`.
    Arm64,
    /// OVMF and GRUB, `qemu-system-x86_64`.
    #[value(name = "x86_64")]
    X86_64,
}

#[derive(Subcommand)]
enum Scenario {
    /// v1 installs v2 in the guest; the reboot runs B and confirms it; B stays.
    Update,
    /// The update, then v3 (failing self-test) rolls back to v2.
    Rollback,
    /// arm64: N power cuts, alternating the install-write and the probe-commit windows.
    Soak {
        cuts: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// x86_64: one power cut per delay (seconds after the install began), each on a
    /// fresh disk.
    Cut { delays: Vec<f64> },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let platform = match cli.platform {
        Arch::Arm64 => Platform::Arm64,
        Arch::X86_64 => Platform::X86_64,
    };
    match (&cli.scenario, platform) {
        (Scenario::Soak { .. }, Platform::X86_64) => return Err("soak runs on arm64".into()),
        (Scenario::Cut { .. }, Platform::Arm64) => return Err("cut runs on x86_64".into()),
        _ => {}
    }
    let mut world = World::build(platform)?;
    println!(
        "built the guest's parts in {:.1?} (bascule's cross build {:.1?})",
        world.build_time, world.cross_build_time
    );
    if let Some(path) = cli.console {
        world.log_console_to(path);
    }
    let code = match cli.scenario {
        Scenario::Update => {
            let g = update(&world)?;
            print_timings(&g);
            world.remove(&g.disk)?;
            ExitCode::SUCCESS
        }
        Scenario::Rollback => {
            let mut g = update(&world)?;
            rollback(&mut g)?;
            print_timings(&g);
            world.remove(&g.disk)?;
            ExitCode::SUCCESS
        }
        Scenario::Soak { cuts, seed } => soak(&world, cuts, seed, start)?,
        Scenario::Cut { delays } => {
            cuts(&world, &delays)?;
            ExitCode::SUCCESS
        }
    };
    eprintln!("total {:.1?}", start.elapsed());
    Ok(code)
}

/// The arm64 power-cut campaign; fails when a cut bricked or disagreed.
fn soak(
    world: &World,
    cuts: usize,
    seed: u64,
    start: Instant,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut campaign = PowerCuts::new(world, seed)?;
    let [install, commit, save] = campaign.windows();
    println!(
        "seed {seed}; windows: install write {install:.1?}, probe commit {commit:.1?}, \
         U-Boot's env save {save:.1?}"
    );
    let counts = campaign.run(cuts, |i, c| {
        println!("cut {i}: {c} ({:.0?})", start.elapsed())
    })?;
    for f in &campaign.findings {
        println!("finding: {f}");
    }
    println!("missed cuts (the boot ended first): {}", counts.missed);
    println!("{counts}");
    Ok(if counts.bricks + counts.disagreements > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The x86_64 cuts, one per delay.
fn cuts(world: &World, delays: &[f64]) -> Result<(), Box<dyn std::error::Error>> {
    for &d in delays {
        let t = Instant::now();
        let c = power_cut(world, Duration::from_secs_f64(d))?;
        println!(
            "cut {d}s: landed in the install {}, bascule predicted {:?}, GRUB booted {:?} \
             running {:?}; healthy after {} power-on(s) ({:.1?})",
            c.landed,
            c.predicted,
            c.booted,
            c.version,
            c.boots,
            t.elapsed()
        );
        for (when, e) in [
            ("after the cut", &c.host_after_cut),
            ("after the next boot", &c.host_after_boot),
        ] {
            if let Some(e) = e {
                println!("  finding: the host cannot read the disk {when}: {e}");
            }
        }
    }
    Ok(())
}

fn print_timings(g: &Guest) {
    for (step, boot, verdict) in &g.timings {
        println!(
            "{boot:>8.1?} boot, {:>8} to the health verdict: {step}",
            verdict.map(|d| format!("{d:.1?}")).unwrap_or("-".into())
        );
    }
}

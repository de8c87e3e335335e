//! `guest_x86`: the x86_64 UEFI guest scenarios from the command line (OVMF, GRUB
//! running the shipped `grub.cfg`, a Debian cloud-amd64 kernel; see `qemu/README.md`).
//!
//! ```text
//! cargo run -p bascule-qemu --bin guest_x86 -- update          # v1 -> v2, confirmed
//! cargo run -p bascule-qemu --bin guest_x86 -- rollback        # update, then v3 rolls back
//! cargo run -p bascule-qemu --bin guest_x86 -- cut 0.5 2 4     # cuts N s into the install
//! ... --console /tmp/guest-x86.log                              # every boot's serial console
//! ```
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use bascule_qemu::guest::platform::Platform;
use bascule_qemu::guest::world::World;
use bascule_qemu::guest::x86::scenario::{power_cut, rollback, update, Guest};

#[derive(Parser)]
#[command(about = "bascule inside an x86_64 QEMU guest booted by OVMF and the real GRUB")]
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
    /// One power cut per delay (seconds after the install began), each on a fresh disk.
    Cut { delays: Vec<f64> },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut world = World::build(Platform::X86_64)?;
    println!(
        "built the guest's parts in {:.1?} (bascule's cross build {:.1?})",
        world.build_time, world.cross_build_time
    );
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
        Scenario::Cut { delays } => {
            for d in delays {
                let t = Instant::now();
                let c = power_cut(&world, Duration::from_secs_f64(d))?;
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
        }
    }
    eprintln!("total {:.1?}", start.elapsed());
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

//! The whole GRUB differential corpus on real GRUB 2.06 / OVMF:
//!
//! ```text
//! cargo run --release -p bascule-qemu --bin grub_differential -- [WALKS] [CFG] [FILTER]
//! ```
//! WALKS is the number of random-walk states (default 60; the bounded test runs 8),
//! each booted as written and once more with its main grubenv emptied;
//! CFG the script to run (default: the shipped `bootloader/grub/grub.cfg`), FILTER a
//! text the case names must contain (default: every case). Prints one
//! line per env, each disagreement, and last `envs N, boots N, disagreements N`; exits
//! 1 when there is a disagreement.
use std::path::PathBuf;
use std::process::ExitCode;

use bascule_qemu::grub::GrubRig;
use bascule_qemu::{grub_corpus, grub_diff};

const DEFAULT_WALKS: usize = 60;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let walks = match args.next().map(|a| a.parse::<usize>()) {
        None => DEFAULT_WALKS,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("WALKS must be a number: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bootloader/grub/grub.cfg")
    });
    let filter = args.next().unwrap_or_default();
    match run(walks, &cfg, &filter) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("grub_differential: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(
    walks: usize,
    cfg: &std::path::Path,
    filter: &str,
) -> Result<bool, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(cfg).map_err(|e| format!("{}: {e}", cfg.display()))?;
    let rig = GrubRig::new(&text)?;
    let mut cases = grub_corpus::full(walks);
    cases.retain(|c| c.name.contains(filter));
    let report = grub_diff::run(&rig, &cases, grub_diff::jobs(), |name, choices| {
        println!("{name}: {choices:?}");
    })?;
    for d in &report.disagreements {
        println!("DISAGREE {d}");
    }
    for f in &report.flagged {
        println!("FLAGGED {f}");
    }
    println!("{}", report.summary());
    Ok(report.disagreements.is_empty())
}

//! `differential`: boots a corpus of envs on a real bootloader with bascule's shipped
//! script and compares each decision with bascule's model. Prints every disagreement,
//! then `envs N, boots N, disagreements N` as its last line; exits 1 when any differ.
//!
//! ```text
//! cargo run -p bascule-qemu --bin differential -- uboot            # bounded corpus
//! cargo run -p bascule-qemu --bin differential -- uboot --full     # whole corpus
//! cargo run -p bascule-qemu --bin differential -- uboot --console /tmp/uboot.log
//! ```
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use bascule_qemu::corpus::{uboot_bounded, uboot_full};
use bascule_qemu::uboot::{shipped_script_path, UbootHarness};
use bascule_qemu::uboot_diff;

#[derive(Parser)]
#[command(about = "Differential test of bascule's model against real bootloaders")]
struct Cli {
    #[command(subcommand)]
    bootloader: Bootloader,
}

#[derive(Subcommand)]
enum Bootloader {
    /// Debian's U-Boot 2023.01 (qemu_arm64) running bootloader/uboot/boot.cmd.
    Uboot(UbootArgs),
}

#[derive(Args)]
struct UbootArgs {
    /// Boot the whole corpus (every walk state), not the bounded one.
    #[arg(long)]
    full: bool,
    /// Append the serial console of every QEMU run to this file.
    #[arg(long)]
    console: Option<PathBuf>,
    /// The boot script to run (default: the repository's bootloader/uboot/boot.cmd).
    #[arg(long)]
    script: Option<PathBuf>,
}

fn uboot(args: UbootArgs) -> Result<uboot_diff::Report, bascule_qemu::uboot::UbootError> {
    let script = args.script.unwrap_or_else(shipped_script_path);
    let mut harness = UbootHarness::new(&script)?;
    if let Some(path) = args.console {
        harness.log_console_to(path);
    }
    let cases = if args.full {
        uboot_full()
    } else {
        uboot_bounded()
    };
    uboot_diff::run(&mut harness, &cases)
}

fn main() -> ExitCode {
    let report = match Cli::parse().bootloader {
        Bootloader::Uboot(args) => uboot(args),
    };
    match report {
        Ok(report) => {
            for d in &report.disagreements {
                println!("{d}\n");
            }
            println!("{} ({} QEMU runs)", report.summary(), report.qemu_runs);
            println!("{}", report.summary());
            if report.disagreements.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("differential: {e}");
            ExitCode::from(2)
        }
    }
}

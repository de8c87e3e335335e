//! The command line: argument parsing and printing only. Every command's logic lives
//! in [`crate::ops`], [`crate::bundle`] or [`crate::demo`].
use std::io::IsTerminal;
use std::path::PathBuf;

use bascule_partitions::SlotName;
use clap::{Parser, Subcommand, ValueEnum};

use crate::bundle::Compression;
use crate::config::{SystemConfig, DEFAULT_CONFIG_PATH};
use crate::device::Device;
use crate::install::{
    BarProgress, InstallOptions, JsonProgress, LogProgress, NoProgress, Progress, Verify,
};
use crate::ops::{self, SlotSelector};
use crate::Error;

mod bundle_cmd;
mod print;

/// bascule: A/B image updates for embedded Linux that never brick the device.
#[derive(Debug, Parser)]
#[command(name = "bascule", version, about)]
pub struct Cli {
    /// Device configuration file.
    #[arg(long, global = true, env = "BASCULE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a signing key pair: PATH.key (secret, mode 0600) and PATH.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Create or inspect bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Install a bundle (path, `-` for stdin, or http(s):// URL) into the inactive slot.
    Install(InstallArgs),
    /// Mark the slot `install --no-activate` wrote pending, without writing it again:
    /// refused unless its record still verifies with the keyring, the slot still holds
    /// exactly the signed images, the environment still shows it staged (not installed
    /// over, not revived), the same slot runs, and the install's checks still pass.
    /// Runs no hook (post-install ran at install).
    Activate,
    /// Show the booted slot and the state of each slot.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Confirm the booted slot: the bootloader keeps booting it, and the security
    /// floor rises to its security version. Another slot that is not good (rolled
    /// back, marked bad, on trial) goes back on trial with `--force`.
    MarkGood {
        #[arg(default_value = "booted")]
        slot: SlotSelector,
        /// Put a slot that is not booted and not good back on trial: primary with
        /// fresh tries. The floor does not rise until it boots and confirms itself.
        #[arg(long)]
        force: bool,
    },
    /// Mark a slot bad (default: the other one): the bootloader stops booting it.
    MarkBad {
        #[arg(default_value = "other")]
        slot: SlotSelector,
    },
    /// Run the health probe (`[health]` in system.toml): every check passes, the
    /// booted slot is confirmed; one fails, `on_failure` reboots, marks the slot bad
    /// and reboots, or stays. Exits non-zero when the probe fails.
    Health {
        /// Run the checks only: a pass exits 0 without confirming the slot (the
        /// systemd unit ordered after boot-complete.target runs `mark-good`).
        #[arg(long)]
        no_confirm: bool,
    },
    /// List the health history (probes, failures, reverts), oldest first.
    History {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Lift the quarantine of every release that failed so far: later installs
        /// accept them again.
        #[arg(long)]
        clear_quarantine: bool,
    },
    /// Bootloader simulator: one power-on of a file-backed device (demos and tests).
    SimulateBoot,
    /// Factory step: write a complete first boot state (GOOD confirmed, the other slot bad).
    InitEnv {
        /// The slot that holds a working system.
        #[arg(long)]
        good: SlotName,
        /// The version installed in that slot, if known.
        #[arg(long)]
        version: Option<String>,
        /// Replace a boot state that is already readable, or rewrite a corrupt env.
        #[arg(long)]
        force: bool,
        /// The board's default U-Boot env (u-boot-initial-env: name=value lines),
        /// written besides bascule's variables into a blank or forced corrupt env;
        /// overrides the config's `bootenv.defaults`.
        #[arg(long, value_name = "FILE")]
        defaults: Option<PathBuf>,
    },
    /// Factory step: partition a blank disk from a layout file, write the bundles into
    /// slot A (and B), the boot content, the data slot and the first boot state, and
    /// report what was written. Re-running completes a cut-off run and is a no-op on a
    /// finished disk.
    Provision(ProvisionArgs),
    /// Run the full A/B cycle on a device made of local disk-image files.
    Demo {
        /// Where to create the demo device.
        #[arg(long, default_value = "bascule-demo")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Build and sign a bundle from image files.
    Create(bundle_cmd::CreateArgs),
    /// Print a bundle's manifest and whether its signature verifies.
    Info {
        bundle: PathBuf,
        /// Keyring directory to check the signature against.
        #[arg(long)]
        keyring: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Bundle path, `-` for stdin, or an http:// or https:// URL.
    pub source: String,
    /// Read and verify everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow a lower version than the running one (never below the security floor).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Install even while the booted slot is still pending, or a release that is
    /// quarantined (it failed its health probe here, or was rolled back).
    #[arg(long)]
    pub force: bool,
    /// Slot to write (default: the one not booted). The booted slot is always refused.
    #[arg(long)]
    pub slot: Option<SlotName>,
    /// `chunks`: every chunk against its signed SHA-256 before it is written, and the
    /// image's chunks, order and length as signed (default, one hash pass);
    /// `full`: that, and the whole image's SHA-256 again in a second pass.
    #[arg(long, value_enum, default_value_t = VerifyMode::Chunks)]
    pub verify: VerifyMode,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Write and verify the slot and run post-install, but leave it unbootable:
    /// `bascule activate` marks it pending later (a maintenance window). The record
    /// `activate` checks is kept in state_dir (staged-install).
    #[arg(long, conflicts_with = "dry_run")]
    pub no_activate: bool,
    /// Print where the install's time went (busy and idle time of the reader, the
    /// check workers, the writer, the slot and the final sync) as one JSON line
    /// `{"event":"stages",...}` on stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The disk layout (layout.toml; see docs/layout.md).
    #[arg(long)]
    pub layout: PathBuf,
    /// The target: an image file (created sparse when missing), a loop or block device.
    #[arg(long)]
    pub disk: PathBuf,
    /// CLASS=BUNDLE: the bundle written into the slots of CLASS (e.g. rootfs=v1.bascule).
    #[arg(long = "bundle", value_name = "CLASS=FILE", value_parser = parse_bundle_arg)]
    pub bundles: Vec<(String, PathBuf)>,
    /// Directory of trusted public keys: bundles are verified with it, and its keys
    /// are copied with the device's system.toml.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// The board's default U-Boot env (u-boot-initial-env), kept in the first boot env.
    #[arg(long, value_name = "FILE")]
    pub defaults: Option<PathBuf>,
    /// Write the bundles into slot B too (B stays marked bad in the env).
    #[arg(long)]
    pub both_slots: bool,
    /// Overwrite a disk that carries another partition table or a file system.
    #[arg(long)]
    pub force: bool,
    /// Re-read the table and the slots and compare them with the report; without
    /// --bundle, only that, against the report given with --report.
    #[arg(long)]
    pub verify: bool,
    /// Write the report as JSON to FILE (with --verify alone: the report to check).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print where each slot write's time went, as `install --stats` does (one JSON
    /// line `{"event":"stages",...}` per slot written, on stderr).
    #[arg(long)]
    pub stats: bool,
}

fn parse_bundle_arg(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((class, path)) if !class.is_empty() && !path.is_empty() => {
            Ok((class.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?} is not CLASS=FILE (e.g. rootfs=v1.bascule)")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyMode {
    Chunks,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    /// One JSON object per line on stdout.
    Json,
    None,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Keygen { out } => bundle_cmd::keygen(&out),
        Command::Bundle(BundleCommand::Create(args)) => bundle_cmd::create(&args),
        Command::Bundle(BundleCommand::Info {
            bundle,
            keyring,
            json,
        }) => bundle_cmd::info(&bundle, keyring.as_deref(), json),
        Command::Install(args) => install(&cli.config, &args),
        Command::Activate => {
            let report = ops::activate(&mut open_device(&cli.config)?)?;
            print::activated(&report);
            Ok(())
        }
        Command::Status { json } => {
            let report = ops::status(&mut open_device(&cli.config)?)?;
            print::status(&report, json);
            Ok(())
        }
        Command::MarkGood { slot, force } => {
            let marked = ops::mark_good(&mut open_device(&cli.config)?, slot, force)?;
            print::marked_good(&marked);
            Ok(())
        }
        Command::MarkBad { slot } => {
            let (slot, written) = ops::mark_bad(&mut open_device(&cli.config)?, slot)?;
            print::marked("bad", slot, written);
            Ok(())
        }
        Command::Health { no_confirm } => {
            let report = crate::health::run(&mut open_device(&cli.config)?, !no_confirm)?;
            print::health(&report);
            match crate::health::failed_error(&report) {
                Some(err) => Err(err.into()),
                None => Ok(()),
            }
        }
        Command::History {
            clear_quarantine: true,
            ..
        } => {
            let record = crate::health::clear_quarantine(&open_device(&cli.config)?)?;
            println!(
                "quarantine lifted: releases that failed before {} install again",
                crate::health::history::format_time(record.time)
            );
            Ok(())
        }
        Command::History { json, .. } => {
            let config = SystemConfig::load(&cli.config)?;
            let read = crate::health::history::History::new(&config.state_dir)
                .read()
                .map_err(crate::health::HealthError::from)?;
            print::history(&read, json);
            Ok(())
        }
        Command::SimulateBoot => {
            let decision = ops::simulate_boot(&mut open_device(&cli.config)?)?;
            print::boot_decision(decision);
            Ok(())
        }
        Command::InitEnv {
            good,
            version,
            force,
            defaults,
        } => {
            let opts = ops::InitEnv {
                version: version.as_deref(),
                force,
                defaults: defaults.as_deref(),
            };
            ops::init_env(&mut open_device(&cli.config)?, good, &opts)?;
            println!(
                "boot environment initialised: slot {good} good, slot {} bad",
                good.other()
            );
            Ok(())
        }
        Command::Provision(args) => provision(args),
        Command::Demo { dir } => crate::demo::run(&dir),
    }
}

fn open_device(config: &std::path::Path) -> Result<Device, Error> {
    Ok(Device::open(SystemConfig::load(config)?)?)
}

fn install(config: &std::path::Path, args: &InstallArgs) -> Result<(), Error> {
    let mut dev = open_device(config)?;
    let opts = InstallOptions {
        allow_downgrade: args.allow_downgrade,
        force: args.force,
        dry_run: args.dry_run,
        target: args.slot,
        verify: match args.verify {
            VerifyMode::Full => Verify::Full,
            VerifyMode::Chunks => Verify::Chunks,
        },
        no_activate: args.no_activate,
    };
    let mut progress: Box<dyn Progress> = match args.progress {
        ProgressMode::Auto if std::io::stderr().is_terminal() => Box::new(BarProgress::new()),
        ProgressMode::Auto | ProgressMode::Log => Box::new(LogProgress::new()),
        ProgressMode::Bar => Box::new(BarProgress::new()),
        ProgressMode::Json => Box::new(JsonProgress::new()),
        ProgressMode::None => Box::new(NoProgress),
    };
    let report = ops::install(&mut dev, &args.source, &opts, progress.as_mut())?;
    print::installed(&report, args.progress == ProgressMode::Json);
    if args.stats {
        print::stages(&report.stages);
    }
    Ok(())
}

fn provision(args: ProvisionArgs) -> Result<(), Error> {
    let verify_only = args.bundles.is_empty() && args.verify;
    let opts = crate::provision::ProvisionOptions {
        layout: args.layout,
        disk: args.disk,
        bundles: args.bundles,
        keyring: args.keyring,
        defaults: args.defaults,
        both_slots: args.both_slots,
        force: args.force,
        verify: args.verify,
        report: args.report,
    };
    let report = crate::provision::run(&opts)?;
    if args.stats {
        report.stages.iter().for_each(print::stages);
    }
    if verify_only {
        println!("{}: matches the report (table and every slot)", report.disk);
    } else {
        print!("{}", report.summary());
        if opts.verify {
            println!("verified: the table and every slot read back as reported");
        }
    }
    Ok(())
}

/// Parses a `--compress` value.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse::<Compression>().map_err(|e| e.to_string())
}

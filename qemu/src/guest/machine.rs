//! One power-on of a guest under QEMU (TCG): the guest disk as the first virtio disk
//! (`/dev/vda`), the bundle disk read-only as the second (`/dev/vdb`), the per-boot
//! instruction as `-fw_cfg` entries, no network, and `-no-reboot`, so a reboot or
//! reset ends the run: the next run on the same disk is the next boot. The firmware
//! ([`Firmware`]) is the platform's:
//!
//! - arm64: `qemu-system-aarch64 -M virt` with Debian's U-Boot, the board's built-in
//!   env on a read-only pflash, the guest disk virtio-mmio (`virtio 0` in U-Boot), the
//!   bundle disk virtio-pci (the initramfs loads the PCI transport after the MMIO one);
//! - x86_64: `qemu-system-x86_64` with OVMF (its code read-only, a FRESH copy of its
//!   vars file for every boot: a vars file left by a killed run made OVMF hang), both
//!   disks virtio-blk PCI (the guest disk `hd0` in GRUB), the serial console on stdout.
//!
//! The console is watched by [`super::console::run_watched`], so a [`Kill`] can cut
//! the power a chosen time after a marker line appears.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::console::{run_watched, Boot, Kill};
use crate::tools::{ToolError, OVMF_CODE, OVMF_VARS, QEMU_AARCH64, QEMU_X86_64, UBOOT_QEMU_ARM64};
/// What the guest's init does after its health probe (`-fw_cfg name=opt/bascule/cmd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Nothing: probe, report, power off.
    Nothing,
    /// `bascule install <path>` from the bundle disk (mounted at `/bundles`).
    Install(String),
}

impl Instruction {
    /// The `opt/bascule/cmd` text the guest's init reads.
    pub fn text(&self) -> String {
        match self {
            Instruction::Nothing => "none".into(),
            Instruction::Install(path) => format!("install {path}"),
        }
    }
}

/// Why a boot could not be run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the boot still ran after {timeout:?}; killed. Console:\n{console}")]
    Timeout { timeout: Duration, console: String },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MachineError {
    let what = what.into();
    move |source| MachineError::Io { what, source }
}

/// The firmware a machine starts.
#[derive(Debug, Clone)]
pub enum Firmware {
    /// U-Boot as `-bios`, the board's built-in env on the read-only pflash `flash`.
    Uboot { bios: PathBuf, flash: PathBuf },
    /// OVMF's code, read-only, and the vars file copied fresh for every boot.
    Ovmf {
        code: PathBuf,
        vars_template: PathBuf,
    },
}

/// The guest machine: its firmware and disks.
pub struct Machine {
    qemu: PathBuf,
    firmware: Firmware,
    disk: PathBuf,
    bundles: PathBuf,
    console_log: Option<PathBuf>,
    /// Power-ons so far.
    pub boots: usize,
}

impl Machine {
    /// An arm64 machine over `disk` and the bundle disk `bundles`, U-Boot's env on
    /// `flash`.
    pub fn uboot(flash: &Path, disk: &Path, bundles: &Path) -> Result<Machine, MachineError> {
        let firmware = Firmware::Uboot {
            bios: UBOOT_QEMU_ARM64.find()?,
            flash: flash.to_path_buf(),
        };
        Ok(Machine::new(QEMU_AARCH64.find()?, firmware, disk, bundles))
    }

    /// An x86_64 UEFI machine over `disk` and the bundle disk `bundles`.
    pub fn ovmf(disk: &Path, bundles: &Path) -> Result<Machine, MachineError> {
        let firmware = Firmware::Ovmf {
            code: OVMF_CODE.find()?,
            vars_template: OVMF_VARS.find()?,
        };
        Ok(Machine::new(QEMU_X86_64.find()?, firmware, disk, bundles))
    }

    fn new(qemu: PathBuf, firmware: Firmware, disk: &Path, bundles: &Path) -> Machine {
        Machine {
            qemu,
            firmware,
            disk: disk.to_path_buf(),
            bundles: bundles.to_path_buf(),
            console_log: None,
            boots: 0,
        }
    }

    /// Appends every boot's console to `path` (`tail -f` it to watch).
    pub fn log_console_to(&mut self, path: PathBuf) {
        self.console_log = Some(path);
    }

    /// The OVMF vars file of this machine's boots (next to its disk).
    fn vars(&self) -> PathBuf {
        self.disk.with_extension("vars.fd")
    }

    /// The firmware's arguments and the device of the guest disk.
    fn firmware_args(&self, cmd: &mut Command) -> &'static str {
        match &self.firmware {
            Firmware::Uboot { bios, flash } => {
                cmd.args(["-M", "virt", "-cpu", "cortex-a57", "-m", "512"])
                    .args(["-accel", "tcg", "-bios"])
                    .arg(bios)
                    .args(["-nographic", "-no-reboot", "-nic", "none", "-drive"])
                    .arg(format!(
                        "if=pflash,format=raw,index=1,readonly=on,file={}",
                        flash.display()
                    ));
                "virtio-blk-device,drive=disk"
            }
            Firmware::Ovmf { code, .. } => {
                cmd.args(["-accel", "tcg", "-m", "512", "-nodefaults", "-no-reboot"])
                    .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,readonly=on,file={}",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,file={}",
                        self.vars().display()
                    ));
                "virtio-blk-pci,drive=disk,bootindex=0"
            }
        }
    }

    fn command(&self, instruction: &Instruction, pause: &str) -> Command {
        let mut cmd = Command::new(&self.qemu);
        let disk_device = self.firmware_args(&mut cmd);
        cmd.arg("-drive")
            .arg(format!(
                "if=none,format=raw,id=disk,file={}",
                self.disk.display()
            ))
            .args(["-device", disk_device])
            .arg("-drive")
            .arg(format!(
                "if=none,format=raw,id=bundles,readonly=on,file={}",
                self.bundles.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=bundles"])
            .arg("-fw_cfg")
            .arg(format!(
                "name=opt/bascule/cmd,string={}",
                instruction.text()
            ))
            .arg("-fw_cfg")
            // QEMU refuses an empty string.
            .arg(format!(
                "name=opt/bascule/pause,string={}",
                if pause.is_empty() { "none" } else { pause }
            ));
        cmd
    }

    /// Powers the guest on (with a fresh OVMF vars file on x86_64) and runs it until
    /// it powers off, reboots, or `kill` cuts it. `pause` arms the guest bascule's
    /// pause points (`BASCULE_TEST_PAUSE`).
    pub fn boot(
        &mut self,
        instruction: &Instruction,
        pause: &str,
        kill: &Kill,
    ) -> Result<Boot, MachineError> {
        let boot = match &self.firmware {
            Firmware::Uboot { .. } => run_watched(self.command(instruction, pause), kill)?,
            Firmware::Ovmf { vars_template, .. } => {
                let vars = self.vars();
                fs::copy(vars_template, &vars).map_err(io("copying OVMF's vars file"))?;
                let boot = run_watched(self.command(instruction, pause), kill);
                fs::remove_file(&vars).map_err(io("removing the boot's OVMF vars file"))?;
                boot?
            }
        };
        self.boots += 1;
        self.log(instruction, kill, &boot)?;
        Ok(boot)
    }

    fn log(&self, instruction: &Instruction, kill: &Kill, boot: &Boot) -> Result<(), MachineError> {
        let Some(path) = &self.console_log else {
            return Ok(());
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(format!("opening {}", path.display())))?;
        let platform = match self.firmware {
            Firmware::Uboot { .. } => "",
            Firmware::Ovmf { .. } => "x86_64 ",
        };
        writeln!(
            file,
            "==== {platform}boot {} ({instruction:?}, {kill:?}): {:?}{} ====",
            self.boots,
            boot.elapsed,
            if boot.killed { ", KILLED" } else { "" }
        )
        .and_then(|()| file.write_all(boot.console.as_bytes()))
        .map_err(io(format!("writing {}", path.display())))
    }
}

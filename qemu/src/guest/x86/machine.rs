//! One power-on of the x86_64 guest: `qemu-system-x86_64` (TCG) with OVMF (its code
//! read-only, a FRESH copy of its vars file for every boot: a vars file left by a
//! killed run made OVMF hang), the guest disk as the first virtio-blk PCI disk (`hd0`
//! in GRUB, `/dev/vda`), the bundle disk read-only as the second (`/dev/vdb`), the
//! per-boot instruction as `-fw_cfg` entries, the serial console on stdout, and
//! `-no-reboot`, so a reboot ends the run. The console is watched and cut by the arm64
//! guest's [`run_watched`], so [`Kill`] and the markers work the same.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{io, X86Error};
use crate::guest::machine::{run_watched, Boot, Instruction, Kill};
use crate::tools::{Firmware, Tool};

/// `qemu-system-x86_64`.
pub const QEMU_X86_64: Tool = Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// OVMF's code (read-only pflash) and the vars template copied for every boot.
pub const OVMF_CODE: Firmware = Firmware {
    path: crate::grub::OVMF_CODE,
    package: "ovmf",
};
pub const OVMF_VARS: Firmware = Firmware {
    path: crate::grub::OVMF_VARS,
    package: "ovmf",
};

/// The guest machine: its firmware and disks.
pub struct Machine {
    qemu: PathBuf,
    code: PathBuf,
    vars_template: PathBuf,
    disk: PathBuf,
    bundles: PathBuf,
    console_log: Option<PathBuf>,
    /// Power-ons so far.
    pub boots: usize,
}

impl Machine {
    /// A machine over `disk` and the bundle disk `bundles`.
    pub fn new(disk: &Path, bundles: &Path) -> Result<Machine, X86Error> {
        Ok(Machine {
            qemu: QEMU_X86_64.find()?,
            code: OVMF_CODE.find()?,
            vars_template: OVMF_VARS.find()?,
            disk: disk.to_path_buf(),
            bundles: bundles.to_path_buf(),
            console_log: None,
            boots: 0,
        })
    }

    /// Appends every boot's console to `path`.
    pub fn log_console_to(&mut self, path: PathBuf) {
        self.console_log = Some(path);
    }

    /// The vars file of this machine's boots (next to its disk).
    fn vars(&self) -> PathBuf {
        self.disk.with_extension("vars.fd")
    }

    fn command(&self, instruction: &Instruction, pause: &str) -> Command {
        let mut cmd = Command::new(&self.qemu);
        cmd.args(["-accel", "tcg", "-m", "512", "-nodefaults", "-no-reboot"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,readonly=on,file={}",
                self.code.display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,file={}",
                self.vars().display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=none,format=raw,id=disk,file={}",
                self.disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=disk,bootindex=0"])
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
            .arg(format!(
                "name=opt/bascule/pause,string={}",
                if pause.is_empty() { "none" } else { pause }
            ));
        cmd
    }

    /// Powers the guest on with a fresh OVMF vars file and runs it until it powers
    /// off, reboots, or `kill` cuts it.
    pub fn boot(
        &mut self,
        instruction: &Instruction,
        pause: &str,
        kill: &Kill,
    ) -> Result<Boot, X86Error> {
        let vars = self.vars();
        fs::copy(&self.vars_template, &vars).map_err(io("copying OVMF's vars file"))?;
        let boot = run_watched(self.command(instruction, pause), kill);
        fs::remove_file(&vars).map_err(io("removing the boot's OVMF vars file"))?;
        let boot = boot?;
        self.boots += 1;
        self.log(instruction, kill, &boot)?;
        Ok(boot)
    }

    fn log(&self, instruction: &Instruction, kill: &Kill, boot: &Boot) -> Result<(), X86Error> {
        let Some(path) = &self.console_log else {
            return Ok(());
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(format!("opening {}", path.display())))?;
        writeln!(
            file,
            "==== x86_64 boot {} ({instruction:?}, {kill:?}): {:?}{} ====",
            self.boots,
            boot.elapsed,
            if boot.killed { ", KILLED" } else { "" }
        )
        .and_then(|()| file.write_all(boot.console.as_bytes()))
        .map_err(io(format!("writing {}", path.display())))
    }
}

//! Real GRUB 2.06 (Debian's `grub-efi-amd64-bin`) on OVMF under `qemu-system-x86_64`,
//! running the shipped `grub.cfg` over a grubenv the caller writes.
//!
//! [`GrubRig::new`] checks the tools, builds one `BOOTX64.EFI` with `grub-mkimage` and
//! one FAT ESP image (no partition table: GRUB sees it as `(hd0)`) holding
//! `/EFI/BOOT/BOOTX64.EFI` and the transformed script ([`crate::grub_cfg`]). Each case
//! gets its own copy of that image ([`EspDisk`]); the caller writes `grubenv` (and
//! `grubenv.good`) into it with mtools, [`GrubRig::boot`] boots it once, and reads what
//! GRUB printed. Every boot gets a fresh copy of OVMF's vars file: a vars file left by a
//! killed run can make OVMF hang.
//!
//! A boot ends in one of three ways ([`GrubChoice`]): an entry printed its marker and
//! halted; GRUB ran the script's `reboot` (QEMU runs with `-no-reboot`, so it exits
//! without a marker); or GRUB stopped at its menu (seen on the console) or timed out.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bascule_partitions::SlotName;
use tempfile::TempDir;

use crate::grub_cfg::{self, CfgError};

/// Where the ESP keeps GRUB, its script and its environment files.
pub const ESP_DIR: &str = "::/EFI/BOOT";
/// GRUB modules the shipped script needs (the menu entries only `echo` and `halt`).
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "normal",
    "configfile",
    "loadenv",
    "test",
    "true",
    "echo",
    "halt",
    "reboot",
];
/// OVMF firmware code (read-only pflash) and the vars template copied for every boot.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Text GRUB prints under its menu when it waits for a key.
const MENU_TEXT: &str = "keys to select which entry";
/// Size of the ESP image.
const ESP_MIB: u64 = 8;

/// Why the rig could not run GRUB.
#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    #[error("{tool} is missing: install the Debian package {package} (see scripts/deps)")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("the shipped grub.cfg: {0}")]
    Cfg(#[from] CfgError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GrubError {
    let what = what.into();
    move |source| GrubError::Io { what, source }
}

/// What GRUB did in one boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrubChoice {
    /// It ran the menu entry of this slot.
    Boot(SlotName),
    /// It ran the script's `reboot` (QEMU ended without a marker).
    Reset,
    /// It stopped at its menu, waiting for a person, or did nothing before the timeout.
    Waiting,
}

/// One boot: the choice and the serial console transcript.
#[derive(Debug, Clone)]
pub struct BootRun {
    pub choice: GrubChoice,
    pub serial: String,
    pub elapsed: Duration,
}

/// Tools the rig runs, with the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("grub-mkimage", "grub-common"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("mdir", "mtools"),
];

/// Fails with the package to install when a tool or firmware file is missing.
pub fn check_tools() -> Result<(), GrubError> {
    for &(tool, package) in TOOLS {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Err(GrubError::ToolMissing { tool, package });
        }
    }
    for (file, package) in [
        (OVMF_CODE, "ovmf"),
        (OVMF_VARS, "ovmf"),
        ("/usr/lib/grub/x86_64-efi/normal.mod", "grub-efi-amd64-bin"),
    ] {
        if !Path::new(file).is_file() {
            return Err(GrubError::ToolMissing {
                tool: file,
                package,
            });
        }
    }
    Ok(())
}

/// Runs `cmd`, failing with its stderr when it exits non-zero.
fn run(cmd: &mut Command) -> Result<Vec<u8>, GrubError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {cmd:?}")))?;
    if !out.status.success() {
        return Err(GrubError::ToolFailed {
            command: format!("{cmd:?}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// A built GRUB image and a template ESP holding it and the transformed script.
pub struct GrubRig {
    dir: TempDir,
    esp_template: PathBuf,
    /// How long one boot may take before it counts as [`GrubChoice::Waiting`].
    pub timeout: Duration,
}

impl GrubRig {
    /// Checks the tools, builds `BOOTX64.EFI` and the template ESP with `grub_cfg`
    /// (the shipped script's text) transformed.
    pub fn new(grub_cfg: &str) -> Result<GrubRig, GrubError> {
        check_tools()?;
        let cfg = grub_cfg::transform(grub_cfg)?;
        let dir = tempfile::tempdir().map_err(io("create a temporary directory"))?;
        let efi = dir.path().join("BOOTX64.EFI");
        run(Command::new("grub-mkimage")
            .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o"])
            .arg(&efi)
            .args(GRUB_MODULES))?;
        let cfg_path = dir.path().join("grub.cfg");
        fs::write(&cfg_path, cfg).map_err(io("write grub.cfg"))?;
        let esp_template = dir.path().join("esp.img");
        let file = fs::File::create(&esp_template).map_err(io("create esp.img"))?;
        file.set_len(ESP_MIB << 20).map_err(io("size esp.img"))?;
        run(Command::new("mkfs.vfat")
            .args(["-n", "ESP"])
            .arg(&esp_template))?;
        let disk = EspDisk {
            path: esp_template.clone(),
        };
        run(disk.mtool("mmd").args(["::/EFI", ESP_DIR]))?;
        disk.copy_in(&efi, "BOOTX64.EFI")?;
        disk.copy_in(&cfg_path, "grub.cfg")?;
        Ok(GrubRig {
            dir,
            esp_template,
            timeout: Duration::from_secs(40),
        })
    }

    /// A fresh copy of the template ESP, named `name` inside the rig's directory.
    pub fn disk(&self, name: &str) -> Result<EspDisk, GrubError> {
        let path = self.dir.path().join(format!("{name}.img"));
        fs::copy(&self.esp_template, &path).map_err(io("copy the template ESP"))?;
        Ok(EspDisk { path })
    }

    /// Boots `disk` once with a fresh OVMF vars file. Boots of different disks may run
    /// at the same time (each disk has its own vars file and console log).
    pub fn boot(&self, disk: &EspDisk) -> Result<BootRun, GrubError> {
        let vars = disk.path.with_extension("vars.fd");
        let serial = disk.path.with_extension("serial.log");
        fs::copy(OVMF_VARS, &vars).map_err(io("copy the OVMF vars file"))?;
        fs::write(&serial, b"").map_err(io("truncate serial.log"))?;
        let start = Instant::now();
        let mut child = qemu_command(&disk.path, &vars, &serial)
            .spawn()
            .map_err(io("start qemu-system-x86_64"))?;
        let choice = watch(&mut child, &serial, self.timeout)?;
        let console = fs::read(&serial).map_err(io("read serial.log"))?;
        for file in [&vars, &serial] {
            fs::remove_file(file).map_err(io(format!("remove {}", file.display())))?;
        }
        Ok(BootRun {
            choice,
            serial: String::from_utf8_lossy(&console).into_owned(),
            elapsed: start.elapsed(),
        })
    }
}

fn qemu_command(disk: &Path, vars: &Path, serial: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-net", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()))
        .arg("-drive")
        .arg(format!("if=virtio,format=raw,file={}", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits for QEMU to end, for GRUB's menu, or for the timeout; ends QEMU in the last
/// two cases.
fn watch(child: &mut Child, serial: &Path, timeout: Duration) -> Result<GrubChoice, GrubError> {
    let start = Instant::now();
    loop {
        let exited = child.try_wait().map_err(io("wait for qemu"))?.is_some();
        let text = fs::read(serial).map_err(io("read serial.log"))?;
        let text = String::from_utf8_lossy(&text);
        let booted = grub_cfg::booted_slot(&text);
        let done = match (exited, booted) {
            // The entry printed its marker; `halt` ends QEMU a moment later.
            (true, Some(slot)) => Some(GrubChoice::Boot(slot)),
            (true, None) => Some(GrubChoice::Reset),
            (false, None) if text.contains(MENU_TEXT) => Some(GrubChoice::Waiting),
            _ => None,
        };
        let timed_out = start.elapsed() > timeout;
        if let Some(choice) = done.filter(|_| exited) {
            return Ok(choice);
        }
        if done.is_some() || timed_out {
            stop(child)?;
            return Ok(booted.map_or(GrubChoice::Waiting, GrubChoice::Boot));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(child: &mut Child) -> Result<(), GrubError> {
    child.kill().map_err(io("kill qemu"))?;
    child.wait().map_err(io("wait for qemu")).map(drop)
}

/// One case's copy of the ESP image; files are read and written with mtools.
pub struct EspDisk {
    path: PathBuf,
}

impl EspDisk {
    fn mtool(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("-i").arg(&self.path);
        cmd
    }

    fn copy_in(&self, host: &Path, name: &str) -> Result<(), GrubError> {
        run(self
            .mtool("mcopy")
            .arg("-o")
            .arg(host)
            .arg(format!("{ESP_DIR}/{name}")))
        .map(drop)
    }

    /// Writes `bytes` as `/EFI/BOOT/<name>`, replacing it.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), GrubError> {
        let host = self.path.with_extension(name);
        fs::write(&host, bytes).map_err(io(format!("write {}", host.display())))?;
        self.copy_in(&host, name)?;
        fs::remove_file(&host).map_err(io(format!("remove {}", host.display())))
    }

    /// The bytes of `/EFI/BOOT/<name>`, `None` when the file does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, GrubError> {
        let listing = run(self.mtool("mdir").args(["-b", ESP_DIR]))?;
        let wanted = format!("{ESP_DIR}/{name}");
        let present = String::from_utf8_lossy(&listing)
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case(&wanted));
        if !present {
            return Ok(None);
        }
        run(self
            .mtool("mcopy")
            .arg(format!("{ESP_DIR}/{name}"))
            .arg("-"))
        .map(Some)
    }

    /// Removes the image file.
    pub fn remove(self) -> Result<(), GrubError> {
        fs::remove_file(&self.path).map_err(io(format!("remove {}", self.path.display())))
    }
}

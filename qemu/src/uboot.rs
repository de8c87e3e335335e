//! Boots Debian's real U-Boot 2023.01 (`qemu_arm64` on `qemu-system-aarch64 -M virt`,
//! TCG) over boot environments and runs the **shipped** `bootloader/uboot/boot.cmd` on
//! each, read from the repository at run time.
//!
//! # What the harness changes around the shipped script
//! The script text itself is changed in one way only: every `saveenv` word becomes
//! `run bh_save` ([`wrap_script`]), because this U-Boot cannot store an env in its
//! flash under TCG. Everything else is set around it, as board specifics would be:
//!
//! 1. A read-only pflash image holds U-Boot's stored env: `bootdelay=0` and a
//!    `bootcmd` that loads the harness's *driver* script from the disk and runs it.
//! 2. The driver, per env ("case"): `env default -a -f` (U-Boot's built-in env, what a
//!    board uses when its stored env fails the CRC), then `virtio read` of the case's
//!    env and `env import -d -c` (`-d`: the imported env replaces everything, as a
//!    valid stored env does at power-on; `-c`: U-Boot's CRC check, on failure the
//!    built-in env stays). Then it defines the board specifics the script expects:
//!    `bascule_load_A`/`bascule_load_B` print `bh-load <slot>`, `bascule_boot` prints
//!    `bh-boot`, and `bh_save` is `env export -c -s` [`ENV_SIZE`] + `virtio write` back
//!    to the case's own env area. Then it `source`s the shipped script.
//! 3. `bascule_boot` returns instead of starting a kernel, so the driver goes on with
//!    the next case: many envs per QEMU run. The script's `reset` (its no-slot path)
//!    ends the QEMU run (`-no-reboot`); the harness then starts QEMU again for the
//!    cases that did not run yet. Booting a reset case again is the caller's choice.
//!
//! Names the harness sets start with `bh_` or are the ones the script reads; U-Boot's
//! shell looks a name up in the env before its locals, so no env may carry them.
//! The envs live in plain disk areas at fixed sectors (no partition table: the
//! driver names the sectors itself). Each env area is [`ENV_SIZE`] bytes, a single
//! copy without flags, as `env export -c -s` writes it.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use crate::qemu::{self, QemuError, RunOutput};
use crate::tools::{ToolError, MKIMAGE, QEMU_AARCH64, UBOOT_QEMU_ARM64};

/// Size of one env copy: what the harness writes and what `bh_save` exports.
pub const ENV_SIZE: usize = 0x4000;
/// Envs booted in one QEMU run at most (the driver script grows with each).
pub const BATCH: usize = 48;

const SECTOR: usize = 512;
const ENV_SECTORS: usize = ENV_SIZE / SECTOR;
const SCRIPT_LBA: usize = 0;
const SCRIPT_SECTORS: usize = 128;
const DRIVER_LBA: usize = SCRIPT_LBA + SCRIPT_SECTORS;
const DRIVER_SECTORS: usize = 2048;
const ENV_LBA: usize = DRIVER_LBA + DRIVER_SECTORS;
const SCRIPT_ADDR: usize = 0x4100_0000;
const DRIVER_ADDR: usize = 0x4200_0000;
const ENV_ADDR: usize = 0x4300_0000;
/// U-Boot's `CONFIG_ENV_SIZE` for qemu_arm64: its env at the start of pflash 1.
const FLASH_ENV_SIZE: usize = 0x40000;
const FLASH_SIZE: u64 = 64 << 20;
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the shipped script lives in the repository.
pub fn shipped_script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootloader/uboot/boot.cmd")
}

/// What the real U-Boot did with one env.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UbootDecision {
    /// The script ran `bascule_load` of this slot and then `bascule_boot`.
    Boot(SlotName),
    /// The script reset the board (its no-slot path).
    NoSlotReset,
    /// The script returned without booting or resetting (a real board would go on
    /// with the rest of its `bootcmd`).
    Returned,
}

impl std::fmt::Display for UbootDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UbootDecision::Boot(slot) => write!(f, "boot {slot}"),
            UbootDecision::NoSlotReset => f.write_str("no slot, reset"),
            UbootDecision::Returned => f.write_str("script returned without booting"),
        }
    }
}

/// One boot of one env on the real U-Boot.
#[derive(Debug, Clone)]
pub struct UbootBoot {
    pub decision: UbootDecision,
    /// The env area after the boot, as the script saved it (or untouched).
    pub saved: Vec<u8>,
    /// The console lines of this case.
    pub console: String,
}

/// Why the harness could not boot an env.
#[derive(Debug, thiserror::Error)]
pub enum UbootError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot read the boot script {path}: {source}")]
    ReadScript {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mkimage failed on {path}: {stderr}")]
    Mkimage { path: PathBuf, stderr: String },
    #[error("{what} is {len} bytes, more than the {max} bytes its disk area holds")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("env image {index} is {len} bytes, expected {ENV_SIZE}")]
    EnvImageSize { index: usize, len: usize },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error("U-Boot stopped in case {case} without finishing or resetting. Console:\n{console}")]
    Interrupted { case: usize, console: String },
    #[error("U-Boot ran no case at all. Console:\n{console}")]
    NoProgress { console: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UbootError {
    let what = what.into();
    move |source| UbootError::Io { what, source }
}

/// Replaces every `saveenv` word of `script` with `run bh_save` (the only change the
/// harness makes to the shipped script's text).
pub fn wrap_script(script: &str) -> String {
    const WORD: &str = "saveenv";
    let is_word_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find(WORD) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + WORD.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_word_char) || after.is_some_and(is_word_char) {
            out.push_str(WORD);
        } else {
            out.push_str("run bh_save");
        }
        rest = &rest[at + WORD.len()..];
    }
    out.push_str(rest);
    out
}

/// The real U-Boot, ready to boot envs with the shipped script.
pub struct UbootHarness {
    dir: tempfile::TempDir,
    qemu: PathBuf,
    firmware: PathBuf,
    script_image: Vec<u8>,
    console_log: Option<PathBuf>,
    /// QEMU runs so far.
    pub runs: usize,
}

impl UbootHarness {
    /// Finds the tools, wraps the script at `script` and builds its U-Boot image.
    pub fn new(script: &Path) -> Result<Self, UbootError> {
        let qemu = QEMU_AARCH64.find()?;
        let firmware = UBOOT_QEMU_ARM64.find()?;
        let mkimage = MKIMAGE.find()?;
        let text = fs::read_to_string(script).map_err(|source| UbootError::ReadScript {
            path: script.to_path_buf(),
            source,
        })?;
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        let script_image = mkimage_script(&mkimage, dir.path(), "boot", &wrap_script(&text))?;
        check_fits(
            "the wrapped boot script",
            script_image.len(),
            SCRIPT_SECTORS,
        )?;
        write_flash(&dir.path().join("flash1.img"))?;
        Ok(UbootHarness {
            dir,
            qemu,
            firmware,
            script_image,
            console_log: None,
            runs: 0,
        })
    }

    /// Appends the serial console of every QEMU run to `path`.
    pub fn log_console_to(&mut self, path: PathBuf) {
        self.console_log = Some(path);
    }

    /// Boots each env image once (each [`ENV_SIZE`] bytes), many per QEMU run.
    pub fn boot_each(&mut self, images: &[Vec<u8>]) -> Result<Vec<UbootBoot>, UbootError> {
        for (index, image) in images.iter().enumerate() {
            if image.len() != ENV_SIZE {
                return Err(UbootError::EnvImageSize {
                    index,
                    len: image.len(),
                });
            }
        }
        let mut done: Vec<UbootBoot> = Vec::with_capacity(images.len());
        while done.len() < images.len() {
            let end = (done.len() + BATCH).min(images.len());
            let ran = self.run_batch(&images[done.len()..end])?;
            done.extend(ran);
        }
        Ok(done)
    }

    /// One QEMU run over `images`; returns the boots of the cases that ran, in order
    /// (all of them, or up to and including the one that reset).
    fn run_batch(&mut self, images: &[Vec<u8>]) -> Result<Vec<UbootBoot>, UbootError> {
        let driver = mkimage_script(
            &MKIMAGE.find()?,
            self.dir.path(),
            "driver",
            &driver_script(images.len()),
        )?;
        check_fits("the driver script", driver.len(), DRIVER_SECTORS)?;
        let disk = self.dir.path().join("disk.img");
        write_disk(&disk, &self.script_image, &driver, images)?;
        let out = qemu::run(self.command(&disk), RUN_TIMEOUT)?;
        self.runs += 1;
        self.log(&out)?;
        let console = out.console_text();
        let outcomes = parse_console(&console, images.len())?;
        let bytes = fs::read(&disk).map_err(io(format!("reading {}", disk.display())))?;
        Ok(outcomes
            .into_iter()
            .enumerate()
            .map(|(i, (decision, console))| UbootBoot {
                decision,
                saved: bytes[env_offset(i)..env_offset(i) + ENV_SIZE].to_vec(),
                console,
            })
            .collect())
    }

    fn command(&self, disk: &Path) -> Command {
        let mut cmd = Command::new(&self.qemu);
        let flash = self.dir.path().join("flash1.img");
        cmd.args([
            "-M",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "256",
            "-accel",
            "tcg",
        ])
        .arg("-bios")
        .arg(&self.firmware)
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,index=1,readonly=on,file={}",
            flash.display()
        ))
        .arg("-drive")
        .arg(format!("if=none,format=raw,id=bh0,file={}", disk.display()))
        .args(["-device", "virtio-blk-device,drive=bh0"]);
        cmd
    }

    fn log(&self, out: &RunOutput) -> Result<(), UbootError> {
        let Some(path) = &self.console_log else {
            return Ok(());
        };
        use std::io::Write;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(format!("opening {}", path.display())))?;
        writeln!(file, "==== QEMU run {} ({:?}) ====", self.runs, out.elapsed)
            .and_then(|()| file.write_all(out.console_text().as_bytes()))
            .map_err(io(format!("writing {}", path.display())))
    }
}

fn check_fits(what: &'static str, len: usize, sectors: usize) -> Result<(), UbootError> {
    let max = sectors * SECTOR;
    if len > max {
        return Err(UbootError::TooLarge { what, len, max });
    }
    Ok(())
}

fn env_offset(case: usize) -> usize {
    (ENV_LBA + case * ENV_SECTORS) * SECTOR
}

/// The driver: per case, reset to the built-in env, import the case's env, define
/// the board specifics and `source` the shipped script (see the module docs).
fn driver_script(cases: usize) -> String {
    let mut s = String::from("echo bh-run\n");
    s.push_str(&format!(
        "virtio read {SCRIPT_ADDR:#x} {SCRIPT_LBA:#x} {SCRIPT_SECTORS:#x}\n"
    ));
    for case in 0..cases {
        let lba = ENV_LBA + case * ENV_SECTORS;
        s.push_str(&format!(
            "echo bh-case {case} begin\n\
             env default -a -f\n\
             virtio read {ENV_ADDR:#x} {lba:#x} {ENV_SECTORS:#x}\n\
             env import -d -c {ENV_ADDR:#x} {ENV_SIZE:#x}\n\
             setenv bascule_load_A 'echo bh-load A'\n\
             setenv bascule_load_B 'echo bh-load B'\n\
             setenv bascule_boot 'echo bh-boot'\n\
             setenv bh_save 'env export -c -s {ENV_SIZE:#x} {ENV_ADDR:#x}; \
             virtio write {ENV_ADDR:#x} {lba:#x} {ENV_SECTORS:#x}'\n\
             source {SCRIPT_ADDR:#x}\n\
             echo bh-case {case} end\n"
        ));
    }
    s.push_str("echo bh-run end\npoweroff\n");
    s
}

/// Splits the console into cases and reads each one's decision. Cases after the one
/// that reset did not run and are left out.
fn parse_console(console: &str, cases: usize) -> Result<Vec<(UbootDecision, String)>, UbootError> {
    let mut out = Vec::new();
    let mut current: Option<CaseLog> = None;
    for line in console.lines() {
        let line = line.trim_end();
        if let Some(case) = case_marker(line, "begin") {
            current = Some(CaseLog::new(case));
        } else if let Some(case) = case_marker(line, "end") {
            match current.take() {
                Some(log) if log.case == case => out.push(log.finished()),
                _ => return Err(interrupted(case, console)),
            }
        } else if let Some(log) = current.as_mut() {
            log.line(line);
        }
    }
    if let Some(log) = current {
        if !log.reset {
            return Err(interrupted(log.case, console));
        }
        out.push((UbootDecision::NoSlotReset, log.text));
    }
    if out.is_empty() && cases > 0 {
        return Err(UbootError::NoProgress {
            console: console.into(),
        });
    }
    Ok(out)
}

fn interrupted(case: usize, console: &str) -> UbootError {
    UbootError::Interrupted {
        case,
        console: console.into(),
    }
}

fn case_marker(line: &str, what: &str) -> Option<usize> {
    let rest = line.strip_prefix("bh-case ")?;
    let (case, tail) = rest.split_once(' ')?;
    (tail == what).then(|| case.parse().ok())?
}

/// The console of one case while it runs.
struct CaseLog {
    case: usize,
    text: String,
    loaded: Option<SlotName>,
    booted: bool,
    reset: bool,
}

impl CaseLog {
    fn new(case: usize) -> Self {
        CaseLog {
            case,
            text: String::new(),
            loaded: None,
            booted: false,
            reset: false,
        }
    }

    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if let Some(slot) = line.strip_prefix("bh-load ") {
            self.loaded = slot.parse().ok();
        } else if line == "bh-boot" {
            self.booted = true;
        } else if line.starts_with("resetting ...") {
            self.reset = true;
        }
    }

    fn finished(self) -> (UbootDecision, String) {
        let decision = match (self.loaded, self.booted) {
            (Some(slot), true) => UbootDecision::Boot(slot),
            _ => UbootDecision::Returned,
        };
        (decision, self.text)
    }
}

/// Wraps `text` as a U-Boot script image (`mkimage -T script`).
pub(crate) fn mkimage_script(
    mkimage: &Path,
    dir: &Path,
    name: &str,
    text: &str,
) -> Result<Vec<u8>, UbootError> {
    let src = dir.join(format!("{name}.cmd"));
    let img = dir.join(format!("{name}.scr"));
    fs::write(&src, text).map_err(io(format!("writing {}", src.display())))?;
    let out = Command::new(mkimage)
        .args(["-A", "arm64", "-T", "script", "-C", "none", "-d"])
        .arg(&src)
        .arg(&img)
        .output()
        .map_err(io("running mkimage"))?;
    if !out.status.success() {
        return Err(UbootError::Mkimage {
            path: src,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    fs::read(&img).map_err(io(format!("reading {}", img.display())))
}

/// U-Boot's stored env: no autoboot delay, and a `bootcmd` that runs the driver.
fn write_flash(path: &Path) -> Result<(), UbootError> {
    let mut vars = EnvVars::new();
    vars.insert("bootdelay", "0");
    vars.insert(
        "bootcmd",
        format!(
            "virtio scan; virtio read {DRIVER_ADDR:#x} {DRIVER_LBA:#x} {DRIVER_SECTORS:#x}; \
             source {DRIVER_ADDR:#x}; echo bh-driver-failed; poweroff"
        ),
    );
    let codec = UbootCodec::new(FLASH_ENV_SIZE, false).expect("a valid env size");
    let env = codec
        .encode(&vars, 0)
        .expect("two short variables fit the flash env");
    let file = fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    use std::io::Write;
    (&file)
        .write_all(&env)
        .and_then(|()| file.set_len(FLASH_SIZE))
        .map_err(io(format!("writing {}", path.display())))
}

fn write_disk(
    path: &Path,
    script: &[u8],
    driver: &[u8],
    images: &[Vec<u8>],
) -> Result<(), UbootError> {
    let mut disk = vec![0u8; env_offset(0)];
    disk[SCRIPT_LBA * SECTOR..][..script.len()].copy_from_slice(script);
    disk[DRIVER_LBA * SECTOR..][..driver.len()].copy_from_slice(driver);
    for image in images {
        disk.extend_from_slice(image);
    }
    fs::write(path, disk).map_err(io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_replaces_only_the_saveenv_command() {
        let wrapped = wrap_script("if x; then\n  saveenv\nfi\nsaveenv; reset\nno_saveenv_x\n");
        assert_eq!(
            wrapped,
            "if x; then\n  run bh_save\nfi\nrun bh_save; reset\nno_saveenv_x\n"
        );
    }

    #[test]
    fn console_parse_reads_boots_returns_and_a_reset() {
        let console = "noise\nbh-case 0 begin\nbh-load B\nbh-boot\nbh-case 0 end\n\
                       bh-case 1 begin\nbh-case 1 end\n\
                       bh-case 2 begin\nbascule: no slot\nresetting ...\n";
        let out = parse_console(console, 4).unwrap();
        let decisions: Vec<_> = out.iter().map(|(d, _)| *d).collect();
        assert_eq!(
            decisions,
            [
                UbootDecision::Boot(SlotName::B),
                UbootDecision::Returned,
                UbootDecision::NoSlotReset
            ]
        );
        assert!(out[2].1.contains("no slot"));
    }

    #[test]
    fn console_parse_refuses_a_case_that_stopped_midway() {
        let err = parse_console("bh-case 0 begin\nbh-load A\n", 1).unwrap_err();
        assert!(
            matches!(err, UbootError::Interrupted { case: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn driver_writes_each_case_back_to_its_own_area() {
        let driver = driver_script(2);
        let second = format!("virtio write {ENV_ADDR:#x} {:#x}", ENV_LBA + ENV_SECTORS);
        assert!(driver.contains(&second), "{driver}");
        assert!(driver.ends_with("poweroff\n"));
    }
}

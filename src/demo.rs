//! `bascule demo`: a whole A/B update cycle on a device made of local files.
//!
//! It builds a default device: one GPT disk image `disk.img` made by `bascule
//! provision` from `layout.toml` (slots A and B, a data partition whose mounted
//! filesystem a `data/` directory stands in for, a redundant U-Boot env at raw offsets
//! before the first partition, initialised from the board's default env with v1 in
//! slot A), `system.toml` with a `[health]` probe, a signing key and an
//! `fw_env.config`. Then it installs v2 into B, "reboots" with the bootloader simulator,
//! runs the health probe ([`crate::health`]), which confirms B; installs v3 into A,
//! whose application self-test fails, reboots while the probe fails until the tries
//! run out, shows the bootloader falling back to B and the history record that
//! explains the rollback. The probe's check is a configured command
//! (`app-selftest.sh`) that reads `/etc/bascule-health` from the booted slot's ext4
//! filesystem with `debugfs`, as an application's self-test would read its own files.
//! Each step says what it expects and checks it; the demo fails (non-zero exit) the
//! moment one does not hold.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::health::{self, history::format_time, ProbeResult};
use bascule_partitions::SlotName;

use crate::bundle::{self, Compression, CreateOptions};
use crate::config::SystemConfig;
use crate::device::Device;
use crate::install::{InstallOptions, NoProgress};
use crate::ops;
use crate::slot::{BootDecision, SlotState};
use crate::Error;

const IMAGE_SIZE: u64 = 24 << 20;
const ENV_SIZE: u64 = 0x4000;
/// The two env copies, between the GPT and the first partition (at 1 MiB).
const ENV_OFFSETS: [u64; 2] = [512 << 10, 768 << 10];
const COMPATIBLE: &str = "bascule-demo-board";

/// The demo disk, as a provisioning station's layout file.
fn layout_toml() -> String {
    format!(
        r#"# The demo disk: GPT, two 32 MiB root slots, a data slot, U-Boot's redundant env
# at raw offsets before the first partition. See docs/layout.md.
compatible = "{COMPATIBLE}"
[disk]
size = "80MiB"
[[partition]]
name = "rootfs-a"
type = "linux"
size = "32MiB"
[[partition]]
name = "rootfs-b"
type = "linux"
size = "32MiB"
[[partition]]
name = "data"
type = "linux"
size = "rest"
[slots.rootfs]
A = "rootfs-a"
B = "rootfs-b"
[data]
partition = "data"
[bootenv]
backend = "uboot"
offset = {}
redundant_offset = {}
size = {ENV_SIZE}
"#,
        ENV_OFFSETS[0], ENV_OFFSETS[1]
    )
}

/// The byte window (offset, size) of each partition of the demo layout, by name.
fn windows() -> Result<Vec<(String, u64, u64)>, Error> {
    use bascule_partitions::disk_layout::DiskLayout;
    let layout = DiskLayout::parse(&layout_toml()).map_err(|e| Error::Usage(e.to_string()))?;
    let plan = layout
        .plan(None, &|_| None)
        .map_err(|e| Error::Usage(e.to_string()))?;
    Ok((0..plan.partitions.len())
        .map(|i| {
            let (offset, size) = plan.window(i);
            (plan.partitions[i].name.clone(), offset, size)
        })
        .collect())
}

/// Runs the demo in `dir`.
pub fn run(dir: &Path) -> Result<(), Error> {
    let dir = prepare_dir(dir)?;
    let mut step = Steps::default();
    step.say("Create a default device: layout.toml (GPT: rootfs-a, rootfs-b, data; U-Boot env at raw offsets), system.toml with a [health] probe, keys");
    let key = create_device(&dir)?;

    step.say(
        "Factory: bascule provision writes the GPT, v1 into slot A, the data slot and an env where A is good and booted",
    );
    provision_v1(&dir, &key)?;
    let mut dev = Device::open(SystemConfig::load(&dir.join("system.toml"))?)?;
    expect_state(&mut dev, SlotName::A, |s| *s == SlotState::Good, "A good")?;
    show_status(&mut dev)?;

    step.say("Release team: build ext4 images v2 (healthy) and v3 (its app self-test fails), sign bundles");
    let v2 = release(&dir, &key, "2.0.0", true)?;
    let v3 = release(&dir, &key, "3.0.0", false)?;

    step.say("Device: install v2. It streams into slot B (the inactive one) and marks B pending");
    install(&mut dev, &v2)?;
    expect_state(
        &mut dev,
        SlotName::B,
        |s| matches!(s, SlotState::Pending { .. }),
        "B pending after install",
    )?;

    step.say("Reboot: the bootloader tries the pending slot B");
    expect(
        ops::simulate_boot(&mut dev)? == BootDecision::Boot(SlotName::B),
        "bootloader boots B",
    )?;
    step.say("bascule health on B: the app self-test passes, so bascule confirms B");
    expect(probe(&mut dev)?, "the health probe of v2 passes")?;
    expect_state(
        &mut dev,
        SlotName::B,
        |s| *s == SlotState::Good,
        "B confirmed good",
    )?;
    show_status(&mut dev)?;

    step.say("Device: install v3 into slot A (now the inactive one)");
    install(&mut dev, &v3)?;
    rollback_cycle(&mut dev, &mut step)?;
    show_status(&mut dev)?;
    show_fw_printenv(&dir, &mut dev)?;
    println!(
        "\nDemo passed: v2 confirmed on B by its health probe, v3 failed its probe and was \
         rolled back, the history says why, the device still runs v2."
    );
    Ok(())
}

/// Reboots while v3's health probe fails, until the bootloader falls back to B.
fn rollback_cycle(dev: &mut Device, step: &mut Steps) -> Result<(), Error> {
    let attempts = dev.config.boot.attempts;
    for attempt in 1..=attempts {
        step.say(&format!(
            "Reboot {attempt}/{attempts}: the bootloader tries pending slot A"
        ));
        expect(
            ops::simulate_boot(dev)? == BootDecision::Boot(SlotName::A),
            "bootloader boots A",
        )?;
        expect(!probe(dev)?, "the health probe of v3 fails")?;
    }
    step.say("Reboot: A has no tries left, the bootloader falls back to B (rollback)");
    expect(
        ops::simulate_boot(dev)? == BootDecision::Boot(SlotName::B),
        "bootloader falls back to B",
    )?;
    expect(probe(dev)?, "v2 on B is healthy again")?;
    expect_state(
        dev,
        SlotName::A,
        |s| matches!(s, SlotState::Bad { .. }),
        "A bad after rollback",
    )?;
    let report = ops::status(dev)?;
    expect(report.booted == Some(SlotName::B), "booted slot is B")?;
    expect(
        report.slots[1].version.as_deref() == Some("2.0.0"),
        "B still holds v2",
    )?;
    step.say("Why did v3 roll back? The health history on the data slot says:");
    let Some(why) = report.rollbacks.first() else {
        return expect(false, "the history explains the rollback of v3");
    };
    println!(
        "     {}: slot {} v{} failed stage {:?}, check {:?} ({}) on boot {}",
        format_time(why.time),
        why.slot,
        why.version.as_deref().unwrap_or("?"),
        why.stage.as_deref().unwrap_or("?"),
        why.check.as_deref().unwrap_or("?"),
        why.reason.as_deref().unwrap_or("?"),
        why.boot_count,
    );
    for line in why.output.as_deref().unwrap_or("").lines() {
        println!("       | {line}");
    }
    expect(
        why.version.as_deref() == Some("3.0.0"),
        "the history names v3 as the release that rolled back",
    )
}

/// Runs `bascule health` on the booted slot; prints what it did. Returns whether it
/// passed.
fn probe(dev: &mut Device) -> Result<bool, Error> {
    let report = health::run(dev, true)?;
    let slot = report.slot;
    Ok(match report.result {
        ProbeResult::Confirmed(done) => {
            println!(
                "     health probe of slot {slot} passed ({}): confirmed, security floor {}",
                report.passed.join(", "),
                done.floor.1
            );
            true
        }
        ProbeResult::Passed => true,
        ProbeResult::Failed { failure, action } => {
            println!(
                "     health probe of slot {slot} FAILED: check {:?}: {}",
                failure.check, failure.reason
            );
            for line in failure.output.lines() {
                println!("       | {line}");
            }
            println!("     {action}: not confirmed, the try counter keeps running down");
            false
        }
    })
}

#[derive(Default)]
struct Steps(u32);

impl Steps {
    fn say(&mut self, what: &str) {
        self.0 += 1;
        println!("\n[{}] {what}", self.0);
    }
}

fn expect(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        println!("     ok: {what}");
        return Ok(());
    }
    Err(Error::Usage(format!("demo check failed: expected {what}")))
}

fn expect_state(
    dev: &mut Device,
    slot: SlotName,
    pred: impl Fn(&SlotState) -> bool,
    what: &str,
) -> Result<(), Error> {
    let report = ops::status(dev)?;
    expect(pred(&report.slots[slot.index()].state), what)
}

fn prepare_dir(dir: &Path) -> Result<PathBuf, Error> {
    let marker = dir.join(".bascule-demo");
    if dir.exists() {
        if !marker.exists()
            && dir
                .read_dir()
                .map_err(Error::io("read demo dir"))?
                .next()
                .is_some()
        {
            return Err(Error::Usage(format!(
                "{} exists and is not a bascule demo directory",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir).map_err(Error::io(format!("clean {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    std::fs::write(&marker, "").map_err(Error::io("write demo marker"))?;
    dir.canonicalize().map_err(Error::io("resolve demo dir"))
}

/// The demo board's default U-Boot env, as `make u-boot-initial-env` would write it:
/// the blank `uboot.env` is initialised from it.
const INITIAL_ENV: &str = "bootdelay=2\n\
    bootcmd=load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}\n\
    scriptaddr=0x40200000\n";

/// Writes layout.toml, u-boot-initial-env, data/, app-selftest.sh, system.toml,
/// fw_env.config, cmdline and the keys; `disk.img` is made by provisioning.
fn create_device(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir.join("data")).map_err(Error::io("create data"))?;
    std::os::unix::fs::symlink("disk.img", dir.join("data-partition"))
        .map_err(Error::io("link data-partition"))?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(Error::io(format!("write {name}")))
    };
    let windows = windows()?;
    write("layout.toml", layout_toml())?;
    write("system.toml", system_toml(dir, &windows))?;
    write("app-selftest.sh", app_selftest(&windows))?;
    write("cmdline", "console=ttyS0 bascule.slot=A\n".into())?;
    write("u-boot-initial-env", INITIAL_ENV.into())?;
    let disk = dir.join("disk.img");
    write(
        "fw_env.config",
        format!(
            "{0} {1:#x} {ENV_SIZE:#x}\n{0} {2:#x} {ENV_SIZE:#x}\n",
            disk.display(),
            ENV_OFFSETS[0],
            ENV_OFFSETS[1]
        ),
    )?;
    for sub in ["keyring", "signing"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(Error::io(format!("create {sub}")))?;
    }
    let key = dir.join("signing/release");
    let id = bundle::keygen(&key)?;
    std::fs::copy(key.with_extension("pub"), dir.join("keyring/release.pub"))
        .map_err(Error::io("copy public key"))?;
    println!("     signing key {id}; device trusts keyring/release.pub");
    Ok(key.with_extension("key"))
}

/// The demo application's self-test, the probe's command check: it reads
/// `/etc/bascule-health` from the booted slot's ext4 filesystem in `disk.img` (on a
/// device, the application would read its own files on the running root).
fn app_selftest(windows: &[(String, u64, u64)]) -> String {
    let offset = |name: &str| windows.iter().find(|w| w.0 == name).map_or(0, |w| w.1);
    format!(
        r#"#!/bin/sh
dir=$(dirname "$0")
slot=$(sed -n 's/.*bascule\.slot=\([AB]\).*/\1/p' "$dir/cmdline")
case "$slot" in A) offset={};; *) offset={};; esac
state=$(debugfs -R 'cat /etc/bascule-health' "$dir/disk.img?offset=$offset" 2>/dev/null)
echo "app self-test on slot $slot: /etc/bascule-health says '$state'"
[ "$state" = ok ] || {{ echo "app: self-test failed" >&2; exit 1; }}
"#,
        offset("rootfs-a"),
        offset("rootfs-b")
    )
}

fn system_toml(dir: &Path, windows: &[(String, u64, u64)]) -> String {
    let selftest = dir.join("app-selftest.sh");
    let window = |name: &str| {
        let (_, offset, size) = windows
            .iter()
            .find(|w| w.0 == name)
            .cloned()
            .unwrap_or_default();
        format!("device = \"disk.img\"\noffset = {offset}\nsize = {size}")
    };
    format!(
        r#"# bascule demo device: every path is relative to this file.
compatible = "{COMPATIBLE}"
keyring = "keyring"
# state_dir defaults to data/bascule: the security floor both slots share

# The data slot: a filesystem both root slots see, mounted before bascule runs. On a
# real device a partition mounted at e.g. /data; here the data partition of disk.img
# (made by provisioning), named by the symlink data-partition as udev names it by
# /dev/disk/by-partlabel/data, and the data/ directory standing in for its mount.
[data]
device = "data-partition"
mount = "data"

[boot]
cmdline = "cmdline"   # written by `bascule simulate-boot`; /proc/cmdline on a real device
attempts = 3

[bootenv]
backend = "uboot"
path = "disk.img"
offset = {env_a}
size = {ENV_SIZE}
redundant_offset = {env_b}
defaults = "u-boot-initial-env"   # the board's default env, for init-env on a blank env

[slots.rootfs.A]
{slot_a}

[slots.rootfs.B]
{slot_b}

# The health probe (`bascule health`): confirms the booted slot when every check
# passes. The demo's "reboot" is the simulator's next power-on, so the command is true.
[health]
deadline_secs = 30
on_failure = "reboot"
reboot_command = ["true"]
[[health.stage]]
name = "app"
[[health.stage.check]]
name = "app-selftest"
command = ["sh", {selftest:?}]
timeout_secs = 10
"#,
        selftest = selftest.display().to_string(),
        env_a = ENV_OFFSETS[0],
        env_b = ENV_OFFSETS[1],
        slot_a = window("rootfs-a"),
        slot_b = window("rootfs-b"),
    )
}

/// What a provisioning station does: `bascule provision` of v1 onto a blank disk.
fn provision_v1(dir: &Path, key: &Path) -> Result<(), Error> {
    let v1 = release(dir, key, "1.0.0", true)?;
    let opts = crate::provision::ProvisionOptions {
        layout: dir.join("layout.toml"),
        disk: dir.join("disk.img"),
        bundles: vec![("rootfs".into(), v1)],
        keyring: Some(dir.join("keyring")),
        defaults: Some(dir.join("u-boot-initial-env")),
        verify: true,
        report: Some(dir.join("provision-report.json")),
        ..Default::default()
    };
    let report = crate::provision::run(&opts)?;
    for line in report.summary().lines() {
        println!("     {line}");
    }
    expect(
        report.outcome == crate::provision::Outcome::Provisioned,
        "a blank disk provisioned, re-read and verified (report: provision-report.json)",
    )
}

fn release(dir: &Path, key: &Path, version: &str, healthy: bool) -> Result<PathBuf, Error> {
    let image = make_image(dir, version, healthy)?;
    let out = dir.join(format!("release-{version}.bundle"));
    let opts = CreateOptions {
        version: version
            .parse()
            .map_err(|_| Error::Usage(format!("bad version {version}")))?,
        compatible: COMPATIBLE.into(),
        security_version: 1,
        build_id: format!("demo-{version}"),
        min_from_version: None,
        images: vec![("rootfs".into(), image)],
        compression: Compression::Zstd,
        chunk_size: 1 << 20,
        zstd_level: 3,
        xz_level: 6,
    };
    let manifest = bundle::create_bundle(&opts, &bundle::load_signing_key(key)?, &out)?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "     {}: version {} ({} byte image, {size} byte bundle, zstd)",
        out.display(),
        manifest.version,
        manifest.images[0].size
    );
    Ok(out)
}

/// An ext4 image made by `mkfs.ext4 -d`, whose `/etc/bascule-health` says whether the
/// demo application's self-test passes on it.
fn make_image(dir: &Path, version: &str, healthy: bool) -> Result<PathBuf, Error> {
    let root = dir.join(format!("rootfs-{version}"));
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).map_err(Error::io("create image tree"))?;
    let health = if healthy { "ok" } else { "fail" };
    std::fs::write(
        etc.join("os-release"),
        format!("NAME=bascule-demo\nVERSION_ID={version}\n"),
    )
    .map_err(Error::io("write image file"))?;
    std::fs::write(etc.join("bascule-health"), format!("{health}\n"))
        .map_err(Error::io("write image file"))?;
    let image = dir.join(format!("rootfs-{version}.img"));
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "rootfs", "-d"])
        .arg(&root)
        .arg(&image)
        .arg(format!("{}k", IMAGE_SIZE / 1024))
        .status();
    if !matches!(mkfs, Ok(s) if s.success()) {
        return Err(Error::Usage(
            "the demo needs mkfs.ext4 and debugfs (Debian package e2fsprogs; scripts/deps \
             installs it)"
                .into(),
        ));
    }
    Ok(image)
}

fn install(dev: &mut Device, bundle: &Path) -> Result<(), Error> {
    let report = ops::install(
        dev,
        &bundle.display().to_string(),
        &InstallOptions::default(),
        &mut NoProgress,
    )?;
    println!(
        "     installed {} into slot {} ({} bytes, every chunk verified against the signed manifest)",
        report.version, report.target, report.bytes
    );
    Ok(())
}

fn show_status(dev: &mut Device) -> Result<(), Error> {
    let r = ops::status(dev)?;
    for info in &r.slots {
        println!(
            "     slot {}: {} (version {})",
            info.slot,
            info.state,
            info.version.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// Shows that U-Boot's own tools read the same state bascule reports.
fn show_fw_printenv(dir: &Path, dev: &mut Device) -> Result<(), Error> {
    let out = Command::new("fw_printenv")
        .arg("-c")
        .arg(dir.join("fw_env.config"))
        .output();
    let Ok(out) = out.map_err(|e| e.to_string()).and_then(|o| {
        if o.status.success() {
            Ok(o)
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }) else {
        println!("\n(fw_printenv is not installed: `apt-get install libubootenv-tool` to read the env with U-Boot's tools)");
        return Ok(());
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("\nfw_printenv -c {}/fw_env.config reads:", dir.display());
    let vars = dev.env.load()?;
    for line in text.lines().filter(|l| l.starts_with("BOOT_")) {
        println!("     {line}");
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        expect(
            vars.get_str(k) == Some(v),
            &format!("bascule reads {k}={v} too"),
        )?;
    }
    Ok(())
}

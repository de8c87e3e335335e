//! The boot env step, through the same code as `bascule init-env`: the station
//! writes a `system.toml` of its own view of the disk (slots and env as windows of the
//! disk, the state directory in a scratch directory), opens it as a [`Device`] and
//! runs [`ops::init_env`] with slot A good. So the board's default variables
//! (`--defaults`, U-Boot's `u-boot-initial-env`) are kept, and a blank U-Boot env
//! without them is refused, by the same rules.
//!
//! The GRUB env is a file in the boot partition: it is made in the scratch directory
//! and copied into the boot file system with the rest of its files.
use std::path::{Path, PathBuf};

use bascule_hal::{BlockDevice, EnvVars, FileBlock};
use bascule_partitions::disk_layout::{BootFs, DiskPlan, EnvPlace};
use bascule_partitions::SlotName;

use super::content::{read_ext4_file, read_vfat_file};
use super::ProvisionError;
use crate::config::SystemConfig;
use crate::device::Device;
use crate::ops;
use crate::slot::state::{factory_state, InstalledImage};

/// A TOML string.
fn quote(text: impl AsRef<str>) -> String {
    toml::Value::String(text.as_ref().to_string()).to_string()
}

/// Where the GRUB env is made before it is copied into the boot partition.
pub fn grub_dir(scratch: &Path) -> PathBuf {
    scratch.join("grub")
}

/// The `[bootenv]` table of the station's view.
fn bootenv_toml(plan: &DiskPlan, disk: &Path, scratch: &Path) -> String {
    let disk = quote(disk.to_string_lossy());
    match &plan.env {
        EnvPlace::Uboot {
            offset,
            redundant_offset,
            size,
        } => {
            let second = match redundant_offset {
                Some(o) => format!("redundant_offset = {o}"),
                None => "allow_single_copy = true".into(),
            };
            format!("backend = \"uboot\"\npath = {disk}\noffset = {offset}\nsize = {size}\n{second}\n")
        }
        EnvPlace::Native {
            offset,
            second_offset,
            size,
        } => format!(
            "backend = \"native\"\npath = {disk}\noffset = {offset}\nsize = {size}\nsecond_offset = {second_offset}\n"
        ),
        EnvPlace::Grub { path } => {
            let name = Path::new(path).file_name().map(|n| n.to_string_lossy().to_string());
            let file = grub_dir(scratch).join(name.unwrap_or_else(|| "grubenv".into()));
            format!("backend = \"grub\"\npath = {}\n", quote(file.to_string_lossy()))
        }
        EnvPlace::Gpt { bascule_env } => {
            let class = plan.slots.get("rootfs").or_else(|| plan.slots.values().next());
            let [a, b] = class.copied().unwrap_or([0, 0]);
            let name = |i: usize| quote(&plan.partitions[i].name);
            format!(
                "backend = \"gpt\"\ndisk = {disk}\nslot_a = {}\nslot_b = {}\nbascule_env = {}\n",
                name(a),
                name(b),
                name(*bascule_env)
            )
        }
    }
}

/// Opens the station's view of the disk as a device (config in `scratch`).
pub fn station_device(
    plan: &DiskPlan,
    disk: &Path,
    scratch: &Path,
) -> Result<Device, ProvisionError> {
    let mut text = format!(
        "compatible = {}\nkeyring = \"keyring\"\nstate_dir = {}\n[boot]\ncmdline = {}\n[bootenv]\n{}",
        quote(&plan.compatible),
        quote(scratch.join("state").to_string_lossy()),
        quote(scratch.join("cmdline").to_string_lossy()),
        bootenv_toml(plan, disk, scratch)
    );
    for (class, [a, b]) in &plan.slots {
        for (slot, index) in [("A", a), ("B", b)] {
            let (offset, size) = plan.window(*index);
            text.push_str(&format!(
                "[slots.{}.{slot}]\ndevice = {}\noffset = {offset}\nsize = {size}\n",
                quote(class),
                quote(disk.to_string_lossy())
            ));
        }
    }
    std::fs::create_dir_all(grub_dir(scratch)).map_err(|e| ProvisionError::Io {
        context: format!("create {}", scratch.display()),
        message: e.to_string(),
    })?;
    let path = scratch.join("station.toml");
    std::fs::write(&path, text).map_err(|e| ProvisionError::Io {
        context: format!("write {}", path.display()),
        message: e.to_string(),
    })?;
    Ok(Device::open(SystemConfig::load(&path)?)?)
}

/// Erases the env copies at raw offsets, so that `init-env` starts from a blank env
/// (and the board's defaults), not from what a foreign disk left there.
pub fn erase(plan: &DiskPlan, disk: &Path) -> Result<(), ProvisionError> {
    let mut copies = plan.env.raw_copies();
    if let EnvPlace::Gpt { bascule_env } = plan.env {
        copies.push(plan.window(bascule_env));
    }
    let mut dev = FileBlock::open(disk, 0, None, true)?;
    for (offset, size) in copies {
        dev.write_at(offset, &vec![0u8; size as usize])?;
    }
    Ok(dev.sync()?)
}

/// Writes the first boot state: slot A good with `version`, B bad.
pub fn init(
    dev: &mut Device,
    version: &str,
    defaults: Option<&Path>,
) -> Result<(), ProvisionError> {
    let opts = ops::InitEnv {
        version: Some(version),
        force: true,
        defaults,
    };
    ops::init_env(dev, SlotName::A, &opts).map_err(|e| ProvisionError::Env(Box::new(e)))
}

/// The env's variables when it already holds exactly the first boot state for
/// `version`; `None` otherwise (blank, unreadable, or another state).
pub fn initialised(dev: &mut Device, version: &str) -> Option<EnvVars> {
    let vars = dev.env.load().ok()?;
    let image = InstalledImage {
        version: version.into(),
        security_version: 0,
    };
    let want = factory_state(
        dev.scheme.as_ref(),
        &vars,
        SlotName::A,
        Some(&image),
        dev.config.boot.attempts,
    );
    (want == vars).then_some(vars)
}

/// Fetches the GRUB env files from the boot partition into the scratch directory,
/// so that [`initialised`] reads what the disk holds. `false` when they are absent.
pub fn fetch_grub_env(plan: &DiskPlan, disk: &Path, scratch: &Path) -> bool {
    let (EnvPlace::Grub { path }, Some((index, spec))) = (&plan.env, &plan.boot) else {
        return false;
    };
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string());
    let to = grub_dir(scratch).join(name.unwrap_or_default());
    match spec.filesystem {
        BootFs::Vfat => read_vfat_file(plan, disk, *index, path, &to),
        BootFs::Ext4 => read_ext4_file(plan, disk, *index, path, &to),
    }
}

/// The GRUB env files made in the scratch directory, as (file, path in the boot
/// partition) pairs.
pub fn grub_files(plan: &DiskPlan, scratch: &Path) -> Vec<(PathBuf, String)> {
    let EnvPlace::Grub { path } = &plan.env else {
        return Vec::new();
    };
    let dir = Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(grub_dir(scratch)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let at = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            (e.path(), at)
        })
        .collect()
}

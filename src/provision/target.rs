//! The disk provisioning writes to, and the checks that keep it from destroying a disk
//! in service:
//! - an image file is created sparse at the layout's size when it does not exist;
//! - a block device (a loop device too) is refused, even with `--force`, when it or
//!   one of its partitions is mounted (`/proc/self/mountinfo`, by device number), or
//!   when it is the disk the running system's root file system is on;
//! - an image file is refused the same way when a loop device backed by it (sysfs
//!   `loop/backing_file`) or one of that device's partitions is mounted: writing the
//!   file would change a mounted file system under the kernel;
//! - a foreign signature (a partition table that is not this layout, a file system,
//!   anything `wipefs` knows) refuses the disk unless `--force`.
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ProvisionError;

/// What the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    File,
    Block,
}

/// The disk being provisioned.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub kind: TargetKind,
    /// Its size in bytes.
    pub size: u64,
}

impl Target {
    /// Opens `path`: an existing block device (refused when in use, see
    /// `refuse_in_use`) or file; a missing file is created sparse at `create_size`
    /// (refused when that is unknown).
    pub fn open(path: &Path, create_size: Option<u64>) -> Result<Target, ProvisionError> {
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |e: std::io::Error| ProvisionError::Io {
                context: what,
                message: e.to_string(),
            }
        };
        if !path.exists() {
            let size = create_size.ok_or_else(|| ProvisionError::TargetMissing {
                path: path.to_path_buf(),
            })?;
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io("create"))?;
            file.set_len(size).map_err(io("size"))?;
        }
        let meta = std::fs::metadata(path).map_err(io("stat"))?;
        let kind = if meta.file_type().is_block_device() {
            TargetKind::Block
        } else if meta.is_file() {
            TargetKind::File
        } else {
            return Err(ProvisionError::TargetKind {
                path: path.to_path_buf(),
            });
        };
        let path = std::fs::canonicalize(path).map_err(io("resolve"))?;
        match kind {
            TargetKind::Block => refuse_in_use(&path, meta.rdev())?,
            TargetKind::File => {
                for (name, rdev) in loops_backed_by(&path) {
                    refuse_mounted(&path, rdev, &read_mountinfo()?)
                        .map_err(|e| via_loop(e, &name, rdev))?;
                }
            }
        }
        let file = std::fs::File::open(&path).map_err(io("open"))?;
        let size = bascule_hal::block::device_size(&file, &path)?;
        Ok(Target { path, kind, size })
    }
}

/// Refuses the block device `path` (device number `rdev`) when it is mounted (or has
/// a mounted partition), or holds the running system's root file system. Never
/// overridden by `--force`; checked before the device is opened.
fn refuse_in_use(path: &Path, rdev: u64) -> Result<(), ProvisionError> {
    let mountinfo = read_mountinfo()?;
    refuse_mounted(path, rdev, &mountinfo)?;
    let disk = sys_block_dir(rdev);
    let root = mount_entries(&mountinfo).find(|(_, point)| *point == "/");
    if root.is_some_and(|(numbers, _)| root_disk(numbers).is_some_and(|d| Some(d) == disk)) {
        return Err(ProvisionError::BootDisk {
            disk: path.to_path_buf(),
        });
    }
    Ok(())
}

fn read_mountinfo() -> Result<String, ProvisionError> {
    std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| ProvisionError::Io {
        context: "read /proc/self/mountinfo (to refuse a mounted disk)".into(),
        message: e.to_string(),
    })
}

/// Refuses `path` when block device `rdev` or one of its partitions is mounted.
fn refuse_mounted(path: &Path, rdev: u64, mountinfo: &str) -> Result<(), ProvisionError> {
    let mut devices = vec![dev_text(rdev)];
    devices.extend(partition_devices(sys_block_dir(rdev).as_deref()));
    match mounted(mountinfo, &devices) {
        Some((device, mount)) => Err(ProvisionError::Mounted {
            disk: path.to_path_buf(),
            device,
            mount,
        }),
        None => Ok(()),
    }
}

/// Names the loop device backed by the image file in a [`ProvisionError::Mounted`].
fn via_loop(e: ProvisionError, name: &str, rdev: u64) -> ProvisionError {
    let ProvisionError::Mounted {
        disk,
        device,
        mount,
    } = e
    else {
        return e;
    };
    let device = if device == dev_text(rdev) {
        format!("/dev/{name} ({device}), the loop device backed by this file,")
    } else {
        format!("{device}, a partition of /dev/{name}, the loop device backed by this file,")
    };
    ProvisionError::Mounted {
        disk,
        device,
        mount,
    }
}

/// The name and device number of each loop device whose backing file is `file`
/// (canonical).
fn loops_backed_by(file: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|b| Path::new(b.trim_end_matches('\n')) == file)
        })
        .filter_map(|e| {
            let numbers = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            Some((name, parse_dev(numbers.trim())?))
        })
        .collect()
}

/// `major:minor` (sysfs `dev`) as a device number.
fn parse_dev(numbers: &str) -> Option<u64> {
    let (major, minor) = numbers.split_once(':')?;
    Some(nix::sys::stat::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

/// The (`major:minor`, mount point) of each line of `/proc/self/mountinfo`.
fn mount_entries(mountinfo: &str) -> impl Iterator<Item = (&str, &str)> {
    mountinfo.lines().filter_map(|line| {
        // id parent major:minor root mount-point ...
        let mut fields = line.split(' ').skip(2);
        let numbers = fields.next()?;
        let point = fields.nth(1)?;
        Some((numbers, point))
    })
}

/// The first mount of one of `devices` (`major:minor`): (device, mount point).
fn mounted(mountinfo: &str, devices: &[String]) -> Option<(String, String)> {
    mount_entries(mountinfo)
        .find(|(numbers, _)| devices.iter().any(|d| d == numbers))
        .map(|(n, p)| (n.to_string(), p.to_string()))
}

/// `major:minor` as mountinfo writes it.
fn dev_text(rdev: u64) -> String {
    format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    )
}

/// `/sys/dev/block/M:m` resolved: the device's directory in sysfs.
fn sys_block_dir(rdev: u64) -> Option<PathBuf> {
    std::fs::canonicalize(format!("/sys/dev/block/{}", dev_text(rdev))).ok()
}

/// `major:minor` of every partition of the disk at sysfs `dir`.
fn partition_devices(dir: Option<&Path>) -> Vec<String> {
    let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// The sysfs directory of the whole disk holding device `numbers` (`M:m`).
fn root_disk(numbers: &str) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(format!("/sys/dev/block/{numbers}")).ok()?;
    if dir.join("partition").exists() {
        return dir.parent().map(Path::to_path_buf);
    }
    Some(dir)
}

/// The signatures `wipefs` finds on `path` (type and offset), without changing it.
pub fn signatures(path: &Path) -> Result<Vec<String>, ProvisionError> {
    let out = Command::new("wipefs")
        .arg("--json")
        .arg(path)
        .output()
        .map_err(|e| ProvisionError::Tool {
            tool: "wipefs (util-linux)".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ProvisionError::Tool {
            tool: "wipefs".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| ProvisionError::Tool {
            tool: "wipefs --json".into(),
            message: e.to_string(),
        })?;
    let found = json["signatures"].as_array().cloned().unwrap_or_default();
    Ok(found
        .iter()
        .map(|s| {
            let ty = s["type"].as_str().unwrap_or("?");
            let at = s["offset"].as_str().unwrap_or("?");
            format!("{ty} at {at}")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw
23 22 259:3 / /boot rw - vfat /dev/nvme0n1p1 rw
24 22 7:17 /sub /mnt/x rw - ext4 /dev/loop1p1 rw
";

    #[test]
    fn a_mounted_partition_of_the_disk_is_found_with_its_mount_point() {
        let devices = ["7:16".to_string(), "7:17".to_string()];
        assert_eq!(
            mounted(MOUNTINFO, &devices),
            Some(("7:17".into(), "/mnt/x".into()))
        );
        assert_eq!(mounted(MOUNTINFO, &["7:18".to_string()]), None);
    }

    #[test]
    fn the_root_mount_is_read_from_mountinfo() {
        let root = mount_entries(MOUNTINFO).find(|(_, p)| *p == "/");
        assert_eq!(root, Some(("0:21", "/")));
        // An overlay (major 0) has no disk in sysfs: no disk to compare with.
        assert_eq!(root_disk("0:21"), None);
    }
}

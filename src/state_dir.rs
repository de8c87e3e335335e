//! Where `state_dir` really is: the check that it lies on the data slot and on no
//! root slot, made when the device is opened.
//!
//! State in `state_dir` (the security floor above all) must be shared by both root
//! slots. A `state_dir` on a root slot (the old default `/var/lib/bascule` on the A/B
//! root) gives each slot its own copy: a rollback then forgets what the other slot
//! raised. So bascule refuses one, judging by the filesystem that holds it (the
//! deepest existing ancestor when it does not exist yet):
//! - it is on a root slot when its device number (`st_dev`) is the `st_rdev` of a root
//!   slot's block device, or when its mount source in `/proc/self/mountinfo` is that
//!   device (this also covers filesystems such as btrfs whose `st_dev` is not the
//!   block device's number);
//! - with `[data]`, it must be on the data slot's device by the same two tests: this
//!   also catches a data slot that is not mounted (then `state_dir` lands on the root
//!   filesystem under the empty mount point).
//!
//! Slots that are regular files (file-backed test and demo devices) have no device
//! number to compare: nothing is checked for them, and [`Placement::Unchecked`] says
//! so. Limits: a root slot given as a window (`offset`) of a whole disk is compared as
//! that whole disk, which is not the device of a filesystem inside it; a root mounted
//! through device-mapper (dm-verity) has the dm device as its source, not the slot.
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::{DataSlot, SystemConfig};

/// A `state_dir` bascule cannot use.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "state_dir {state_dir} is on root slot {slot} ({device}): each root slot would keep its \
         own security floor, and a rollback would forget it. Put state_dir on the data slot \
         ([data] device and mount in system.toml)"
    )]
    OnRootSlot {
        state_dir: PathBuf,
        slot: String,
        device: PathBuf,
    },
    #[error(
        "state_dir {state_dir} is not on the data slot {device}: is {device} mounted at {mount} \
         before bascule runs?"
    )]
    NotOnDataSlot {
        state_dir: PathBuf,
        device: PathBuf,
        mount: PathBuf,
    },
    #[error("cannot find the filesystem holding state_dir {state_dir}: {message}")]
    Stat { state_dir: PathBuf, message: String },
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the data slot's block device, and on no root slot.
    DataSlot { device: PathBuf, mount: PathBuf },
    /// On no root slot's block device (no data slot configured, or it is a file).
    NotOnRootSlot,
    /// No slot is a block device: nothing to compare (file-backed device).
    Unchecked,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::DataSlot { device, mount } => write!(
                f,
                "on the data slot {} mounted at {}",
                device.display(),
                mount.display()
            ),
            Placement::NotOnRootSlot => f.write_str("on no root slot"),
            Placement::Unchecked => f.write_str("slots are files: placement not checked"),
        }
    }
}

/// The filesystem holding a path: its device number and its mount source.
struct Holder {
    dev: u64,
    source: Option<PathBuf>,
}

/// Checks that `config.state_dir` is on the data slot (when configured) and on no
/// root slot.
pub fn check(config: &SystemConfig) -> Result<Placement, StateDirError> {
    let state_dir = &config.state_dir;
    let holder = holder_of(state_dir)?;
    let mut compared = false;
    for (slot, spec) in config.layout.all_slots() {
        if slot == "data" {
            continue;
        }
        let Some(rdev) = block_rdev(&spec.device) else {
            continue;
        };
        compared = true;
        if holder.is(rdev, &spec.device) {
            return Err(StateDirError::OnRootSlot {
                state_dir: state_dir.clone(),
                slot,
                device: spec.device.clone(),
            });
        }
    }
    match &config.data {
        Some(data) => check_data(state_dir, &holder, data, compared),
        None if compared => Ok(Placement::NotOnRootSlot),
        None => Ok(Placement::Unchecked),
    }
}

fn check_data(
    state_dir: &Path,
    holder: &Holder,
    data: &DataSlot,
    compared: bool,
) -> Result<Placement, StateDirError> {
    let Some(rdev) = block_rdev(&data.device) else {
        return Ok(if compared {
            Placement::NotOnRootSlot
        } else {
            Placement::Unchecked
        });
    };
    if !holder.is(rdev, &data.device) {
        return Err(StateDirError::NotOnDataSlot {
            state_dir: state_dir.to_path_buf(),
            device: data.device.clone(),
            mount: data.mount.clone(),
        });
    }
    Ok(Placement::DataSlot {
        device: data.device.clone(),
        mount: data.mount.clone(),
    })
}

impl Holder {
    /// Whether this filesystem is the one on block device `device` (number `rdev`).
    fn is(&self, rdev: u64, device: &Path) -> bool {
        self.dev == rdev || self.source.as_deref().is_some_and(|s| same_file(s, device))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The device number a block device file stands for, `None` when `path` is not one.
fn block_rdev(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    meta.file_type().is_block_device().then(|| meta.rdev())
}

/// The filesystem holding `path` or, when it does not exist yet, its deepest existing
/// ancestor.
fn holder_of(path: &Path) -> Result<Holder, StateDirError> {
    let stat_err = |message: String| StateDirError::Stat {
        state_dir: path.to_path_buf(),
        message,
    };
    let absolute = std::path::absolute(path).map_err(|e| stat_err(e.to_string()))?;
    let existing = absolute
        .ancestors()
        .find(|p| p.exists())
        .ok_or_else(|| stat_err("no ancestor exists".into()))?;
    let meta = std::fs::metadata(existing).map_err(|e| stat_err(e.to_string()))?;
    let real = existing
        .canonicalize()
        .map_err(|e| stat_err(e.to_string()))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Ok(Holder {
        dev: meta.dev(),
        source: mount_source(&mountinfo, &real),
    })
}

/// The source of the mount holding `path` (absolute, canonical) in a mountinfo text:
/// the last-mounted entry with the longest mount point containing it.
fn mount_source(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    let mut best: Option<(usize, PathBuf)> = None;
    for line in mountinfo.lines() {
        let Some((mount_point, source)) = parse_mountinfo_line(line) else {
            continue;
        };
        if !path.starts_with(&mount_point) {
            continue;
        }
        let depth = mount_point.components().count();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, source));
        }
    }
    best.map(|(_, source)| source)
}

/// The mount point (field 5) and the source (first field after ` - fstype`) of one
/// mountinfo line (proc(5)); octal escapes such as `\040` are decoded.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, PathBuf)> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let source = right.split(' ').nth(1)?;
    Some((unescape(mount_point).into(), unescape(source).into()))
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw
30 22 259:4 / /data rw,relatime shared:9 - ext4 /dev/mmcblk0p4 rw
31 22 0:25 / /data\\040dir rw - tmpfs tmp\\040fs rw
32 30 0:26 / /data/bascule/cache rw - tmpfs tmpfs rw
33 22 259:5 / /data rw,relatime - ext4 /dev/mmcblk0p5 rw
";

    #[test]
    fn mount_source_takes_the_deepest_last_mount() {
        let src = |p: &str| mount_source(MOUNTINFO, Path::new(p)).map(|s| s.display().to_string());
        assert_eq!(src("/etc").as_deref(), Some("/dev/mmcblk0p2"));
        // Mounted over /data later: the later mount wins.
        assert_eq!(src("/data/bascule").as_deref(), Some("/dev/mmcblk0p5"));
        assert_eq!(src("/data/bascule/cache/x").as_deref(), Some("tmpfs"));
        // Components, not string prefixes; escapes decoded.
        assert_eq!(src("/database").as_deref(), Some("/dev/mmcblk0p2"));
        assert_eq!(src("/data dir/x").as_deref(), Some("tmp fs"));
    }

    #[test]
    fn a_relative_state_dir_that_does_not_exist_yet_is_judged_by_its_existing_ancestor() {
        let holder = holder_of(Path::new("no-such-dir/bascule")).expect("cwd exists");
        let cwd = std::fs::metadata(".").expect("stat cwd");
        assert_eq!(holder.dev, cwd.dev());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert_eq!(mount_source("nonsense\n - \n", Path::new("/")), None);
    }
}

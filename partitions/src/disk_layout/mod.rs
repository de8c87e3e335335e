//! The disk layout a factory station provisions (`layout.toml`, see `docs/layout.md`):
//! the GPT disk, its partitions, which partition plays which role (root slots A/B of
//! each class, data slot, ESP or boot partition, where the boot env lives), and the
//! boot content (raw images at fixed offsets, files copied into the boot partition).
//!
//! [`DiskLayout::parse`] reads the text; [`DiskLayout::plan`] places every partition
//! on a disk of a given size and refuses a bad layout with a [`DiskLayoutError`] that
//! names the partition (overlap, misalignment, duplicate name, a partition too small
//! for its image, an env overlapping a partition, ...). The plan is what provisioning
//! writes; nothing here does I/O except asking the caller for file sizes.
//!
//! This is the factory's view of the disk. The device's own `system.toml` (the
//! [`crate::Layout`] of its slots) stays what the updater reads on the device.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod check;
mod error;
mod size;
#[cfg(test)]
mod tests;

pub use check::{DiskLayoutError, DiskPlan, EnvPlace, PlacedPartition, RawPlan};
pub use size::{Size, SizeText};

/// Partition type names the layout accepts besides a GUID, and their GUIDs.
pub const TYPE_NAMES: &[(&str, &str)] = &[
    ("linux", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("esp", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
    ("linux-reserved", "8DA63339-0007-60C0-C436-083AC8230908"),
    ("u-boot-env", "3DE21764-95BD-54BD-A5C3-4ABE786F38A8"),
    ("bios-boot", "21686148-6449-6E6F-744E-656564454649"),
    ("xbootldr", "BC13C2FF-59E6-4262-A352-B275FD6F7172"),
    ("root-arm64", "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"),
    ("root-x86-64", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
    ("root-arm", "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3"),
    ("chromeos-kernel", "FE3A2A5D-4F32-41A7-B725-ACCC3285A309"),
    ("chromeos-root", "3CB8E202-3B7E-47DD-8A3C-7FF2A13CFCEC"),
    ("swap", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
];

/// A whole `layout.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskLayout {
    /// The hardware the bundles must be built for (their `compatible`).
    pub compatible: String,
    pub disk: DiskSpec,
    /// The partitions in table order (entry 1 first).
    #[serde(rename = "partition")]
    pub partitions: Vec<PartitionSpec>,
    /// Root slot classes: class name to the partitions of slots A and B.
    pub slots: BTreeMap<String, SlotPair>,
    #[serde(default)]
    pub data: Option<DataSpec>,
    pub bootenv: BootEnvSpec,
    #[serde(default)]
    pub boot: Option<BootSpec>,
    /// Raw images written at fixed disk offsets (SPL, U-Boot), outside partitions.
    #[serde(default)]
    pub raw: Vec<RawSpec>,
    #[serde(default)]
    pub device_config: Option<DeviceConfigSpec>,
}

/// `[disk]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Bytes, or `"device"`: the whole device written to.
    pub size: SizeText,
    /// Where partitions start (default 1 MiB).
    #[serde(default = "default_alignment")]
    pub alignment: SizeText,
    /// Logical sector size (default 512).
    #[serde(default = "default_sector")]
    pub sector_size: u64,
}

fn default_alignment() -> SizeText {
    SizeText::Text("1MiB".into())
}

fn default_sector() -> u64 {
    512
}

/// One `[[partition]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// GPT partition name (unique; at most 36 characters).
    pub name: String,
    /// A GUID or one of [`TYPE_NAMES`].
    #[serde(rename = "type")]
    pub type_: String,
    /// Bytes, or `"rest"`.
    pub size: SizeText,
    /// A fixed start; by default right after the previous partition, aligned up.
    #[serde(default)]
    pub start: Option<SizeText>,
    /// Attribute bits to set (0: required, 2: legacy BIOS bootable, 48..63: type
    /// specific).
    #[serde(default)]
    pub attributes: Vec<u8>,
    /// A raw image written at the partition's start (a prebuilt filesystem, a
    /// bootloader partition), relative to the layout file.
    #[serde(default)]
    pub image: Option<PathBuf>,
}

/// `[slots.<class>]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotPair {
    #[serde(rename = "A")]
    pub a: String,
    #[serde(rename = "B")]
    pub b: String,
}

/// `[data]`: the data slot, formatted ext4.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub partition: String,
    /// Filesystem label (default `data`).
    #[serde(default)]
    pub label: Option<String>,
}

/// `[bootenv]`: where the boot state lives. Offsets and sizes are bytes from the
/// start of `partition`, or from the start of the disk without one.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum BootEnvSpec {
    /// U-Boot env, redundant (two copies) unless `redundant_offset` is absent.
    Uboot {
        #[serde(default)]
        partition: Option<String>,
        #[serde(default = "zero")]
        offset: SizeText,
        #[serde(default)]
        redundant_offset: Option<SizeText>,
        size: SizeText,
    },
    /// bascule's native two-copy env.
    Native {
        #[serde(default)]
        partition: Option<String>,
        #[serde(default = "zero")]
        offset: SizeText,
        second_offset: SizeText,
        size: SizeText,
    },
    /// GRUB's env block: a file at `path` in the boot partition.
    Grub { path: String },
    /// ChromeOS-style attribute bits of the rootfs slot entries; `BASCULE_*` in the
    /// partition `bascule_env`.
    Gpt {
        #[serde(default = "default_bascule_env")]
        bascule_env: String,
    },
}

fn default_bascule_env() -> String {
    "bascule-env".into()
}

fn zero() -> SizeText {
    SizeText::Bytes(0)
}

/// `[boot]`: the ESP or boot partition and the files copied into it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    pub partition: String,
    pub filesystem: BootFs,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default, rename = "file")]
    pub files: Vec<BootFile>,
}

/// The boot partition's filesystem.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BootFs {
    /// FAT (an ESP), made with `mformat` and filled with `mcopy`.
    Vfat,
    /// ext4, made and filled by `mkfs.ext4 -d`.
    Ext4,
}

/// One `[[boot.file]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BootFile {
    /// The file on the station, relative to the layout file.
    pub source: PathBuf,
    /// Its path in the boot partition (`EFI/BOOT/BOOTX64.EFI`).
    pub path: String,
}

/// One `[[raw]]`: an image at a fixed byte offset of the disk.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    pub image: PathBuf,
    pub offset: SizeText,
}

/// `[device_config]`: where the device's `system.toml` and keyring go.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfigSpec {
    /// The data partition or the boot partition (never a root slot: root images are
    /// signed content).
    pub partition: String,
    /// Directory in that filesystem (default `etc/bascule`): `system.toml` and
    /// `keyring/`.
    #[serde(default = "default_config_dir")]
    pub dir: String,
    /// The device's `system.toml` on the station, relative to the layout file.
    pub system_toml: PathBuf,
}

fn default_config_dir() -> String {
    "etc/bascule".into()
}

/// A layout file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutFileError {
    #[error("cannot read layout {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("layout {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl DiskLayout {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<DiskLayout, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads and parses `path`; relative image and file paths resolve against its
    /// directory.
    pub fn load(path: &Path) -> Result<DiskLayout, LayoutFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| LayoutFileError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut layout = Self::parse(&text).map_err(|e| LayoutFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        layout.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(layout)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in &mut self.partitions {
            p.image = p.image.as_ref().map(|i| base.join(i));
        }
        for r in &mut self.raw {
            r.image = base.join(&r.image);
        }
        if let Some(boot) = &mut self.boot {
            for f in &mut boot.files {
                f.source = base.join(&f.source);
            }
        }
        if let Some(c) = &mut self.device_config {
            c.system_toml = base.join(&c.system_toml);
        }
    }

    /// The GUID text of a partition type name or GUID, or `None`.
    pub fn type_guid(text: &str) -> Option<String> {
        let named = TYPE_NAMES.iter().find(|(n, _)| *n == text);
        match named {
            Some((_, guid)) => Some(guid.to_string()),
            None => is_guid(text).then(|| text.to_ascii_uppercase()),
        }
    }
}

/// Whether `text` is `8-4-4-4-12` hex digits.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, w)| g.len() == w && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

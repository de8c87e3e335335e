//! The device as the config describes it: its boot environment store, its boot
//! scheme, its slots and its security floor store, opened from `system.toml`.
//!
//! Opening checks where `state_dir` is ([`crate::state_dir::check`]): on the data
//! slot, never on a root slot. The security floor is the file `security-floor` in
//! `state_dir`, so both root slots read and raise the same floor.
//!
//! This is the glue between the pure core (slot state machine, planner) and the hal
//! backends; commands in [`crate::ops`] work on a [`Device`].
use std::path::{Path, PathBuf};

use bascule_hal::env::{replace_file, DirFiles, NativeEnv, NativeLayout, UbootEnv, UbootLayout};
use bascule_hal::gpt::{GptAttrEnv, GptAttrLayout, PartitionRef};
use bascule_hal::{BlockDevice, EnvStore, FileBlock, FileFloor, HalError, SecurityFloorStore};
use bascule_partitions::{Layout, SlotName};

use crate::config::{BootEnvConfig, SystemConfig};
use crate::grub_store::GrubStore;
use crate::install::SlotDevices;
use crate::slot::chromeos::ChromeosGpt;
use crate::slot::{booted_slot, root_device, BootScheme, BootedSlotError, RaucGrub, RaucUboot};
use crate::state_dir::{self, Placement, StateDirError};

/// The security floor's file name in `state_dir`.
pub const FLOOR_FILE: &str = "security-floor";

/// Why the device could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("boot environment: {0}")]
    Env(#[from] HalError),
    #[error("cannot read the kernel command line {path}: {message}")]
    Cmdline { path: PathBuf, message: String },
    #[error(transparent)]
    Booted(#[from] BootedSlotError),
    #[error(
        "the kernel command line says root={root}, which is slot {slot}'s device, but names the other \
         slot as booted; refusing to write slot {slot}"
    )]
    RootIsTarget { root: String, slot: String },
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error("security floor: {0}")]
    Floor(HalError),
}

/// A device opened from its config.
pub struct Device {
    pub config: SystemConfig,
    pub env: Box<dyn EnvStore + Send>,
    pub scheme: Box<dyn BootScheme + Send + Sync>,
    /// The lowest security version the device accepts, shared by both slots.
    pub floor: Box<dyn SecurityFloorStore + Send>,
    /// Where `state_dir` was found to be.
    pub placement: Placement,
}

impl Device {
    /// Opens the boot environment store the config names and the floor store in
    /// `state_dir`, after checking that `state_dir` is on the data slot, not on a
    /// root slot.
    pub fn open(config: SystemConfig) -> Result<Device, DeviceError> {
        let placement = state_dir::check(&config)?;
        let (env, scheme) = open_env(&config.bootenv)?;
        let floor = Box::new(FileFloor::new(DirFiles::new(&config.state_dir), FLOOR_FILE));
        Ok(Device {
            config,
            env,
            scheme,
            floor,
            placement,
        })
    }

    /// The kernel command line the config points at.
    fn cmdline(&self) -> Result<String, DeviceError> {
        let path = &self.config.boot.cmdline;
        std::fs::read_to_string(path).map_err(|e| DeviceError::Cmdline {
            path: path.clone(),
            message: e.to_string(),
        })
    }

    /// The slot the running system booted from, from the kernel command line.
    pub fn booted(&self) -> Result<SlotName, DeviceError> {
        let cmdline = self.cmdline()?;
        let keys: Vec<&str> = self
            .config
            .boot
            .cmdline_keys
            .iter()
            .map(String::as_str)
            .collect();
        Ok(booted_slot(&cmdline, &keys)?)
    }

    /// Refuses when the kernel's `root=` device is a device of `target`'s slots and
    /// not of the booted slot's: the command line contradicts itself about which slot
    /// runs, and bascule does not guess.
    pub fn check_root_is_not(&self, target: SlotName) -> Result<(), DeviceError> {
        let cmdline = self.cmdline()?;
        let Some(root) = root_device(&cmdline) else {
            return Ok(());
        };
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        for (class, pair) in &self.config.layout.slots {
            let target_dev = &pair.get(target).device;
            let booted_dev = &pair.get(target.other()).device;
            if same(Path::new(root), target_dev) && !same(Path::new(root), booted_dev) {
                return Err(DeviceError::RootIsTarget {
                    root: root.to_string(),
                    slot: format!("{class}.{target}"),
                });
            }
        }
        Ok(())
    }

    /// The lowest security version this device accepts (0 when never raised).
    pub fn security_floor(&mut self) -> Result<u32, DeviceError> {
        self.floor.read().map_err(DeviceError::Floor)
    }

    /// Raises the security floor to `value` (never lowers it), atomically. Returns
    /// whether it rose. `state_dir` must exist (the env lock creates it).
    pub fn raise_security_floor(&mut self, value: u32) -> Result<bool, DeviceError> {
        self.floor.raise(value).map_err(DeviceError::Floor)
    }

    /// The slots of this device, for the install engine.
    pub fn slots(&self) -> FileSlots {
        FileSlots::new(self.config.layout.clone())
    }
}

/// Writes `bytes` to `path` atomically, staged through `path.new` in the same
/// directory ([`replace_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HalError> {
    let bad_path = || HalError::BadLayout {
        what: path.display().to_string(),
        reason: "not a path to a file".into(),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(bad_path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    replace_file(&mut DirFiles::new(dir), name, &format!("{name}.new"), bytes)
}

type EnvAndScheme = (Box<dyn EnvStore + Send>, Box<dyn BootScheme + Send + Sync>);

fn open_env(cfg: &BootEnvConfig) -> Result<EnvAndScheme, HalError> {
    match cfg {
        BootEnvConfig::Uboot {
            path,
            offset,
            size,
            redundant_offset,
            ..
        } => {
            // A single copy is only reached with `allow_single_copy` (checked when
            // the config is loaded); `status` shows it as not power-safe.
            let dev = FileBlock::open(path, 0, None, true)?;
            let layout = UbootLayout {
                offset: *offset,
                size: env_size(path, *size)?,
                redundant_offset: *redundant_offset,
            };
            Ok((Box::new(UbootEnv::new(dev, layout)?), Box::new(RaucUboot)))
        }
        BootEnvConfig::Grub { path } => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let name =
                path.file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| HalError::BadLayout {
                        what: path.display().to_string(),
                        reason: "a GRUB environment path must end in a file name".into(),
                    })?;
            let env = GrubStore::new(DirFiles::new(dir), DirFiles::new(dir), name);
            Ok((Box::new(env), Box::new(RaucGrub)))
        }
        BootEnvConfig::Gpt {
            disk,
            slot_a,
            slot_b,
            bascule_env,
        } => {
            let dev = FileBlock::open(disk, 0, None, true)?;
            let slots = [("A", slot_a), ("B", slot_b)]
                .into_iter()
                .map(|(slot, name)| (slot.to_string(), PartitionRef::Name(name.clone())))
                .collect();
            let layout = GptAttrLayout {
                slots,
                bascule_env: Some(PartitionRef::Name(bascule_env.clone())),
            };
            Ok((
                Box::new(GptAttrEnv::new(dev, layout)?),
                Box::new(ChromeosGpt),
            ))
        }
        BootEnvConfig::Native {
            path,
            offset,
            size,
            second_offset,
        } => {
            let dev = FileBlock::open(path, 0, None, true)?;
            let layout = NativeLayout {
                offsets: [*offset, *second_offset],
                size: env_size(path, *size)?,
            };
            Ok((Box::new(NativeEnv::new(dev, layout)?), Box::new(RaucUboot)))
        }
    }
}

fn env_size(path: &Path, size: u64) -> Result<usize, HalError> {
    usize::try_from(size).map_err(|_| HalError::BadLayout {
        what: path.display().to_string(),
        reason: format!("environment size {size} does not fit in memory"),
    })
}

/// Slots that live in files or block devices, as the layout says.
pub struct FileSlots {
    layout: Layout,
}

impl FileSlots {
    /// The slots of `layout`.
    pub fn new(layout: Layout) -> FileSlots {
        FileSlots { layout }
    }
}

impl SlotDevices for FileSlots {
    fn slot_size(&mut self, class: &str, slot: SlotName) -> Result<Option<u64>, HalError> {
        let Ok(pair) = self.layout.class(class) else {
            return Ok(None);
        };
        let spec = pair.get(slot);
        let dev = FileBlock::open(&spec.device, spec.offset, spec.size, false)?;
        Ok(Some(dev.len()))
    }

    fn open_slot(
        &mut self,
        class: &str,
        slot: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, HalError> {
        let pair = self.layout.class(class).map_err(|e| HalError::BadLayout {
            what: format!("slot class {class}"),
            reason: e.to_string(),
        })?;
        let spec = pair.get(slot);
        Ok(Box::new(FileBlock::open_direct(
            &spec.device,
            spec.offset,
            spec.size,
        )?))
    }

    fn classes(&self) -> Vec<String> {
        self.layout.slots.keys().cloned().collect()
    }
}

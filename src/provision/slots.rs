//! The root-slot step: each bundle is read and checked whole by the install
//! pipeline before the disk is touched (signature with the keyring, then every chunk
//! against the signed manifest, as `install --dry-run` does), then streamed into its
//! slot by the same pipeline, after the same compatible, class and size checks as
//! an install plan. A slot whose bytes already hash to the signed image is left
//! alone: that is how a cut-off provisioning resumes and a finished one is a no-op.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bascule_hal::{BlockDevice, FileBlock};
use bascule_partitions::disk_layout::DiskPlan;
use bascule_partitions::{AbPair, Layout, SlotName, SlotSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ProvisionError;
use crate::bundle::{BundleReader, Keyring, Manifest};
use crate::device::FileSlots;
use crate::install::engine::{hex, manifest_sha256};
use crate::install::{
    pipeline, readback, ActivateError, NoProgress, PlanError, StageTimes, Verify,
};

/// Bytes read at a time when hashing a slot.
const HASH_BUF: usize = 1 << 20;

/// A bundle given on the command line, checked.
#[derive(Debug, Clone)]
pub struct CheckedBundle {
    /// The slot class named on the command line (`rootfs=...`).
    pub class: String,
    pub path: PathBuf,
    pub manifest: Manifest,
    pub manifest_sha256: String,
}

/// One slot as written, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub class: String,
    pub slot: SlotName,
    pub partition: String,
    pub version: String,
    pub manifest_sha256: String,
    /// Bytes of the image, from the partition's start.
    pub bytes: u64,
    /// SHA-256 of those bytes as written (the signed image's; `--verify` reads the
    /// slot back and compares).
    pub sha256: String,
}

/// The station's view of the slots: windows of the disk.
pub fn station_layout(plan: &DiskPlan, disk: &Path) -> Layout {
    let spec = |index: usize| {
        let (offset, size) = plan.window(index);
        SlotSpec {
            device: disk.to_path_buf(),
            offset,
            size: Some(size),
        }
    };
    let slots = plan
        .slots
        .iter()
        .map(|(class, [a, b])| {
            let pair = AbPair {
                a: spec(*a),
                b: spec(*b),
            };
            (class.clone(), pair)
        })
        .collect();
    Layout { slots, data: None }
}

/// Opens and checks every bundle in full; nothing is written.
pub fn check_bundles(
    bundles: &[(String, PathBuf)],
    keyring: &Keyring,
    plan: &DiskPlan,
) -> Result<Vec<CheckedBundle>, ProvisionError> {
    let mut checked = Vec::new();
    for (class, path) in bundles {
        let mut reader = open(path, keyring)?;
        let manifest = reader.manifest().clone();
        check_plan(class, &manifest, plan)?;
        pipeline::stream(
            &mut reader,
            &manifest,
            SlotName::A,
            None,
            Verify::Chunks,
            &mut NoProgress,
        )
        .map_err(|source| ProvisionError::BundleInvalid {
            path: path.clone(),
            source: Box::new(source.into()),
        })?;
        checked.push(CheckedBundle {
            class: class.clone(),
            path: path.clone(),
            manifest_sha256: manifest_sha256(reader.manifest_bytes()),
            manifest,
        });
    }
    Ok(checked)
}

fn open(path: &Path, keyring: &Keyring) -> Result<BundleReader<BufReader<File>>, ProvisionError> {
    let file = File::open(path).map_err(|e| ProvisionError::Io {
        context: format!("open bundle {}", path.display()),
        message: e.to_string(),
    })?;
    BundleReader::open(BufReader::new(file), keyring).map_err(|source| {
        ProvisionError::BundleInvalid {
            path: path.to_path_buf(),
            source: Box::new(source.into()),
        }
    })
}

/// The install plan's checks that apply to a blank disk: compatible, images for
/// classes the layout has (the first for the class named), each fitting its slot.
fn check_plan(class: &str, manifest: &Manifest, plan: &DiskPlan) -> Result<(), ProvisionError> {
    let refuse = |e: PlanError| ProvisionError::BundlePlan {
        class: class.into(),
        source: e,
    };
    if manifest.compatible != plan.compatible {
        return Err(refuse(PlanError::Incompatible {
            expected: plan.compatible.clone(),
            found: manifest.compatible.clone(),
        }));
    }
    let Some(first) = manifest.images.first() else {
        return Err(refuse(PlanError::NoImages));
    };
    if first.slot_class != class {
        return Err(ProvisionError::BundleClass {
            named: class.into(),
            found: first.slot_class.clone(),
        });
    }
    for (index, image) in manifest.images.iter().enumerate() {
        let Some([a, _]) = plan.slots.get(&image.slot_class) else {
            return Err(refuse(PlanError::UnknownClass {
                image: index,
                class: image.slot_class.clone(),
                known: plan.slots.keys().cloned().collect::<Vec<_>>().join(", "),
            }));
        };
        let slot_size = plan.window(*a).1;
        if image.size == 0 {
            return Err(refuse(PlanError::EmptyImage {
                image: index,
                class: image.slot_class.clone(),
            }));
        }
        if image.size > slot_size {
            return Err(refuse(PlanError::ImageTooLarge {
                image: index,
                class: image.slot_class.clone(),
                slot: SlotName::A,
                size: image.size,
                slot_size,
            }));
        }
    }
    Ok(())
}

/// SHA-256 of the first `bytes` bytes at `offset` of `disk`.
pub fn hash_range(disk: &Path, offset: u64, bytes: u64) -> Result<[u8; 32], ProvisionError> {
    let mut dev = FileBlock::open(disk, offset, Some(bytes), false)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(HASH_BUF as u64) as usize;
        dev.read_at(at, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Whether every image of `bundle` is already in `slot`, byte for byte: the slot is
/// read back chunk by chunk against the signed chunk hashes, as `activate` does, so a
/// blank or half-written slot is told apart at its first wrong chunk, not after
/// reading and hashing the whole slot.
fn already_written(
    bundle: &CheckedBundle,
    plan: &DiskPlan,
    disk: &Path,
    slot: SlotName,
) -> Result<bool, ProvisionError> {
    let mut slots = FileSlots::new(station_layout(plan, disk));
    match readback::verify_written(&bundle.manifest, slot, &mut slots) {
        Ok(()) => Ok(true),
        Err(ActivateError::SlotChanged { .. }) => Ok(false),
        Err(e) => Err(ProvisionError::Io {
            context: format!("read slot {}.{slot} back", bundle.class),
            message: e.to_string(),
        }),
    }
}

/// Writes `bundle` into `slot` unless it is already there; returns the write's stage
/// times, or `None` when the slot already held it.
pub fn write_slot(
    bundle: &CheckedBundle,
    keyring: &Keyring,
    plan: &DiskPlan,
    disk: &Path,
    slot: SlotName,
) -> Result<Option<StageTimes>, ProvisionError> {
    if already_written(bundle, plan, disk, slot)? {
        return Ok(None);
    }
    let mut reader = open(&bundle.path, keyring)?;
    let mut slots = FileSlots::new(station_layout(plan, disk));
    let stages = pipeline::stream(
        &mut reader,
        &bundle.manifest,
        slot,
        Some(&mut slots),
        Verify::Chunks,
        &mut NoProgress,
    )
    .map_err(|source| ProvisionError::SlotWrite {
        slot: format!("{}.{slot}", bundle.class),
        source: Box::new(source),
    })?;
    Ok(Some(stages))
}

/// The report's records of the slots `bundle` went to. Each slot's SHA-256 is the
/// signed image's: a slot written in this run had every chunk checked against its
/// signed hash before the write and was synced after it, and a slot found in place
/// was read back against the same hashes. Reading the slot back again is `--verify`'s
/// job, so a plain run hashes the image once.
pub fn records(bundle: &CheckedBundle, plan: &DiskPlan, slots: &[SlotName]) -> Vec<SlotRecord> {
    let mut out = Vec::new();
    for &slot in slots {
        for image in &bundle.manifest.images {
            let index = plan.slots[&image.slot_class][slot.index()];
            out.push(SlotRecord {
                class: image.slot_class.clone(),
                slot,
                partition: plan.partitions[index].name.clone(),
                version: bundle.manifest.version.clone(),
                manifest_sha256: bundle.manifest_sha256.clone(),
                bytes: image.size,
                sha256: hex(&image.sha256),
            });
        }
    }
    out
}

/// The version each class was provisioned with.
pub fn versions(bundles: &[CheckedBundle]) -> BTreeMap<String, String> {
    bundles
        .iter()
        .map(|b| (b.class.clone(), b.manifest.version.clone()))
        .collect()
}

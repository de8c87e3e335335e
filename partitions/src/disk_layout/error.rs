//! Why a layout cannot be provisioned: one variant per check, each naming the
//! partition or file at fault.
use std::path::PathBuf;

/// Why a layout cannot be provisioned; each names the partition or file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskLayoutError {
    #[error("{what}: {text} is not a size (bytes, or a number with KiB, MiB, GiB, TiB)")]
    BadSize { what: String, text: String },
    #[error("disk.size = \"device\" needs a device to take the size from; give the size")]
    DeviceSizeUnknown,
    #[error("disk: sector_size {0} is not 512 or 4096")]
    BadSectorSize(u64),
    #[error("disk: alignment {alignment} is not a non-zero multiple of the {sector}-byte sector")]
    BadAlignment { alignment: u64, sector: u64 },
    #[error("disk: {size} bytes is not a whole number of {sector}-byte sectors")]
    DiskNotSectors { size: u64, sector: u64 },
    #[error("the layout has no partition")]
    NoPartitions,
    #[error("partition {partition:?}: the name appears twice")]
    DuplicateName { partition: String },
    #[error("partition {partition:?}: the name is longer than 36 UTF-16 characters")]
    NameTooLong { partition: String },
    #[error("partition {partition:?}: type {text:?} is neither a GUID nor a known name ({known})")]
    UnknownType {
        partition: String,
        text: String,
        known: String,
    },
    #[error("partition {partition:?}: attribute bit {bit} is not 0..=63")]
    BadAttribute { partition: String, bit: u8 },
    #[error("partition {partition:?}: start {start} is not aligned to {alignment} bytes")]
    Misaligned {
        partition: String,
        start: u64,
        alignment: u64,
    },
    #[error("partition {partition:?}: size {size} is not a whole number of {sector}-byte sectors")]
    SizeNotSectors {
        partition: String,
        size: u64,
        sector: u64,
    },
    #[error("partition {partition:?}: size \"rest\" is only for the last partition")]
    RestNotLast { partition: String },
    #[error("partition {partition:?}: starts at {start}, inside the primary GPT (usable from {first_usable})")]
    InPrimaryGpt {
        partition: String,
        start: u64,
        first_usable: u64,
    },
    #[error("partition {partition:?}: ends at {end}, past the last usable byte {usable_end} of the disk")]
    DoesNotFit {
        partition: String,
        end: u64,
        usable_end: u64,
    },
    #[error("partition {first:?} overlaps partition {second:?}")]
    Overlap { first: String, second: String },
    #[error("partition {partition:?} holds {capacity} bytes, too small for its image {image} ({size} bytes)")]
    PartitionTooSmall {
        partition: String,
        image: PathBuf,
        size: u64,
        capacity: u64,
    },
    #[error("{what}: file {path} cannot be read")]
    FileMissing { what: String, path: PathBuf },
    #[error("{role}: no partition named {partition:?}")]
    UnknownPartition { role: String, partition: String },
    #[error("partition {partition:?} is both {first} and {second}")]
    SharedPartition {
        partition: String,
        first: String,
        second: String,
    },
    #[error("the layout has no slot class (add [slots.rootfs] with A and B)")]
    NoSlots,
    #[error("bootenv: copy at {offset}+{size} overlaps partition {partition:?}")]
    EnvOverlap {
        partition: String,
        offset: u64,
        size: u64,
    },
    #[error("bootenv: copy at {offset}+{size} overlaps the GPT (bytes 0..{gpt_end} or the backup at the end)")]
    EnvInGpt {
        offset: u64,
        size: u64,
        gpt_end: u64,
    },
    #[error("bootenv: copy at {offset}+{size} of partition {partition:?} runs past its end ({capacity} bytes)")]
    EnvOutsidePartition {
        partition: String,
        offset: u64,
        size: u64,
        capacity: u64,
    },
    #[error("bootenv: {0}")]
    BadEnv(String),
    #[error("raw image {image}: {offset}+{size} overlaps {what}")]
    RawOverlap {
        image: PathBuf,
        offset: u64,
        size: u64,
        what: String,
    },
    #[error("device_config: partition {partition:?} is neither the data nor the boot partition (root slots hold signed images only)")]
    ConfigPartition { partition: String },
    #[error("bootenv: backend grub keeps its env in the boot partition: add [boot]")]
    GrubWithoutBoot,
}

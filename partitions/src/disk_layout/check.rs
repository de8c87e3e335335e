//! Placing a [`DiskLayout`] on a disk of a known size, and every check that refuses a
//! bad layout. Pure: file sizes come from the caller.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::error::DiskLayoutError;
use super::{BootEnvSpec, BootSpec, DataSpec, DeviceConfigSpec, DiskLayout, Size, SizeText};

/// GPT entry array: 128 entries of 128 bytes.
const ENTRY_ARRAY: u64 = 128 * 128;
/// Longest partition name (UTF-16 code units).
const NAME_UNITS: usize = 36;

/// A partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    pub name: String,
    /// Upper-case GUID text.
    pub type_guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// A raw image written at its start, with its size.
    pub image: Option<(PathBuf, u64)>,
}

/// Where the boot env lives, in bytes from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvPlace {
    Uboot {
        offset: u64,
        redundant_offset: Option<u64>,
        size: u64,
    },
    Native {
        offset: u64,
        second_offset: u64,
        size: u64,
    },
    /// A file in the boot partition.
    Grub { path: String },
    /// Attribute bits; `BASCULE_*` in this partition (index into the plan's).
    Gpt { bascule_env: usize },
}

impl EnvPlace {
    /// The (offset, size) of each env copy that lives at raw disk offsets (U-Boot's
    /// and the native env); none for the GRUB file or the GPT attributes.
    pub fn raw_copies(&self) -> Vec<(u64, u64)> {
        match *self {
            EnvPlace::Uboot {
                offset,
                redundant_offset,
                size,
            } => [Some(offset), redundant_offset]
                .into_iter()
                .flatten()
                .map(|o| (o, size))
                .collect(),
            EnvPlace::Native {
                offset,
                second_offset,
                size,
            } => vec![(offset, size), (second_offset, size)],
            EnvPlace::Grub { .. } | EnvPlace::Gpt { .. } => Vec::new(),
        }
    }
}

/// A raw image at a fixed disk offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPlan {
    pub image: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// A layout placed on a disk: what provisioning writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub compatible: String,
    pub sector_size: u64,
    pub sectors: u64,
    pub partitions: Vec<PlacedPartition>,
    /// Slot class to the partition indices of A and B.
    pub slots: BTreeMap<String, [usize; 2]>,
    /// The data partition and its label.
    pub data: Option<(usize, String)>,
    pub env: EnvPlace,
    pub boot: Option<(usize, BootSpec)>,
    pub raw: Vec<RawPlan>,
    pub device_config: Option<(usize, DeviceConfigSpec)>,
}

impl DiskPlan {
    /// Byte offset and length of partition `index`.
    pub fn window(&self, index: usize) -> (u64, u64) {
        let p = &self.partitions[index];
        let ss = self.sector_size;
        (p.first_lba * ss, (p.last_lba + 1 - p.first_lba) * ss)
    }

    /// The disk size in bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.sectors * self.sector_size
    }

    /// The first and one past the last byte partitions may use.
    pub fn usable_bytes(&self) -> (u64, u64) {
        usable(self.sector_size, self.sectors)
    }
}

fn usable(ss: u64, sectors: u64) -> (u64, u64) {
    let entries = ENTRY_ARRAY.div_ceil(ss);
    ((2 + entries) * ss, (sectors - 1 - entries) * ss)
}

fn bytes(what: &str, text: &SizeText) -> Result<u64, DiskLayoutError> {
    text.bytes().ok_or_else(|| DiskLayoutError::BadSize {
        what: what.into(),
        text: text.to_string(),
    })
}

impl DiskLayout {
    /// Places the layout on a disk (`device_size`: the target's size, needed when
    /// `disk.size = "device"`), asking `file_size` for image and file sizes.
    pub fn plan(
        &self,
        device_size: Option<u64>,
        file_size: &dyn Fn(&Path) -> Option<u64>,
    ) -> Result<DiskPlan, DiskLayoutError> {
        let (ss, sectors, align) = self.geometry(device_size)?;
        let partitions = self.place(ss, sectors, align, file_size)?;
        let index = |role: &str, name: &str| {
            partitions
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| DiskLayoutError::UnknownPartition {
                    role: role.into(),
                    partition: name.into(),
                })
        };
        let mut roles = Roles::default();
        if self.slots.is_empty() {
            return Err(DiskLayoutError::NoSlots);
        }
        let mut slots = BTreeMap::new();
        for (class, pair) in &self.slots {
            let a = index(&format!("slots.{class}.A"), &pair.a)?;
            let b = index(&format!("slots.{class}.B"), &pair.b)?;
            roles.take(a, &format!("slot {class}.A"), &partitions)?;
            roles.take(b, &format!("slot {class}.B"), &partitions)?;
            slots.insert(class.clone(), [a, b]);
        }
        let data = match &self.data {
            Some(DataSpec { partition, label }) => {
                let i = index("data", partition)?;
                roles.take(i, "the data slot", &partitions)?;
                Some((i, label.clone().unwrap_or_else(|| "data".into())))
            }
            None => None,
        };
        let boot = match &self.boot {
            Some(spec) => {
                let i = index("boot", &spec.partition)?;
                roles.take(i, "the boot partition", &partitions)?;
                for f in &spec.files {
                    if file_size(&f.source).is_none() {
                        return Err(DiskLayoutError::FileMissing {
                            what: format!("boot file {}", f.path),
                            path: f.source.clone(),
                        });
                    }
                }
                Some((i, spec.clone()))
            }
            None => None,
        };
        let plan = DiskPlan {
            compatible: self.compatible.clone(),
            sector_size: ss,
            sectors,
            partitions,
            slots,
            data,
            env: EnvPlace::Grub {
                path: String::new(),
            },
            boot,
            raw: Vec::new(),
            device_config: None,
        };
        let env = self.place_env(&plan, &mut roles)?;
        let raw = self.place_raw(&plan, &env, file_size)?;
        let device_config = self.place_config(&plan, file_size)?;
        Ok(DiskPlan {
            env,
            raw,
            device_config,
            ..plan
        })
    }

    fn geometry(&self, device_size: Option<u64>) -> Result<(u64, u64, u64), DiskLayoutError> {
        let ss = self.disk.sector_size;
        if ss != 512 && ss != 4096 {
            return Err(DiskLayoutError::BadSectorSize(ss));
        }
        let align = bytes("disk.alignment", &self.disk.alignment)?;
        if align == 0 || !align.is_multiple_of(ss) {
            return Err(DiskLayoutError::BadAlignment {
                alignment: align,
                sector: ss,
            });
        }
        let size = match self.disk.size.read() {
            Some(Size::Bytes(n)) => n,
            Some(Size::Device) => device_size.ok_or(DiskLayoutError::DeviceSizeUnknown)?,
            _ => {
                return Err(DiskLayoutError::BadSize {
                    what: "disk.size".into(),
                    text: self.disk.size.to_string(),
                })
            }
        };
        if !size.is_multiple_of(ss) || size < 2 * usable(ss, 64).0 {
            return Err(DiskLayoutError::DiskNotSectors { size, sector: ss });
        }
        Ok((ss, size / ss, align))
    }

    fn place(
        &self,
        ss: u64,
        sectors: u64,
        align: u64,
        file_size: &dyn Fn(&Path) -> Option<u64>,
    ) -> Result<Vec<PlacedPartition>, DiskLayoutError> {
        if self.partitions.is_empty() {
            return Err(DiskLayoutError::NoPartitions);
        }
        let (first_usable, usable_end) = usable(ss, sectors);
        let mut cursor = first_usable;
        let mut placed: Vec<PlacedPartition> = Vec::new();
        let last = self.partitions.len() - 1;
        for (i, spec) in self.partitions.iter().enumerate() {
            let name = spec.name.clone();
            check_name(&name, &placed)?;
            let type_guid =
                DiskLayout::type_guid(&spec.type_).ok_or_else(|| DiskLayoutError::UnknownType {
                    partition: name.clone(),
                    text: spec.type_.clone(),
                    known: super::TYPE_NAMES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let attributes = attribute_bits(&name, &spec.attributes)?;
            let start = match &spec.start {
                Some(text) => bytes(&format!("partition {name:?} start"), text)?,
                None => cursor.next_multiple_of(align),
            };
            if !start.is_multiple_of(align) {
                return Err(DiskLayoutError::Misaligned {
                    partition: name,
                    start,
                    alignment: align,
                });
            }
            if start < first_usable {
                return Err(DiskLayoutError::InPrimaryGpt {
                    partition: name,
                    start,
                    first_usable,
                });
            }
            let size = match spec.size.read() {
                Some(Size::Rest) if i == last => usable_end.saturating_sub(start) / ss * ss,
                Some(Size::Rest) => return Err(DiskLayoutError::RestNotLast { partition: name }),
                _ => bytes(&format!("partition {name:?} size"), &spec.size)?,
            };
            if size == 0 || !size.is_multiple_of(ss) {
                return Err(DiskLayoutError::SizeNotSectors {
                    partition: name,
                    size,
                    sector: ss,
                });
            }
            let end = start + size;
            if end > usable_end {
                return Err(DiskLayoutError::DoesNotFit {
                    partition: name,
                    end,
                    usable_end,
                });
            }
            let (first_lba, last_lba) = (start / ss, end / ss - 1);
            if let Some(other) = placed
                .iter()
                .find(|p| p.first_lba <= last_lba && first_lba <= p.last_lba)
            {
                return Err(DiskLayoutError::Overlap {
                    first: other.name.clone(),
                    second: name,
                });
            }
            let image = match &spec.image {
                Some(path) => Some(partition_image(&name, path, size, file_size)?),
                None => None,
            };
            placed.push(PlacedPartition {
                name,
                type_guid,
                first_lba,
                last_lba,
                attributes,
                image,
            });
            cursor = end;
        }
        Ok(placed)
    }

    fn place_env(&self, plan: &DiskPlan, roles: &mut Roles) -> Result<EnvPlace, DiskLayoutError> {
        let find = |name: &str| {
            plan.partitions
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| DiskLayoutError::UnknownPartition {
                    role: "bootenv".into(),
                    partition: name.into(),
                })
        };
        let (partition, copies, size) = match &self.bootenv {
            BootEnvSpec::Grub { .. } if plan.boot.is_none() => {
                return Err(DiskLayoutError::GrubWithoutBoot)
            }
            BootEnvSpec::Grub { path } => return Ok(EnvPlace::Grub { path: path.clone() }),
            BootEnvSpec::Gpt { bascule_env } => {
                let i = find(bascule_env)?;
                roles.take(i, "the bascule-env partition", &plan.partitions)?;
                return Ok(EnvPlace::Gpt { bascule_env: i });
            }
            BootEnvSpec::Uboot {
                partition,
                offset,
                redundant_offset,
                size,
            } => {
                let second = redundant_offset
                    .as_ref()
                    .map(|o| bytes("bootenv.redundant_offset", o))
                    .transpose()?;
                let first = bytes("bootenv.offset", offset)?;
                (
                    partition,
                    [Some(first), second],
                    bytes("bootenv.size", size)?,
                )
            }
            BootEnvSpec::Native {
                partition,
                offset,
                second_offset,
                size,
            } => {
                let first = bytes("bootenv.offset", offset)?;
                let second = bytes("bootenv.second_offset", second_offset)?;
                (
                    partition,
                    [Some(first), Some(second)],
                    bytes("bootenv.size", size)?,
                )
            }
        };
        let base = match partition {
            Some(name) => {
                let i = find(name)?;
                roles.take(i, "the boot env partition", &plan.partitions)?;
                Some(i)
            }
            None => None,
        };
        let copies: Vec<u64> = copies.into_iter().flatten().collect();
        check_env_copies(plan, base, &copies, size)?;
        let shift = base.map_or(0, |i| plan.window(i).0);
        Ok(match self.bootenv {
            BootEnvSpec::Uboot { .. } => EnvPlace::Uboot {
                offset: shift + copies[0],
                redundant_offset: copies.get(1).map(|o| shift + o),
                size,
            },
            _ => EnvPlace::Native {
                offset: shift + copies[0],
                second_offset: shift + copies[1],
                size,
            },
        })
    }

    fn place_raw(
        &self,
        plan: &DiskPlan,
        env: &EnvPlace,
        file_size: &dyn Fn(&Path) -> Option<u64>,
    ) -> Result<Vec<RawPlan>, DiskLayoutError> {
        let mut out: Vec<RawPlan> = Vec::new();
        for spec in &self.raw {
            let what = format!("raw image {}", spec.image.display());
            let offset = bytes(&format!("{what} offset"), &spec.offset)?;
            let size = file_size(&spec.image).ok_or_else(|| DiskLayoutError::FileMissing {
                what: what.clone(),
                path: spec.image.clone(),
            })?;
            let clash = |what: String| DiskLayoutError::RawOverlap {
                image: spec.image.clone(),
                offset,
                size,
                what,
            };
            let end = offset + size;
            let (first_usable, usable_end) = plan.usable_bytes();
            let in_gpt = offset < first_usable.min(2 * plan.sector_size + ENTRY_ARRAY)
                && end > plan.sector_size
                || end > usable_end;
            if in_gpt {
                return Err(clash("the GPT".into()));
            }
            if let Some(p) =
                (0..plan.partitions.len()).find(|&i| overlaps(plan.window(i), (offset, size)))
            {
                return Err(clash(format!("partition {:?}", plan.partitions[p].name)));
            }
            if env
                .raw_copies()
                .iter()
                .any(|&r| overlaps(r, (offset, size)))
            {
                return Err(clash("the boot env".into()));
            }
            if let Some(r) = out
                .iter()
                .find(|r| overlaps((r.offset, r.size), (offset, size)))
            {
                return Err(clash(format!("raw image {}", r.image.display())));
            }
            out.push(RawPlan {
                image: spec.image.clone(),
                offset,
                size,
            });
        }
        Ok(out)
    }

    fn place_config(
        &self,
        plan: &DiskPlan,
        file_size: &dyn Fn(&Path) -> Option<u64>,
    ) -> Result<Option<(usize, DeviceConfigSpec)>, DiskLayoutError> {
        let Some(spec) = &self.device_config else {
            return Ok(None);
        };
        let allowed = plan
            .data
            .iter()
            .map(|d| d.0)
            .chain(plan.boot.iter().map(|b| b.0));
        let index = plan
            .partitions
            .iter()
            .position(|p| p.name == spec.partition);
        let Some(index) = index.filter(|i| allowed.clone().any(|a| a == *i)) else {
            return Err(DiskLayoutError::ConfigPartition {
                partition: spec.partition.clone(),
            });
        };
        if file_size(&spec.system_toml).is_none() {
            return Err(DiskLayoutError::FileMissing {
                what: "device_config.system_toml".into(),
                path: spec.system_toml.clone(),
            });
        }
        Ok(Some((index, spec.clone())))
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// Checks env copies at `copies` (bytes from the start of partition `base`, or of the
/// disk), each `size` bytes.
fn check_env_copies(
    plan: &DiskPlan,
    base: Option<usize>,
    copies: &[u64],
    size: u64,
) -> Result<(), DiskLayoutError> {
    if size == 0 {
        return Err(DiskLayoutError::BadEnv("size must not be 0".into()));
    }
    if copies.len() == 2 && overlaps((copies[0], size), (copies[1], size)) {
        return Err(DiskLayoutError::BadEnv(format!(
            "the two copies at {} and {} overlap (size {size})",
            copies[0], copies[1]
        )));
    }
    for &offset in copies {
        if let Some(i) = base {
            let (_, capacity) = plan.window(i);
            if offset + size > capacity {
                return Err(DiskLayoutError::EnvOutsidePartition {
                    partition: plan.partitions[i].name.clone(),
                    offset,
                    size,
                    capacity,
                });
            }
            continue;
        }
        let (first_usable, usable_end) = plan.usable_bytes();
        if offset < first_usable.min(2 * plan.sector_size + ENTRY_ARRAY)
            || offset + size > usable_end
        {
            return Err(DiskLayoutError::EnvInGpt {
                offset,
                size,
                gpt_end: first_usable,
            });
        }
        for i in 0..plan.partitions.len() {
            if overlaps(plan.window(i), (offset, size)) {
                return Err(DiskLayoutError::EnvOverlap {
                    partition: plan.partitions[i].name.clone(),
                    offset,
                    size,
                });
            }
        }
    }
    Ok(())
}

fn check_name(name: &str, placed: &[PlacedPartition]) -> Result<(), DiskLayoutError> {
    if placed.iter().any(|p| p.name == name) {
        return Err(DiskLayoutError::DuplicateName {
            partition: name.into(),
        });
    }
    if name.is_empty() || name.encode_utf16().count() > NAME_UNITS {
        return Err(DiskLayoutError::NameTooLong {
            partition: name.into(),
        });
    }
    Ok(())
}

fn attribute_bits(name: &str, bits: &[u8]) -> Result<u64, DiskLayoutError> {
    bits.iter().try_fold(0u64, |acc, &bit| {
        if bit > 63 {
            return Err(DiskLayoutError::BadAttribute {
                partition: name.into(),
                bit,
            });
        }
        Ok(acc | 1 << bit)
    })
}

fn partition_image(
    name: &str,
    path: &Path,
    capacity: u64,
    file_size: &dyn Fn(&Path) -> Option<u64>,
) -> Result<(PathBuf, u64), DiskLayoutError> {
    let size = file_size(path).ok_or_else(|| DiskLayoutError::FileMissing {
        what: format!("partition {name:?} image"),
        path: path.to_path_buf(),
    })?;
    if size > capacity {
        return Err(DiskLayoutError::PartitionTooSmall {
            partition: name.into(),
            image: path.to_path_buf(),
            size,
            capacity,
        });
    }
    Ok((path.to_path_buf(), size))
}

/// Which role each partition plays, to refuse one partition in two roles.
#[derive(Default)]
struct Roles(BTreeMap<usize, String>);

impl Roles {
    fn take(
        &mut self,
        index: usize,
        role: &str,
        partitions: &[PlacedPartition],
    ) -> Result<(), DiskLayoutError> {
        if let Some(first) = self.0.get(&index) {
            return Err(DiskLayoutError::SharedPartition {
                partition: partitions[index].name.clone(),
                first: first.clone(),
                second: role.into(),
            });
        }
        self.0.insert(index, role.into());
        Ok(())
    }
}

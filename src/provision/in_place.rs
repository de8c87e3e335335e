//! Whether what a run wrote besides the table, the slots and the env is still on the
//! disk as the layout's sources say: the raw images, the boot partition's files and
//! the device's `system.toml` and keyring. A disk whose table, slots and env are in
//! place but whose content differs (a station given a new `grub.cfg` or key, a boot
//! file or SPL damaged) is not "already provisioned": the run writes the content
//! again. Files are read back with the tools that wrote them (`mcopy`, `debugfs`).
use std::io::Read;
use std::path::{Path, PathBuf};

use bascule_hal::{BlockDevice, FileBlock};
use bascule_partitions::disk_layout::{BootFs, DiskPlan};

use super::content::{read_ext4_file, read_vfat_file};
use super::ProvisionError;

/// Bytes compared at a time.
const CHUNK: usize = 1 << 20;

/// Where one expected piece of content lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Raw bytes at this disk offset.
    Disk(u64),
    /// A file in partition `index`'s file system.
    File {
        index: usize,
        fs: BootFs,
        path: String,
    },
}

/// One piece of content: its source file and where it must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub source: PathBuf,
    pub place: Place,
}

/// The raw images of `plan`: at fixed offsets and at partition starts.
pub fn raw_images(plan: &DiskPlan) -> Vec<Expected> {
    let fixed = plan.raw.iter().map(|r| Expected {
        source: r.image.clone(),
        place: Place::Disk(r.offset),
    });
    let at_starts = plan.partitions.iter().enumerate().filter_map(|(i, p)| {
        let (image, _) = p.image.as_ref()?;
        Some(Expected {
            source: image.clone(),
            place: Place::Disk(plan.window(i).0),
        })
    });
    fixed.chain(at_starts).collect()
}

/// `files` (source, path) in partition `index` with file system `fs`.
pub fn files_in(index: usize, fs: BootFs, files: &[(PathBuf, String)]) -> Vec<Expected> {
    files
        .iter()
        .map(|(source, path)| Expected {
            source: source.clone(),
            place: Place::File {
                index,
                fs,
                path: path.trim_start_matches('/').to_string(),
            },
        })
        .collect()
}

/// What of `expected` is not on `disk` as its source says, named for the report.
pub fn differing(
    plan: &DiskPlan,
    disk: &Path,
    scratch: &Path,
    expected: &[Expected],
) -> Result<Vec<String>, ProvisionError> {
    let mut differs = Vec::new();
    for (n, e) in expected.iter().enumerate() {
        let same = match &e.place {
            Place::Disk(offset) => same_bytes_at(disk, *offset, &e.source)?,
            Place::File { index, fs, path } => {
                let copy = scratch.join(format!("in-place-{n}"));
                let read = match fs {
                    BootFs::Vfat => read_vfat_file(plan, disk, *index, path, &copy),
                    BootFs::Ext4 => read_ext4_file(plan, disk, *index, path, &copy),
                };
                read && same_files(&copy, &e.source)?
            }
        };
        if !same {
            differs.push(describe(plan, e));
        }
    }
    Ok(differs)
}

fn describe(plan: &DiskPlan, e: &Expected) -> String {
    match &e.place {
        Place::Disk(offset) => format!("raw image {} at byte {offset}", e.source.display()),
        Place::File { index, path, .. } => {
            format!("{path} on partition {}", plan.partitions[*index].name)
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ProvisionError {
    move |e| ProvisionError::Io {
        context: what,
        message: e.to_string(),
    }
}

/// Whether `disk` holds the bytes of file `source` at `offset`.
fn same_bytes_at(disk: &Path, offset: u64, source: &Path) -> Result<bool, ProvisionError> {
    let mut file = std::fs::File::open(source).map_err(io(format!("open {}", source.display())))?;
    let mut dev = FileBlock::open(disk, 0, None, false)?;
    let (mut want, mut have) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut at = offset;
    loop {
        let n = file
            .read(&mut want)
            .map_err(io(format!("read {}", source.display())))?;
        if n == 0 {
            return Ok(true);
        }
        if at + n as u64 > dev.len() {
            return Ok(false);
        }
        dev.read_at(at, &mut have[..n])?;
        if want[..n] != have[..n] {
            return Ok(false);
        }
        at += n as u64;
    }
}

fn same_files(a: &Path, b: &Path) -> Result<bool, ProvisionError> {
    let read = |p: &Path| std::fs::read(p).map_err(io(format!("read {}", p.display())));
    Ok(read(a)? == read(b)?)
}

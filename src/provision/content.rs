//! Everything provisioning writes besides the table and the root slots: raw images
//! (at fixed disk offsets, or at a partition's start), the data slot (ext4, made by
//! `mkfs.ext4 -d` with bascule's state directory and, when the layout says so, the
//! device's `system.toml` and keyring), the boot partition (FAT by `mkfs.vfat` and
//! `mcopy`, or ext4 by `mkfs.ext4 -d`; with the GRUB env when it lives there).
//!
//! File systems are made in place at the partition's byte offset of the disk
//! (`mkfs.vfat --offset`, `mtools -i DISK@@OFFSET`, `mkfs.ext4 -E offset=`), so an
//! image file, a loop device and a block device are written the same way, and no
//! partition device node is needed.
use std::path::{Path, PathBuf};
use std::process::Command;

use bascule_hal::{BlockDevice, FileBlock};
use bascule_partitions::disk_layout::{BootFs, BootSpec, DiskPlan};

use super::in_place::{raw_images, Place};
use super::ProvisionError;
use crate::config::DATA_STATE_SUBDIR;

/// Bytes copied at a time from an image file to the disk.
const COPY_BUF: usize = 1 << 20;

/// Runs `tool args`; an error names the tool, its arguments and its output.
pub fn run(tool: &str, args: &[&str]) -> Result<(), ProvisionError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| ProvisionError::Tool {
            tool: tool.into(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(ProvisionError::Tool {
        tool: format!("{tool} {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Copies the file `image` to `offset` of `disk`, then syncs.
pub fn write_image(disk: &Path, offset: u64, image: &Path) -> Result<(), ProvisionError> {
    use std::io::Read;
    let mut file = std::fs::File::open(image).map_err(|e| ProvisionError::Io {
        context: format!("open {}", image.display()),
        message: e.to_string(),
    })?;
    let mut dev = FileBlock::open(disk, 0, None, true)?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut at = offset;
    loop {
        let n = file.read(&mut buf).map_err(|e| ProvisionError::Io {
            context: format!("read {}", image.display()),
            message: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        dev.write_at(at, &buf[..n])?;
        at += n as u64;
    }
    Ok(dev.sync()?)
}

/// Writes the raw images of the layout: at fixed offsets and at partition starts.
pub fn write_raw_images(plan: &DiskPlan, disk: &Path) -> Result<usize, ProvisionError> {
    let images = raw_images(plan);
    for image in &images {
        if let Place::Disk(offset) = image.place {
            write_image(disk, offset, &image.source)?;
        }
    }
    Ok(images.len())
}

/// The files the layout lists for the boot partition: (source, path in it).
pub fn boot_files(spec: &BootSpec) -> Vec<(PathBuf, String)> {
    spec.files
        .iter()
        .map(|f| (f.source.clone(), f.path.clone()))
        .collect()
}

/// Makes an ext4 file system with the contents of `root` in partition `index`.
pub fn make_ext4(
    plan: &DiskPlan,
    disk: &Path,
    index: usize,
    label: &str,
    root: &Path,
) -> Result<(), ProvisionError> {
    let (offset, size) = plan.window(index);
    let disk = disk.to_string_lossy();
    let root = root.to_string_lossy();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            label,
            "-d",
            &root,
            "-E",
            &format!("offset={offset}"),
            &disk,
            &format!("{}k", size / 1024),
        ],
    )
}

/// Makes a FAT file system in partition `index` and copies `root`'s tree into it.
pub fn make_vfat(
    plan: &DiskPlan,
    disk: &Path,
    index: usize,
    label: &str,
    root: &Path,
) -> Result<(), ProvisionError> {
    let (offset, size) = plan.window(index);
    let image = format!("{}@@{offset}", disk.display());
    run(
        "mkfs.vfat",
        &[
            "--offset",
            &(offset / 512).to_string(),
            "-n",
            label,
            &disk.to_string_lossy(),
            &(size / 1024).to_string(),
        ],
    )?;
    let entries = std::fs::read_dir(root).map_err(|e| ProvisionError::Io {
        context: format!("list {}", root.display()),
        message: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let path = entry.path().to_string_lossy().to_string();
        run("mcopy", &["-i", &image, "-s", "-Q", &path, "::/"])?;
    }
    Ok(())
}

/// Stages `files` (source, path in the file system) under `root`.
pub fn stage(root: &Path, files: &[(PathBuf, String)]) -> Result<(), ProvisionError> {
    for (source, path) in files {
        let to = root.join(path.trim_start_matches('/'));
        let io = |what: &str, e: std::io::Error| ProvisionError::Io {
            context: format!("{what} {}", to.display()),
            message: e.to_string(),
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
        }
        std::fs::copy(source, &to).map_err(|e| io(&format!("copy {} to", source.display()), e))?;
    }
    Ok(())
}

/// The data slot: an empty bascule state directory, and whatever else is staged.
pub fn make_data(
    plan: &DiskPlan,
    disk: &Path,
    root: &Path,
) -> Result<Option<String>, ProvisionError> {
    let Some((index, label)) = &plan.data else {
        return Ok(None);
    };
    std::fs::create_dir_all(root.join(DATA_STATE_SUBDIR)).map_err(|e| ProvisionError::Io {
        context: format!("create {}", root.display()),
        message: e.to_string(),
    })?;
    make_ext4(plan, disk, *index, label, root)?;
    Ok(Some(plan.partitions[*index].name.clone()))
}

/// The boot partition with the files the layout lists and whatever else is staged.
pub fn make_boot(
    plan: &DiskPlan,
    disk: &Path,
    root: &Path,
) -> Result<Option<String>, ProvisionError> {
    let Some((index, spec)) = &plan.boot else {
        return Ok(None);
    };
    stage(root, &boot_files(spec))?;
    let label = spec.label.clone().unwrap_or_else(|| "BOOT".into());
    match spec.filesystem {
        BootFs::Vfat => make_vfat(plan, disk, *index, &label, root)?,
        BootFs::Ext4 => make_ext4(plan, disk, *index, &label, root)?,
    }
    Ok(Some(plan.partitions[*index].name.clone()))
}

/// Reads `path` from the FAT boot partition into `to`; `false` when it is not there.
pub fn read_vfat_file(plan: &DiskPlan, disk: &Path, index: usize, path: &str, to: &Path) -> bool {
    let image = format!("{}@@{}", disk.display(), plan.window(index).0);
    let from = format!("::/{}", path.trim_start_matches('/'));
    run(
        "mcopy",
        &["-i", &image, "-n", "-o", &from, &to.to_string_lossy()],
    )
    .is_ok()
}

/// Reads `path` from the ext4 file system of partition `index` into `to`
/// (`debugfs dump`); `false` when it is not there.
pub fn read_ext4_file(plan: &DiskPlan, disk: &Path, index: usize, path: &str, to: &Path) -> bool {
    let source = format!("{}?offset={}", disk.display(), plan.window(index).0);
    let cmd = format!("dump /{} {}", path.trim_start_matches('/'), to.display());
    let _ = std::fs::remove_file(to);
    run("debugfs", &["-R", &cmd, &source]).is_ok() && to.exists()
}

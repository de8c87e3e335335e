//! A block device backed by a file, a window of a disk-image file, or a `/dev` node.
//!
//! The size of a `/dev` block device comes from the `BLKGETSIZE64` ioctl; `sync` is
//! `fsync`. After a failed write or sync the handle is poisoned: the page cache state
//! is unknown, so every later call fails until the device is reopened.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::{check_range, BlockDevice};
use crate::HalError;

nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);

/// A byte window `[base, base + len)` of a file or block device.
#[derive(Debug)]
pub struct FileBlock {
    file: File,
    path: PathBuf,
    base: u64,
    len: u64,
    writable: bool,
    poisoned: bool,
}

impl FileBlock {
    /// Opens `path` and exposes `len` bytes starting at `base` (all the rest of the
    /// file or device when `len` is `None`). The window must lie inside the file.
    pub fn open(
        path: &Path,
        base: u64,
        len: Option<u64>,
        writable: bool,
    ) -> Result<Self, HalError> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| HalError::io("open", path, e))?;
        let total = device_size(&file, path)?;
        let len = match len {
            Some(len) => len,
            None => total.saturating_sub(base),
        };
        if base.checked_add(len).is_none_or(|end| end > total) {
            return Err(HalError::BadLayout {
                what: path.display().to_string(),
                reason: format!("window {base}+{len} is beyond its size {total}"),
            });
        }
        Ok(FileBlock {
            file,
            path: path.to_path_buf(),
            base,
            len,
            writable,
            poisoned: false,
        })
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_usable(&self) -> Result<(), HalError> {
        if self.poisoned {
            return Err(HalError::Poisoned(self.name()));
        }
        Ok(())
    }
}

/// Size of a regular file (its length) or of a block device (by ioctl).
pub fn device_size(file: &File, path: &Path) -> Result<u64, HalError> {
    let meta = file.metadata().map_err(|e| HalError::io("stat", path, e))?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let mut size: u64 = 0;
    use std::os::fd::AsRawFd;
    // SAFETY: BLKGETSIZE64 writes one u64 into `size`, which outlives the call.
    unsafe { blk_get_size64(file.as_raw_fd(), &mut size) }
        .map_err(|e| HalError::io("ioctl BLKGETSIZE64", path, e.into()))?;
    Ok(size)
}

impl BlockDevice for FileBlock {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        self.check_usable()?;
        check_range(&self.name(), offset, buf.len(), self.len)?;
        self.file
            .read_exact_at(buf, self.base + offset)
            .map_err(|e| HalError::io("read", &self.path, e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        self.check_usable()?;
        if !self.writable {
            return Err(HalError::ReadOnly(self.name()));
        }
        check_range(&self.name(), offset, buf.len(), self.len)?;
        let result = self.file.write_all_at(buf, self.base + offset);
        result.map_err(|e| {
            self.poisoned = true;
            HalError::io("write", &self.path, e)
        })
    }

    fn sync(&mut self) -> Result<(), HalError> {
        self.check_usable()?;
        let result = self.file.sync_all();
        result.map_err(|e| {
            self.poisoned = true;
            HalError::io("fsync", &self.path, e)
        })
    }

    fn name(&self) -> String {
        if self.base == 0 {
            return self.path.display().to_string();
        }
        format!(
            "{}[{:#x}..+{:#x}]",
            self.path.display(),
            self.base,
            self.len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_reads_and_writes_only_its_range() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(64).unwrap();
        let mut dev = FileBlock::open(tmp.path(), 16, Some(16), true).unwrap();
        dev.write_at(0, &[0xaa; 16]).unwrap();
        dev.sync().unwrap();
        assert!(dev.write_at(1, &[0; 16]).is_err());
        let all = std::fs::read(tmp.path()).unwrap();
        assert_eq!(&all[..16], &[0; 16]);
        assert_eq!(&all[16..32], &[0xaa; 16]);
        assert_eq!(&all[32..], &[0; 32]);
    }

    #[test]
    fn window_beyond_file_is_refused() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(64).unwrap();
        let err = FileBlock::open(tmp.path(), 60, Some(16), true).unwrap_err();
        assert!(matches!(err, HalError::BadLayout { .. }));
    }

    #[test]
    fn read_only_handle_refuses_writes() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(64).unwrap();
        let mut dev = FileBlock::open(tmp.path(), 0, None, false).unwrap();
        assert!(matches!(dev.write_at(0, b"x"), Err(HalError::ReadOnly(_))));
    }
}

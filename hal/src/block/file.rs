//! A block device backed by a file, a window of a disk-image file, or a `/dev` node.
//!
//! The size of a `/dev` block device comes from the `BLKGETSIZE64` ioctl; `sync` is
//! `fsync`. After a failed write or sync the handle is poisoned: the page cache state
//! is unknown, so every later call fails until the device is reopened.
//!
//! [`FileBlock::open_direct`] adds a second handle opened with `O_DIRECT`: writes whose
//! start and length are multiples of [`DIRECT_ALIGN`] go through it, bypassing the
//! page cache (as `dd oflag=direct` does), straight from the caller's buffer when that
//! is aligned (an [`AlignedBuf`](super::AlignedBuf)), else through an aligned bounce
//! buffer; anything else
//! (an unaligned tail) goes through the ordinary handle. Where the filesystem refuses
//! `O_DIRECT` (tmpfs), it quietly uses the ordinary handle only. Linux keeps the two
//! coherent: a direct write invalidates the cached pages of its range.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::{check_range, BlockDevice, DIRECT_ALIGN};
use crate::HalError;

/// The kernel's `BLKGETSIZE64` is `_IOR(0x12, 114, size_t)`: its request number holds
/// the size of `size_t`, 4 on 32-bit targets, while the kernel always writes a `u64`.
/// So the number is built with `usize`'s size and the buffer stays a `u64` (a `usize`
/// buffer would let the kernel write 8 bytes into 4 on armv7).
const BLKGETSIZE64: nix::sys::ioctl::ioctl_num_type =
    nix::request_code_read!(0x12, 114, std::mem::size_of::<usize>());
nix::ioctl_read_bad!(blk_get_size64, BLKGETSIZE64, u64);

/// `_IOR(ty, nr, size)` in the generic Linux ioctl layout (x86, arm, aarch64, riscv):
/// direction read (2) in bits 30-31, size in bits 16-29, type in 8-15, number in 0-7.
#[cfg(any(
    test,
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "x86_64"
))]
const fn linux_ior(ty: u32, nr: u32, size: u32) -> u32 {
    (2 << 30) | (size << 16) | (ty << 8) | nr
}

// Checked at build time on each target this is cross-checked for (`scripts/test`
// runs clippy for armv7 and aarch64): the request number the kernel expects there.
#[cfg(any(target_arch = "arm", target_arch = "aarch64", target_arch = "x86_64"))]
const _: () =
    assert!(blkgetsize64_as_u32() == linux_ior(0x12, 114, std::mem::size_of::<usize>() as u32));

/// [`BLKGETSIZE64`] as the 32 bits the kernel compares.
#[allow(
    clippy::unnecessary_cast,
    reason = "ioctl_num_type is u64 on x86_64 glibc, u32 on armv7 glibc, i32 on musl"
)]
#[cfg(any(
    test,
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "x86_64"
))]
const fn blkgetsize64_as_u32() -> u32 {
    BLKGETSIZE64 as u32
}

/// The `O_DIRECT` handle and its aligned bounce buffer.
#[derive(Debug)]
struct Direct {
    file: File,
    bounce: Vec<u8>,
}

impl Direct {
    /// Writes `buf` (a multiple of [`DIRECT_ALIGN`] long) at `pos` (aligned).
    fn write_all_at(&mut self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        if buf.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
            return self.file.write_all_at(buf, pos);
        }
        let needed = buf.len() + DIRECT_ALIGN;
        if self.bounce.len() < needed {
            self.bounce = vec![0; needed];
        }
        let skew = self.bounce.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = &mut self.bounce[skew..skew + buf.len()];
        aligned.copy_from_slice(buf);
        self.file.write_all_at(aligned, pos)
    }
}

/// A byte window `[base, base + len)` of a file or block device.
#[derive(Debug)]
pub struct FileBlock {
    file: File,
    direct: Option<Direct>,
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
            direct: None,
            path: path.to_path_buf(),
            base,
            len,
            writable,
            poisoned: false,
        })
    }

    /// Opens `path` for writing like [`FileBlock::open`], with `O_DIRECT` for aligned
    /// writes when the file system supports it.
    pub fn open_direct(path: &Path, base: u64, len: Option<u64>) -> Result<Self, HalError> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut dev = Self::open(path, base, len, true)?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path);
        match direct {
            Ok(file) => {
                dev.direct = Some(Direct {
                    file,
                    bounce: Vec::new(),
                })
            }
            Err(e) => log::debug!(
                "{}: no O_DIRECT ({e}); writing through the page cache",
                path.display()
            ),
        }
        Ok(dev)
    }

    /// Whether aligned writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
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
        let pos = self.base + offset;
        let aligned_len = match self.direct {
            Some(_) if pos.is_multiple_of(DIRECT_ALIGN as u64) => {
                buf.len() - buf.len() % DIRECT_ALIGN
            }
            _ => 0,
        };
        let (head, tail) = buf.split_at(aligned_len);
        let mut result = Ok(());
        if let (Some(direct), false) = (self.direct.as_mut(), head.is_empty()) {
            result = direct.write_all_at(head, pos);
        }
        if result.is_ok() && !tail.is_empty() {
            result = self.file.write_all_at(tail, pos + aligned_len as u64);
        }
        result.map_err(|e| {
            self.poisoned = true;
            HalError::io("write", &self.path, e)
        })
    }

    /// A handle on the same open files (`dup`): writes through it land in the same
    /// file or device, and `fsync` of either covers both.
    fn try_clone_writer(&self) -> Option<Box<dyn BlockDevice + Send>> {
        if self.poisoned || !self.writable {
            return None;
        }
        let clone = |f: &File| {
            f.try_clone()
                .map_err(|e| log::debug!("{}: no second writer ({e})", self.path.display()))
                .ok()
        };
        let direct = match &self.direct {
            Some(d) => Some(Direct {
                file: clone(&d.file)?,
                bounce: Vec::new(),
            }),
            None => None,
        };
        Some(Box::new(FileBlock {
            file: clone(&self.file)?,
            direct,
            path: self.path.clone(),
            base: self.base,
            len: self.len,
            writable: true,
            poisoned: false,
        }))
    }

    fn sync(&mut self) -> Result<(), HalError> {
        self.check_usable()?;
        let mut result = self.file.sync_all();
        if let (Some(direct), true) = (self.direct.as_ref(), result.is_ok()) {
            result = direct.file.sync_all();
        }
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
    fn blkgetsize64_request_number_is_the_kernels_for_each_pointer_width() {
        // The kernel's values: BLKGETSIZE64 on a 64-bit and on a 32-bit Linux.
        assert_eq!(linux_ior(0x12, 114, 8), 0x8008_1272);
        assert_eq!(linux_ior(0x12, 114, 4), 0x8004_1272);
        let host = linux_ior(0x12, 114, std::mem::size_of::<usize>() as u32);
        assert_eq!(blkgetsize64_as_u32(), host);
    }

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
    fn direct_writes_land_aligned_unaligned_and_from_aligned_buffers() {
        // /var/tmp is disk-backed on most systems (O_DIRECT), /tmp may be tmpfs (fallback).
        for dir in ["/var/tmp", "/tmp"] {
            let Ok(tmp) = tempfile::NamedTempFile::new_in(dir) else {
                continue;
            };
            tmp.as_file().set_len(5 * DIRECT_ALIGN as u64).unwrap();
            let mut dev = FileBlock::open_direct(tmp.path(), 0, None).unwrap();
            let data: Vec<u8> = (0..DIRECT_ALIGN + 100).map(|i| (i % 251) as u8).collect();
            dev.write_at(DIRECT_ALIGN as u64, &data).unwrap();
            dev.write_at(7, b"unaligned").unwrap();
            let mut page_aligned = crate::AlignedBuf::new();
            page_aligned.resize(2 * DIRECT_ALIGN).fill(0x5c);
            dev.write_at(3 * DIRECT_ALIGN as u64, &page_aligned)
                .unwrap();
            dev.sync().unwrap();
            let mut back = vec![0u8; data.len()];
            dev.read_at(DIRECT_ALIGN as u64, &mut back).unwrap();
            assert_eq!(back, data, "in {dir} (direct: {})", dev.is_direct());
            let all = std::fs::read(tmp.path()).unwrap();
            assert_eq!(&all[7..16], b"unaligned");
            assert_eq!(&all[DIRECT_ALIGN..DIRECT_ALIGN + data.len()], &data[..]);
            assert!(all[3 * DIRECT_ALIGN..].iter().all(|&b| b == 0x5c));
        }
    }

    #[test]
    fn a_cloned_writer_writes_the_same_window_and_either_sync_covers_both() {
        for dir in ["/var/tmp", "/tmp"] {
            let Ok(tmp) = tempfile::NamedTempFile::new_in(dir) else {
                continue;
            };
            tmp.as_file().set_len(4 * DIRECT_ALIGN as u64).unwrap();
            let mut dev = FileBlock::open_direct(tmp.path(), DIRECT_ALIGN as u64, None).unwrap();
            let mut clone = dev.try_clone_writer().expect("a file has a second writer");
            assert_eq!(clone.len(), dev.len());
            let mut page = crate::AlignedBuf::new();
            page.resize(DIRECT_ALIGN).fill(0x3c);
            clone.write_at(DIRECT_ALIGN as u64, &page).unwrap();
            dev.write_at(0, &page[..10]).unwrap();
            assert!(
                clone.write_at(3 * DIRECT_ALIGN as u64, &page).is_err(),
                "beyond the window"
            );
            dev.sync().unwrap();
            let all = std::fs::read(tmp.path()).unwrap();
            assert_eq!(
                &all[DIRECT_ALIGN..DIRECT_ALIGN + 10],
                &[0x3c; 10],
                "in {dir}"
            );
            assert!(all[2 * DIRECT_ALIGN..3 * DIRECT_ALIGN]
                .iter()
                .all(|&b| b == 0x3c));
        }
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let read_only = FileBlock::open(tmp.path(), 0, None, false).unwrap();
        assert!(read_only.try_clone_writer().is_none());
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

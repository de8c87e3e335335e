//! Block devices: a fixed-size byte range that can be read, written and synced.
//!
//! A slot is a [`BlockDevice`]. The trait is deliberately small (len, read_at,
//! write_at, sync, and optionally a second handle to write through from another
//! thread) so that the install engine can run over a file, a `/dev` node or
//! memory, and so that fault-injecting backends can stand in for any of them.
use alloc::boxed::Box;
use alloc::string::String;

use crate::HalError;

mod aligned;
mod faulty;
mod mem;
pub use aligned::{AlignedBuf, DIRECT_ALIGN};
pub use faulty::{cut_plans, BlockOp, CutPlan, FaultyBlock, Tear};
pub use mem::MemBlock;

#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
pub use file::{device_size, FileBlock};

/// A fixed-size, randomly addressable byte device.
pub trait BlockDevice {
    /// Size of the device in bytes.
    fn len(&self) -> u64;
    /// Whether the device has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fails if the range is not inside the device.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError>;
    /// Writes all of `buf` at `offset`; fails if the range is not inside the device.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError>;
    /// Another handle to the same bytes, for a second thread to write through so that
    /// writes are in flight at once; a `sync` of either handle covers the writes of
    /// both. `None` (the default) where the device has no such handle.
    fn try_clone_writer(&self) -> Option<Box<dyn BlockDevice + Send>> {
        None
    }
    /// Makes every completed write durable (fsync / flush caches).
    fn sync(&mut self) -> Result<(), HalError>;
    /// A name for messages ("disk.img[0x100000..+64M]", "/dev/mmcblk0p2").
    fn name(&self) -> String;
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        (**self).write_at(offset, buf)
    }
    fn try_clone_writer(&self) -> Option<Box<dyn BlockDevice + Send>> {
        (**self).try_clone_writer()
    }
    fn sync(&mut self) -> Result<(), HalError> {
        (**self).sync()
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

/// Checks that `offset..offset+len` lies inside a device of `size` bytes.
pub fn check_range(name: &str, offset: u64, len: usize, size: u64) -> Result<(), HalError> {
    let end = offset.checked_add(len as u64);
    match end {
        Some(end) if end <= size => Ok(()),
        _ => Err(HalError::OutOfRange {
            what: String::from(name),
            offset,
            len: len as u64,
            size,
        }),
    }
}

//! An in-memory block device for tests and simulations.
//!
//! It keeps two images, as redb's crash test backend does: `live` bytes (every write)
//! and `durable` bytes (copied from live on `sync`). A simulated power cut keeps only
//! the durable bytes, the model of a Linux block device behind a page cache.
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{check_range, BlockDevice};
use crate::HalError;

/// A block device held in memory, with live and durable images.
#[derive(Debug, Clone)]
pub struct MemBlock {
    name: String,
    live: Vec<u8>,
    durable: Vec<u8>,
    read_only: bool,
}

impl MemBlock {
    /// A zero-filled device of `size` bytes.
    pub fn new(name: &str, size: usize) -> Self {
        Self::from_bytes(name, vec![0; size])
    }
    /// A device whose live and durable content is `bytes`.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Self {
        MemBlock {
            name: String::from(name),
            durable: bytes.clone(),
            live: bytes,
            read_only: false,
        }
    }
    /// Makes every write fail with [`HalError::ReadOnly`].
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }
    /// The bytes as the running system sees them.
    pub fn live(&self) -> &[u8] {
        &self.live
    }
    /// The bytes that would survive a power cut now.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }
    /// Simulates a power cut: unsynced writes are lost.
    pub fn power_cut(&mut self) {
        self.live.clone_from(&self.durable);
    }
}

impl BlockDevice for MemBlock {
    fn len(&self) -> u64 {
        self.live.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        check_range(&self.name, offset, buf.len(), self.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.live[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        if self.read_only {
            return Err(HalError::ReadOnly(self.name.clone()));
        }
        check_range(&self.name, offset, buf.len(), self.len())?;
        let start = offset as usize;
        self.live[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), HalError> {
        self.durable.clone_from(&self.live);
        Ok(())
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_on_power_cut() {
        let mut dev = MemBlock::new("m", 16);
        dev.write_at(0, b"abcd").unwrap();
        dev.sync().unwrap();
        dev.write_at(4, b"efgh").unwrap();
        dev.power_cut();
        let mut buf = [0u8; 8];
        dev.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd\0\0\0\0");
    }

    #[test]
    fn out_of_range_is_refused() {
        let mut dev = MemBlock::new("m", 16);
        let err = dev.write_at(14, b"abc").unwrap_err();
        assert!(matches!(err, HalError::OutOfRange { offset: 14, .. }));
    }
}

//! Page-aligned byte buffers: a slot opened with `O_DIRECT` writes them as they are,
//! where any other buffer first goes through an aligned bounce copy.
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// Alignment of offsets, lengths and buffers for `O_DIRECT` writes: the largest
/// logical block size in use, so it suits 512-byte and 4 KiB devices alike.
pub const DIRECT_ALIGN: usize = 4096;

/// One aligned page. Its size equals its alignment, so a slice of pages has no
/// padding and its bytes are one contiguous `[u8]`.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; DIRECT_ALIGN]);

const _: () = assert!(core::mem::size_of::<Page>() == DIRECT_ALIGN);

/// A growable byte buffer whose first byte is [`DIRECT_ALIGN`]-aligned.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    pages: Vec<Page>,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer; nothing is allocated until it is resized.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the buffer `len` bytes long and returns them. Bytes it held before are
    /// kept, bytes beyond what it ever held are zero; memory is only ever added.
    pub fn resize(&mut self, len: usize) -> &mut [u8] {
        let pages = len.div_ceil(DIRECT_ALIGN);
        if self.pages.len() < pages {
            self.pages.resize(pages, Page([0; DIRECT_ALIGN]));
        }
        self.len = len;
        self
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `pages` holds at least `len` initialised bytes (`resize` keeps
        // `len <= pages.len() * DIRECT_ALIGN`), `Page` has no padding, and the slice
        // borrows `self`, so the pages outlive it and are not moved meanwhile.
        unsafe { core::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, with the unique borrow of `self`.
        unsafe { core::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

impl core::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_aligned_at_every_size_and_keeps_its_bytes() {
        let mut buf = AlignedBuf::new();
        assert!(buf.is_empty());
        for len in [1, 4095, 4096, 4097, 1 << 20, 10, 3 * 4096 + 1] {
            let bytes = buf.resize(len);
            assert_eq!(bytes.len(), len);
            assert_eq!(bytes.as_ptr() as usize % DIRECT_ALIGN, 0, "len {len}");
            bytes[len - 1] = 0xa5;
            assert_eq!(buf[len - 1], 0xa5);
        }
        buf.resize(8192);
        assert_eq!(buf[9], 0xa5, "shrinking and growing again keeps the bytes");
        assert_eq!(buf[8191], 0, "bytes never written are zero");
    }
}

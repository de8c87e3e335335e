//! Buffer pools for the install pipeline: chunks after the first few reuse the
//! page-aligned buffers of chunks already written, so an install allocates a few
//! chunks' worth of memory once, whatever the image size.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bascule_hal::AlignedBuf;

use crate::bundle::Compression;

/// Spare buffers, so that chunks after the first few allocate nothing.
pub(super) struct BufferPool {
    spare: Mutex<Vec<AlignedBuf>>,
    keep: usize,
    /// Buffers handed out new: the most in use at once, while `keep` is not exceeded.
    made: AtomicUsize,
}

impl BufferPool {
    fn new(keep: usize) -> Self {
        BufferPool {
            spare: Mutex::new(Vec::new()),
            keep,
            made: AtomicUsize::new(0),
        }
    }

    /// A spare buffer, or a new empty one.
    pub(super) fn take(&self) -> AlignedBuf {
        let spare = self.spare.lock().ok().and_then(|mut spare| spare.pop());
        spare.unwrap_or_else(|| {
            self.made.fetch_add(1, Ordering::Relaxed);
            AlignedBuf::default()
        })
    }

    /// Keeps `buf` for reuse, or frees it when the pool is full.
    pub(super) fn give(&self, buf: AlignedBuf) {
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < self.keep {
                spare.push(buf);
            }
        }
    }
}

/// The two pools: stored bytes as read from the bundle, and decompressed bytes.
/// An uncompressed chunk's stored bytes are its raw bytes and go back to `stored`.
pub(super) struct Pools {
    pub(super) stored: BufferPool,
    pub(super) raw: BufferPool,
}

impl Pools {
    /// Pools that each keep up to `keep` spare buffers: as many as can be in flight.
    pub(super) fn new(keep: usize) -> Self {
        Pools {
            stored: BufferPool::new(keep),
            raw: BufferPool::new(keep),
        }
    }

    /// Buffers made so far by both pools.
    pub(super) fn made(&self) -> usize {
        self.stored.made.load(Ordering::Relaxed) + self.raw.made.load(Ordering::Relaxed)
    }

    pub(super) fn recycle(&self, compression: Compression, bytes: AlignedBuf) {
        match compression {
            Compression::None => self.stored.give(bytes),
            Compression::Zstd | Compression::Xz => self.raw.give(bytes),
        }
    }
}

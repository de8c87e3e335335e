//! One chunk at a time: decode it (zstd, xz, or nothing to do) into a buffer of
//! exactly its signed raw length, and check its SHA-256 against the signed manifest,
//! two chunks at once where the caller has two ([`check_chunks`]).
//!
//! Lengths always come from the signed manifest, never from the caller's
//! [`ChunkRef`]; decompression never produces or allocates more than the raw length.
use bascule_hal::AlignedBuf;

use super::manifest::{ChunkRef, Compression, ImageEntry};
use super::sha256x2::sha256_pair;
use super::{sha256, BundleError};

/// A buffer the reader and the decoder size and fill: a `Vec<u8>`, or hal's
/// page-aligned [`AlignedBuf`], which a slot opened with `O_DIRECT` writes without a copy.
pub trait ChunkBuf: core::ops::Deref<Target = [u8]> {
    /// Makes the buffer exactly `len` bytes long and returns them (contents unspecified).
    fn set_len(&mut self, len: usize) -> &mut [u8];
}

impl ChunkBuf for Vec<u8> {
    fn set_len(&mut self, len: usize) -> &mut [u8] {
        self.resize(len, 0);
        self
    }
}

impl ChunkBuf for AlignedBuf {
    fn set_len(&mut self, len: usize) -> &mut [u8] {
        self.resize(len)
    }
}

/// Decodes one stored chunk of image `image` into `out` (exactly the chunk's raw
/// length) and checks its SHA-256 against the manifest. Decompression never produces
/// or allocates more than the raw length, so a zstd bomb fails instead of allocating.
pub fn decode_chunk(
    entry: &ImageEntry,
    image: usize,
    chunk: &ChunkRef,
    stored: &[u8],
    out: &mut impl ChunkBuf,
) -> Result<(), BundleError> {
    let pending = decode_chunk_unchecked(entry, image, chunk, stored, out)?;
    check_chunks((&pending, out), None)
}

/// Checks an uncompressed chunk in place (no copy): its length and SHA-256 against
/// the signed manifest. For images stored without compression, where the stored
/// bytes are the raw bytes.
pub fn verify_raw_chunk(
    entry: &ImageEntry,
    image: usize,
    chunk: &ChunkRef,
    raw: &[u8],
) -> Result<(), BundleError> {
    let pending = raw_chunk_unchecked(entry, image, chunk, raw)?;
    check_chunks((&pending, raw), None)
}

/// A chunk whose raw bytes passed every check but their SHA-256: made only by
/// [`decode_chunk_unchecked`] and [`raw_chunk_unchecked`], consumed by [`check_chunks`].
#[derive(Debug)]
pub struct UncheckedChunk<'m> {
    entry: &'m ImageEntry,
    image: usize,
    /// From the signed manifest, not from the caller's ChunkRef.
    expected: ChunkRef,
}

/// [`decode_chunk`] without its SHA-256 check, so that two chunks can be hashed at
/// once by [`check_chunks`].
pub fn decode_chunk_unchecked<'m>(
    entry: &'m ImageEntry,
    image: usize,
    chunk: &ChunkRef,
    stored: &[u8],
    out: &mut impl ChunkBuf,
) -> Result<UncheckedChunk<'m>, BundleError> {
    let fail = |message: String| BundleError::ChunkDecompress {
        image,
        index: chunk.index,
        message,
    };
    let expected = signed_chunk(entry, image, chunk)?;
    let raw_len = expected.raw_len as usize;
    if stored.len() != expected.stored_len as usize {
        return Err(fail(format!(
            "{} stored bytes given, the manifest says {}",
            stored.len(),
            expected.stored_len
        )));
    }
    let out = out.set_len(raw_len);
    match entry.compression {
        Compression::None if stored.len() == raw_len => out.copy_from_slice(stored),
        Compression::None => {
            return Err(fail(format!(
                "{} stored bytes for {raw_len} raw",
                stored.len()
            )))
        }
        Compression::Zstd => {
            match zstd::zstd_safe::find_frame_compressed_size(stored) {
                Ok(n) if n == stored.len() => {}
                _ => return Err(fail("stored bytes are not exactly one zstd frame".into())),
            }
            // zstd writes into exactly raw_len bytes: a frame that claims more fails
            // instead of growing anything.
            let mut dctx = zstd::bulk::Decompressor::new().map_err(|e| fail(e.to_string()))?;
            let n = dctx
                .decompress_to_buffer(stored, out)
                .map_err(|e| fail(format!("{e} (limit: {raw_len} bytes)")))?;
            if n != raw_len {
                return Err(fail(format!(
                    "decompressed to {n} bytes, expected {raw_len}"
                )));
            }
        }
        Compression::Xz => super::xz::decompress(stored, out, entry.chunk_size).map_err(fail)?,
    }
    Ok(UncheckedChunk {
        entry,
        image,
        expected,
    })
}

/// [`verify_raw_chunk`] without its SHA-256 check, so that two chunks can be hashed
/// at once by [`check_chunks`].
pub fn raw_chunk_unchecked<'m>(
    entry: &'m ImageEntry,
    image: usize,
    chunk: &ChunkRef,
    raw: &[u8],
) -> Result<UncheckedChunk<'m>, BundleError> {
    let expected = signed_chunk(entry, image, chunk)?;
    if entry.compression != Compression::None || raw.len() != expected.raw_len as usize {
        return Err(BundleError::ChunkDecompress {
            image,
            index: chunk.index,
            message: format!(
                "{} raw bytes given for a {} chunk of {} bytes",
                raw.len(),
                entry.compression,
                expected.raw_len
            ),
        });
    }
    Ok(UncheckedChunk {
        entry,
        image,
        expected,
    })
}

/// A chunk's raw bytes as read back from the slot they were written to, whatever the
/// image's compression in the bundle: its length is checked against the signed
/// manifest here, its SHA-256 by [`check_chunks`], the same check an install makes
/// before it writes the chunk. What `bascule activate` re-hashes.
pub fn written_chunk_unchecked<'m>(
    entry: &'m ImageEntry,
    image: usize,
    chunk: &ChunkRef,
    raw: &[u8],
) -> Result<UncheckedChunk<'m>, BundleError> {
    let expected = signed_chunk(entry, image, chunk)?;
    if raw.len() != expected.raw_len as usize {
        return Err(BundleError::ChunkDecompress {
            image,
            index: chunk.index,
            message: format!(
                "{} bytes read back for a chunk of {} bytes",
                raw.len(),
                expected.raw_len
            ),
        });
    }
    Ok(UncheckedChunk {
        entry,
        image,
        expected,
    })
}

/// The chunk as the signed manifest describes it: lengths and offset never come from
/// the caller's [`ChunkRef`], only its index does.
fn signed_chunk(
    entry: &ImageEntry,
    image: usize,
    chunk: &ChunkRef,
) -> Result<ChunkRef, BundleError> {
    entry
        .chunk_ref(image, chunk.index)
        .ok_or_else(|| BundleError::ChunkDecompress {
            image,
            index: chunk.index,
            message: format!("the image has only {} chunks", entry.chunks.len()),
        })
}

/// Checks one or two chunks' raw bytes against their signed SHA-256, hashing two at
/// once (SHA-NI rounds interleaved, `sha256x2`); a mismatch names the first chunk that fails.
pub fn check_chunks(
    first: (&UncheckedChunk, &[u8]),
    second: Option<(&UncheckedChunk, &[u8])>,
) -> Result<(), BundleError> {
    let digests = match &second {
        Some((_, raw)) => {
            let (a, b) = sha256_pair(first.1, raw);
            [a, b]
        }
        None => [sha256(first.1); 2],
    };
    for ((chunk, raw), digest) in [Some(first), second].into_iter().flatten().zip(digests) {
        let expected = &chunk.expected;
        let signed = &chunk.entry.chunks[expected.index as usize].sha256;
        if raw.len() != expected.raw_len as usize || digest != *signed {
            return Err(BundleError::ChunkHashMismatch {
                image: chunk.image,
                index: expected.index,
                offset: expected.offset,
            });
        }
    }
    Ok(())
}

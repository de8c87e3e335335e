//! Reading a written slot back against its signed manifest: what `bascule activate`
//! does before it marks a staged slot pending.
//!
//! Every chunk of every image is read from the slot at its signed offset and length,
//! checked against its signed SHA-256 by the same [`check_chunks`] an install runs
//! before it writes the chunk (two at a time), and each image's length and whole
//! SHA-256 by the same [`ImageHasher`] as [`super::Verify::Full`]. Nothing is written;
//! memory is two chunks.
use bascule_partitions::SlotName;

use super::engine::SlotDevices;
use super::ActivateError;
use crate::bundle::{check_chunks, written_chunk_unchecked, ImageEntry, ImageHasher, Manifest};

/// Checks that slot `target` holds every image of `manifest`, byte for byte.
pub(crate) fn verify_written(
    manifest: &Manifest,
    target: SlotName,
    slots: &mut dyn SlotDevices,
) -> Result<(), ActivateError> {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (image, entry) in manifest.images.iter().enumerate() {
        let read_err = |source| ActivateError::SlotRead {
            slot: target,
            class: entry.slot_class.clone(),
            source,
        };
        let mut dev = slots
            .open_slot(&entry.slot_class, target)
            .map_err(read_err)?;
        let mut hasher = ImageHasher::new(image);
        let changed = |source| ActivateError::SlotChanged {
            slot: target,
            class: entry.slot_class.clone(),
            source,
        };
        let count = entry.chunks.len() as u32;
        for index in (0..count).step_by(2) {
            let a = read_chunk(entry, image, index, dev.as_mut(), &mut first)
                .map_err(read_err)?
                .expect("index below the chunk count");
            let b = match index + 1 < count {
                true => read_chunk(entry, image, index + 1, dev.as_mut(), &mut second)
                    .map_err(read_err)?,
                false => None,
            };
            let a = written_chunk_unchecked(entry, image, &a, &first).map_err(changed)?;
            let b = b
                .map(|b| written_chunk_unchecked(entry, image, &b, &second))
                .transpose()
                .map_err(changed)?;
            check_chunks((&a, &first), b.as_ref().map(|b| (b, &second[..]))).map_err(changed)?;
            hasher.update(&first);
            if b.is_some() {
                hasher.update(&second);
            }
        }
        hasher.finish(entry).map_err(changed)?;
    }
    Ok(())
}

/// Reads chunk `index` of `image` from `dev` into `buf` (its signed raw length, at its
/// signed offset); `None` past the last chunk.
fn read_chunk(
    entry: &ImageEntry,
    image: usize,
    index: u32,
    dev: &mut dyn bascule_hal::BlockDevice,
    buf: &mut Vec<u8>,
) -> Result<Option<crate::bundle::ChunkRef>, bascule_hal::HalError> {
    let Some(chunk) = entry.chunk_ref(image, index) else {
        return Ok(None);
    };
    buf.resize(chunk.raw_len as usize, 0);
    dev.read_at(chunk.offset, buf)?;
    Ok(Some(chunk))
}

//! The streaming pipeline: every chunk of the payload goes
//! read → decode and check its SHA-256 → write to the slot → add to the image hash,
//! one thread per stage, joined by bounded channels.
//!
//! Memory is a few chunks in flight per stage, whatever the image size; buffers go
//! back to the stage that fills them. Each image's slot is synced when its last chunk
//! is written, and its length and whole-image SHA-256 are checked against the signed
//! manifest when its last chunk is hashed; [`stream`] returns only when both are done,
//! so the caller marks the slot pending only after the whole image verified and was
//! flushed. Any stage failing stops the others; the error reported is the cause, not
//! the echo of a stage that stopped because another did.
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bascule_hal::BlockDevice;
use bascule_partitions::SlotName;

use super::engine::{SlotDevices, Verify};
use super::progress::Progress;
use super::InstallError;
use crate::bundle::{
    decode_chunk, verify_raw_chunk, BundleReader, ChunkRef, Compression, ImageHasher, Manifest,
};

/// Chunks in flight between two stages.
const DEPTH: usize = 3;
/// Buffers each pool keeps for reuse.
const POOL: usize = 4 * DEPTH + 2;

/// One chunk travelling down the pipeline.
struct Chunk {
    chunk: ChunkRef,
    bytes: Vec<u8>,
}

/// Runs the pipeline over every chunk of the bundle; `slots` is `None` for a dry run.
pub(super) fn stream<R: Read>(
    reader: &mut BundleReader<R>,
    manifest: &Manifest,
    target: SlotName,
    slots: Option<&mut (dyn SlotDevices + '_)>,
    verify: Verify,
    progress: &mut dyn Progress,
) -> Result<(), InstallError> {
    let (stored_tx, stored_rx) = sync_channel::<Chunk>(DEPTH);
    let (decoded_tx, decoded_rx) = sync_channel::<Chunk>(DEPTH);
    let (written_tx, written_rx) = sync_channel::<Chunk>(DEPTH);
    let (stored_pool_tx, stored_pool_rx) = sync_channel::<Vec<u8>>(POOL);
    let (raw_pool_tx, raw_pool_rx) = sync_channel::<Vec<u8>>(POOL);
    let recycle = Recycle {
        stored: stored_pool_tx.clone(),
        raw: raw_pool_tx,
    };
    // Bytes verified and handed to the slot: what progress reports.
    let written = AtomicU64::new(0);
    let written_ref = &written;
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            decode_stage(manifest, stored_rx, decoded_tx, stored_pool_tx, raw_pool_rx)
        });
        let writer = scope.spawn(move || {
            write_stage(manifest, target, slots, decoded_rx, written_tx, written_ref)
        });
        let checker = scope.spawn(move || check_stage(manifest, written_rx, recycle, verify));
        let results = [
            read_stage(reader, stored_tx, stored_pool_rx, progress, &written),
            decoder.join().unwrap_or(Err(InstallError::Stopped)),
            writer.join().unwrap_or(Err(InstallError::Stopped)),
            checker.join().unwrap_or(Err(InstallError::Stopped)),
        ];
        first_cause(results)
    })
}

/// The first error that is a cause, not the echo of another stage stopping.
fn first_cause(results: [Result<(), InstallError>; 4]) -> Result<(), InstallError> {
    let mut stopped = false;
    for result in results {
        match result {
            Err(InstallError::Stopped) => stopped = true,
            Err(err) => return Err(err),
            Ok(()) => {}
        }
    }
    if stopped {
        return Err(InstallError::Stopped);
    }
    Ok(())
}

fn read_stage<R: Read>(
    reader: &mut BundleReader<R>,
    out: SyncSender<Chunk>,
    pool: Receiver<Vec<u8>>,
    progress: &mut dyn Progress,
    written: &AtomicU64,
) -> Result<(), InstallError> {
    loop {
        let mut bytes = pool.try_recv().unwrap_or_default();
        let Some(chunk) = reader.next_stored_chunk(&mut bytes)? else {
            return Ok(());
        };
        out.send(Chunk { chunk, bytes })
            .map_err(|_| InstallError::Stopped)?;
        progress.advance(written.load(Ordering::Relaxed));
    }
}

fn decode_stage(
    manifest: &Manifest,
    input: Receiver<Chunk>,
    out: SyncSender<Chunk>,
    stored_pool: SyncSender<Vec<u8>>,
    raw_pool: Receiver<Vec<u8>>,
) -> Result<(), InstallError> {
    for Chunk {
        chunk,
        bytes: stored,
    } in input
    {
        let entry = &manifest.images[chunk.image];
        let raw = if entry.compression == Compression::None {
            // Stored bytes are the raw bytes: check them in place, forward them.
            verify_raw_chunk(entry, chunk.image, &chunk, &stored)?;
            stored
        } else {
            let mut raw = raw_pool.try_recv().unwrap_or_default();
            decode_chunk(entry, chunk.image, &chunk, &stored, &mut raw)?;
            // A full pool only means this buffer is freed instead of reused.
            drop(stored_pool.try_send(stored));
            raw
        };
        out.send(Chunk { chunk, bytes: raw })
            .map_err(|_| InstallError::Stopped)?;
    }
    Ok(())
}

/// The slot being written: which image, its device (none in a dry run), how far.
struct OpenSlot {
    image: usize,
    dev: Option<Box<dyn BlockDevice + Send>>,
    next_offset: u64,
}

impl OpenSlot {
    fn open(
        manifest: &Manifest,
        target: SlotName,
        slots: Option<&mut (dyn SlotDevices + '_)>,
        image: usize,
    ) -> Result<Self, InstallError> {
        let class = &manifest.images[image].slot_class;
        let dev = match slots {
            Some(s) => Some(
                s.open_slot(class, target)
                    .map_err(InstallError::slot(target))?,
            ),
            None => None,
        };
        Ok(OpenSlot {
            image,
            dev,
            next_offset: 0,
        })
    }

    fn write(
        &mut self,
        target: SlotName,
        chunk: &ChunkRef,
        raw: &[u8],
    ) -> Result<(), InstallError> {
        if chunk.offset != self.next_offset {
            return Err(InstallError::OutOfOrder {
                image: chunk.image,
                offset: chunk.offset,
            });
        }
        if let Some(dev) = self.dev.as_mut() {
            dev.write_at(chunk.offset, raw)
                .map_err(InstallError::slot(target))?;
        }
        self.next_offset += raw.len() as u64;
        Ok(())
    }

    /// Makes everything written durable (fsync).
    fn close(mut self, target: SlotName) -> Result<(), InstallError> {
        match self.dev.as_mut() {
            Some(dev) => dev.sync().map_err(InstallError::slot(target)),
            None => Ok(()),
        }
    }
}

fn write_stage(
    manifest: &Manifest,
    target: SlotName,
    mut slots: Option<&mut (dyn SlotDevices + '_)>,
    input: Receiver<Chunk>,
    out: SyncSender<Chunk>,
    written: &AtomicU64,
) -> Result<(), InstallError> {
    let mut current: Option<OpenSlot> = None;
    for Chunk { chunk, bytes } in input {
        if current.as_ref().map(|c| c.image) != Some(chunk.image) {
            if let Some(done) = current.take() {
                done.close(target)?;
            }
            current = Some(OpenSlot::open(
                manifest,
                target,
                slots.as_deref_mut(),
                chunk.image,
            )?);
        }
        let slot = current.as_mut().ok_or(InstallError::Stopped)?;
        slot.write(target, &chunk, &bytes)?;
        written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        out.send(Chunk { chunk, bytes })
            .map_err(|_| InstallError::Stopped)?;
    }
    match current {
        Some(done) => done.close(target),
        None => Ok(()),
    }
}

/// Where the last stage hands buffers back: uncompressed images reuse the reader's
/// buffers, compressed ones the decoder's.
struct Recycle {
    stored: SyncSender<Vec<u8>>,
    raw: SyncSender<Vec<u8>>,
}

fn check_stage(
    manifest: &Manifest,
    input: Receiver<Chunk>,
    recycle: Recycle,
    verify: Verify,
) -> Result<(), InstallError> {
    let start = |image| match verify {
        Verify::Full => ImageHasher::new(image),
        Verify::Chunks => ImageHasher::length_only(image),
    };
    let mut finished = vec![false; manifest.images.len()];
    let mut current: Option<(usize, ImageHasher)> = None;
    for Chunk { chunk, bytes } in input {
        if current.as_ref().map(|(image, _)| *image) != Some(chunk.image) {
            if let Some((image, hasher)) = current.take() {
                hasher.finish(&manifest.images[image])?;
                finished[image] = true;
            }
            current = Some((chunk.image, start(chunk.image)));
        }
        if let Some((_, hasher)) = current.as_mut() {
            hasher.update(&bytes);
        }
        let pool = match manifest.images[chunk.image].compression {
            Compression::None => &recycle.stored,
            Compression::Zstd => &recycle.raw,
        };
        drop(pool.try_send(bytes));
    }
    if let Some((image, hasher)) = current.take() {
        hasher.finish(&manifest.images[image])?;
        finished[image] = true;
    }
    match finished.iter().position(|done| !done) {
        Some(image) => Err(InstallError::ImageIncomplete {
            image,
            written: 0,
            size: manifest.images[image].size,
        }),
        None => Ok(()),
    }
}

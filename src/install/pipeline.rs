//! The streaming pipeline: every chunk of the payload goes
//! read → decode and check its SHA-256 → write to the slot → add up the image,
//! with bounded channels between the stages.
//!
//! Checking (SHA-256, and zstd or xz where the payload is compressed) is the costly
//! step, and chunks are independent, so it runs on one worker per core (up to
//! [`MAX_WORKERS`]), at a lower CPU priority than the reader and the writer: the
//! reader deals chunks out in pairs, round robin, each worker hashes a pair at once
//! (`sha256_pair`), and the writer takes the pairs back in the same rotation, so
//! chunks reach the slot in payload order. The writer keeps two writes in flight
//! ([`super::write`]); each stage's busy and idle time is measured
//! ([`super::stages`]) and returned.
//!
//! Memory is a few chunks in flight per stage, whatever the image size; buffers go
//! back to a pool that the reader and the decoders draw from. Each image's slot is
//! synced when its last chunk is written, and its length (and with [`Verify::Full`]
//! its whole-image SHA-256) is checked against the signed manifest when its last
//! chunk is counted; [`stream`] returns only when both are done, so the caller marks
//! the slot pending only after the whole image verified and was flushed. Any stage
//! failing stops the others; the error reported is the cause, not the echo of a stage
//! that stopped because another did.
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bascule_hal::AlignedBuf;
use bascule_partitions::SlotName;

use super::buffers::Pools;
use super::engine::{SlotDevices, Verify};
use super::progress::Progress;
use super::stages::{Clocks, Part, StageClock, StageTimes};
use super::write::WRITE_LANES;
use super::InstallError;
use crate::bundle::{
    check_chunks, decode_chunk_unchecked, raw_chunk_unchecked, BundleReader, ChunkRef, Compression,
    ImageHasher, Manifest, UncheckedChunk,
};

/// Chunks in flight between the writer and the last stage.
const DEPTH: usize = 1;
/// Pairs of chunks queued to and from each check worker: none. The reader hands a
/// pair straight to its worker and the worker its checked pair straight to the
/// writer (rendezvous channels), so a worker holds one pair and memory is about
/// `2 × workers + 7` chunks. A queue of one pair on either side cost 2 chunks per
/// worker and gained nothing measurable: median of 8-10 installs of 1 GiB, 0.77-0.82 s
/// with or without, while peak RSS went from 16 to 20 and 24 MiB.
const PAIR_DEPTH: usize = 0;
/// How much nicer than the rest of the install the check workers run. When the
/// cores are busy, the writer and the kernel threads that move its data into the
/// slot go first and hashing fills the time they leave: installs on the 2-core
/// bench machine took 7-12% less time than with the workers at equal priority
/// (nice 10 gave no gain). On a device it also leaves its own work the larger share.
const WORKER_NICENESS: i32 = 5;
/// Most check workers, however many cores there are.
pub const MAX_WORKERS: usize = 4;

/// One chunk travelling down the pipeline, in a page-aligned buffer so that a slot
/// opened with `O_DIRECT` writes it without a copy.
pub(super) struct Chunk {
    pub(super) chunk: ChunkRef,
    pub(super) bytes: AlignedBuf,
}

/// Two consecutive chunks (one at the end of the payload): what the reader deals to a
/// check worker, which hashes them at once, and what the writer takes back.
pub(super) struct Pair {
    first: Chunk,
    second: Option<Chunk>,
}

impl IntoIterator for Pair {
    type Item = Chunk;
    type IntoIter = std::iter::Chain<std::iter::Once<Chunk>, std::option::IntoIter<Chunk>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.first).chain(self.second)
    }
}

/// Check workers for this machine: one per core, at least two, at most [`MAX_WORKERS`].
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, MAX_WORKERS)
}

/// Runs the pipeline over every chunk of the bundle; `slots` is `None` for a dry run.
pub(crate) fn stream<R: Read>(
    reader: &mut BundleReader<R>,
    manifest: &Manifest,
    target: SlotName,
    slots: Option<&mut (dyn SlotDevices + '_)>,
    verify: Verify,
    progress: &mut dyn Progress,
) -> Result<StageTimes, InstallError> {
    let run = Run {
        manifest,
        target,
        verify,
        workers: default_workers(),
        write_lanes: WRITE_LANES,
    };
    run.stream(reader, slots, progress)
}

/// What one run of the pipeline needs to know.
#[derive(Clone, Copy)]
pub(super) struct Run<'m> {
    pub(super) manifest: &'m Manifest,
    pub(super) target: SlotName,
    verify: Verify,
    workers: usize,
    /// Most writes in flight to a slot ([`WRITE_LANES`]).
    pub(super) write_lanes: usize,
}

impl Run<'_> {
    fn stream<R: Read>(
        self,
        reader: &mut BundleReader<R>,
        slots: Option<&mut (dyn SlotDevices + '_)>,
        progress: &mut dyn Progress,
    ) -> Result<StageTimes, InstallError> {
        let (to_workers, worker_inputs) = channels(self.workers, PAIR_DEPTH);
        let (from_workers, worker_outputs) = channels(self.workers, PAIR_DEPTH);
        let (written_tx, written_rx) = sync_channel::<Chunk>(DEPTH);
        let pools = Pools::new(buffers_in_flight(self.workers, self.write_lanes));
        // Bytes verified and handed to the slot: what progress reports.
        let written = AtomicU64::new(0);
        let clocks = Clocks::new();
        let (pools, written_ref, clocks_ref) = (&pools, &written, &clocks);
        std::thread::scope(|scope| {
            let checkers: Vec<_> = worker_inputs
                .into_iter()
                .zip(from_workers)
                .map(|(input, out)| {
                    scope.spawn(move || self.check_chunks(input, out, pools, clocks_ref))
                })
                .collect();
            let writer = scope.spawn(move || {
                self.write_stage(slots, &worker_outputs, written_tx, written_ref, clocks_ref)
            });
            let counter = scope.spawn(move || self.image_stage(written_rx, pools));
            let reading = read_stage(reader, to_workers, pools, progress, &written, &clocks.read);
            let mut results = vec![reading];
            results.extend(checkers.into_iter().map(join));
            results.push(join(writer));
            results.push(join(counter));
            first_cause(results)
        })?;
        Ok(clocks.finish(self.workers as u32, pools.made() as u32))
    }
}

/// Every chunk buffer that can be in flight at once: the pairs queued to, held by and
/// queued from each worker, a chunk in each write lane, the last stage's channel,
/// and the chunks in the hands of the reader, the writer and the last stage.
pub(super) fn buffers_in_flight(workers: usize, write_lanes: usize) -> usize {
    2 * (2 * PAIR_DEPTH + 1) * workers + write_lanes + DEPTH + 6
}

fn channels(n: usize, depth: usize) -> (Vec<SyncSender<Pair>>, Vec<Receiver<Pair>>) {
    (0..n).map(|_| sync_channel(depth)).unzip()
}

fn join(
    handle: std::thread::ScopedJoinHandle<'_, Result<(), InstallError>>,
) -> Result<(), InstallError> {
    handle.join().unwrap_or(Err(InstallError::Stopped))
}

/// The first error that is a cause, not the echo of another stage stopping.
fn first_cause(results: Vec<Result<(), InstallError>>) -> Result<(), InstallError> {
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

/// Pairs from the workers in the order the reader dealt them out: round robin,
/// ending at the first worker that has no more (the stream ended, or it failed).
/// The time spent waiting for them counts as `clock`'s starved time.
pub(super) fn in_order<'a>(
    outputs: &'a [Receiver<Pair>],
    clock: &'a StageClock,
) -> impl Iterator<Item = Pair> + 'a {
    outputs
        .iter()
        .cycle()
        .map_while(|rx| clock.time(Part::Starved, || rx.recv()).ok())
}

/// Sends `value` to the next stage, counting the wait as `clock`'s blocked time;
/// [`InstallError::Stopped`] when that stage has stopped.
pub(super) fn send<T>(
    clock: &StageClock,
    to: &SyncSender<T>,
    value: T,
) -> Result<(), InstallError> {
    match clock.time(Part::Blocked, || to.send(value).is_ok()) {
        true => Ok(()),
        false => Err(InstallError::Stopped),
    }
}

fn read_stage<R: Read>(
    reader: &mut BundleReader<R>,
    workers: Vec<SyncSender<Pair>>,
    pools: &Pools,
    progress: &mut dyn Progress,
    written: &AtomicU64,
    clock: &StageClock,
) -> Result<(), InstallError> {
    let mut next = || -> Result<Option<Chunk>, InstallError> {
        let mut bytes = pools.stored.take();
        let chunk = clock.time(Part::Busy, || reader.next_stored_chunk(&mut bytes))?;
        Ok(chunk.map(|chunk| Chunk { chunk, bytes }))
    };
    for worker in workers.iter().cycle() {
        let Some(first) = next()? else {
            return Ok(());
        };
        let second = next()?;
        send(clock, worker, Pair { first, second })?;
        progress.advance(written.load(Ordering::Relaxed));
    }
    Ok(())
}

impl<'m> Run<'m> {
    /// A check worker: decodes each pair of chunks it is dealt and checks both
    /// against their signed SHA-256 at once (two hashes interleaved are faster than
    /// one after the other), before they go on to be written.
    fn check_chunks(
        self,
        input: Receiver<Pair>,
        out: SyncSender<Pair>,
        pools: &Pools,
        clocks: &Clocks,
    ) -> Result<(), InstallError> {
        lower_this_threads_priority();
        let clock = &clocks.check;
        while let Ok(pair) = clock.time(Part::Starved, || input.recv()) {
            let checked = clock.time(Part::Busy, || self.check_pair(pair, pools))?;
            send(clock, &out, checked)?;
        }
        Ok(())
    }

    /// Decodes a pair and checks both chunks against their signed SHA-256 at once.
    fn check_pair(self, pair: Pair, pools: &Pools) -> Result<Pair, InstallError> {
        let Pair { first, second } = pair;
        let (first, first_check) = self.decode(first, pools)?;
        let second = second.map(|c| self.decode(c, pools)).transpose()?;
        let second_check = second.as_ref().map(|(c, check)| (check, &c.bytes[..]));
        check_chunks((&first_check, &first.bytes), second_check)?;
        let second = second.map(|(chunk, _)| chunk);
        Ok(Pair { first, second })
    }

    /// A chunk's raw bytes, decoded where the image is compressed; not yet hashed.
    fn decode(
        self,
        stored: Chunk,
        pools: &Pools,
    ) -> Result<(Chunk, UncheckedChunk<'m>), InstallError> {
        let Chunk { chunk, bytes } = stored;
        let entry = &self.manifest.images[chunk.image];
        if entry.compression == Compression::None {
            // Stored bytes are the raw bytes: check them in place, forward them.
            let check = raw_chunk_unchecked(entry, chunk.image, &chunk, &bytes)?;
            return Ok((Chunk { chunk, bytes }, check));
        }
        let mut raw = pools.raw.take();
        let check = decode_chunk_unchecked(entry, chunk.image, &chunk, &bytes, &mut raw)?;
        pools.stored.give(bytes);
        Ok((Chunk { chunk, bytes: raw }, check))
    }

    /// The last stage: each image's length, and with [`Verify::Full`] its whole-image
    /// SHA-256, against the manifest; then the buffers go back to their pool.
    fn image_stage(self, input: Receiver<Chunk>, pools: &Pools) -> Result<(), InstallError> {
        let manifest = self.manifest;
        let start = |image| match self.verify {
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
            pools.recycle(manifest.images[chunk.image].compression, bytes);
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
}

/// Makes the calling thread [`WORKER_NICENESS`] nicer than it is. Linux keeps a nice
/// value per thread, so the rest of the process keeps its own.
fn lower_this_threads_priority() {
    // SAFETY: nice(3) takes an integer and touches no memory of ours.
    if unsafe { nix::libc::nice(WORKER_NICENESS) } == -1 {
        log::debug!(
            "check worker keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;

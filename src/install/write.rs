//! The pipeline's write stage: checked chunks, in payload order, into their slot,
//! with writes kept in flight back to back so the slot is never left waiting for the
//! next one.
//!
//! A writer thread takes the checked chunks in order and deals them to up to
//! [`WRITE_LANES`] lane threads, round robin; each lane writes through its own handle
//! on the slot ([`BlockDevice::try_clone_writer`]; one lane where the device has
//! none). So when one write completes the next is already at the device, and the
//! gap that one write at a time leaves (the writer waking up, then taking the next
//! chunk from its worker) is gone.
//!
//! Invariants:
//! - only chunks whose SHA-256 matched reach this stage;
//! - each image's chunks are written at their offsets with no gap or overlap, else
//!   [`InstallError::OutOfOrder`];
//! - a chunk goes on to the image stage only after its write completed, in payload
//!   order (completions are taken from the lanes in the order they were dealt);
//! - an image's slot is synced only after every write to it completed, and any failed
//!   write fails the stage (so the install), whatever its offset.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

use bascule_hal::BlockDevice;

use super::engine::SlotDevices;
use super::pipeline::{in_order, send, Chunk, Pair, Run};
use super::stages::{Clocks, Part};
use super::InstallError;

/// Most writes in flight to a slot at once. Two keep the next write queued while one
/// completes: in alternating runs of 1 GiB installs on the 2-core bench machine,
/// bascule raw went from 0.56-0.84 × `dd bs=4M oflag=direct` with one write at a time
/// to 0.67-1.18 × with two, ahead in every run; three were no better than two
/// (bench/README.md, issue 20). Writing each pair of chunks as one 2 MiB `pwritev`
/// gained nothing measurable.
pub(super) const WRITE_LANES: usize = 2;

type Device = Box<dyn BlockDevice + Send>;

impl Run<'_> {
    /// Writes every checked chunk from `inputs` (the workers' outputs, dealt round
    /// robin) and forwards it to `out` once written.
    pub(super) fn write_stage(
        self,
        mut slots: Option<&mut (dyn SlotDevices + '_)>,
        inputs: &[Receiver<Pair>],
        out: SyncSender<Chunk>,
        written: &AtomicU64,
        clocks: &Clocks,
    ) -> Result<(), InstallError> {
        let mut chunks = in_order(inputs, &clocks.write).flatten().peekable();
        let forward = Forward {
            out: &out,
            written,
            clocks,
        };
        while let Some(next) = chunks.peek() {
            let image = next.chunk.image;
            let slot = OpenSlot::open(self, slots.as_deref_mut(), image)?;
            let of_image = std::iter::from_fn(|| chunks.next_if(|c| c.chunk.image == image));
            self.write_image(slot, of_image, &forward)?;
        }
        Ok(())
    }

    /// Writes one image's chunks, then syncs its slot.
    fn write_image(
        self,
        mut slot: OpenSlot,
        chunks: impl Iterator<Item = Chunk>,
        forward: &Forward,
    ) -> Result<(), InstallError> {
        let Some(dev) = slot.dev.take() else {
            // Dry run: nothing to write.
            for chunk in chunks {
                slot.advance(&chunk)?;
                forward.send(chunk)?;
            }
            return Ok(());
        };
        let handles = writers(dev, self.write_lanes);
        let lanes_used = &forward.clocks.lanes_used;
        lanes_used.fetch_max(handles.len() as u32, Ordering::Relaxed);
        let mut dev = std::thread::scope(|scope| -> Result<Device, InstallError> {
            let mut lanes: Vec<Lane> = handles
                .into_iter()
                .map(|h| Lane::spawn(scope, h, self, forward.clocks))
                .collect();
            let mut flight = Flight::default();
            for chunk in chunks {
                slot.advance(&chunk)?;
                if flight.dealt.len() == lanes.len() {
                    flight.complete_oldest(&lanes, forward)?;
                }
                flight.deal(&lanes, chunk)?;
            }
            while !flight.dealt.is_empty() {
                flight.complete_oldest(&lanes, forward)?;
            }
            let first = lanes.swap_remove(0);
            drop(lanes);
            first.finish()
        })?;
        let target = self.target;
        let synced = forward.clocks.sync.time(Part::Busy, || dev.sync());
        synced.map_err(InstallError::slot(target))
    }
}

/// The slot's own handle first, then up to `lanes - 1` more on the same bytes.
fn writers(dev: Device, lanes: usize) -> Vec<Device> {
    let mut handles = Vec::with_capacity(lanes);
    while handles.len() + 1 < lanes {
        match dev.try_clone_writer() {
            Some(clone) => handles.push(clone),
            None => break,
        }
    }
    handles.insert(0, dev);
    handles
}

/// Where written chunks go: the image stage, counted in `written` for progress.
struct Forward<'a> {
    out: &'a SyncSender<Chunk>,
    written: &'a AtomicU64,
    clocks: &'a Clocks,
}

impl Forward<'_> {
    fn send(&self, chunk: Chunk) -> Result<(), InstallError> {
        self.written
            .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
        send(&self.clocks.write, self.out, chunk)
    }
}

/// Which lanes hold a chunk, oldest first, and the lane the next chunk goes to.
#[derive(Default)]
struct Flight {
    dealt: VecDeque<usize>,
    next: usize,
}

impl Flight {
    fn deal(&mut self, lanes: &[Lane], chunk: Chunk) -> Result<(), InstallError> {
        let lane = self.next;
        lanes[lane]
            .jobs
            .send(chunk)
            .map_err(|_| InstallError::Stopped)?;
        self.dealt.push_back(lane);
        self.next = (lane + 1) % lanes.len();
        Ok(())
    }

    /// Waits for the oldest chunk in flight and forwards it; its write's error if it failed.
    fn complete_oldest(&mut self, lanes: &[Lane], forward: &Forward) -> Result<(), InstallError> {
        let Some(lane) = self.dealt.pop_front() else {
            return Ok(());
        };
        let done = forward
            .clocks
            .write
            .time(Part::Blocked, || lanes[lane].done.recv());
        let chunk = done.map_err(|_| InstallError::Stopped)??;
        forward.send(chunk)
    }
}

/// A thread writing chunks through its own handle, one at a time.
struct Lane<'scope> {
    jobs: SyncSender<Chunk>,
    done: Receiver<Result<Chunk, InstallError>>,
    thread: std::thread::ScopedJoinHandle<'scope, Device>,
}

impl<'scope> Lane<'scope> {
    fn spawn<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut dev: Device,
        run: Run<'env>,
        clocks: &'env Clocks,
    ) -> Self {
        // One chunk at a time each way: the writer deals a lane its next chunk only
        // after taking back its last, so neither send ever waits.
        let (jobs, job_rx) = sync_channel::<Chunk>(1);
        let (done_tx, done) = sync_channel(1);
        let thread = scope.spawn(move || {
            while let Ok(chunk) = clocks.lanes.time(Part::Starved, || job_rx.recv()) {
                let result = write_chunk(dev.as_mut(), &chunk, clocks)
                    .map(|()| chunk)
                    .map_err(InstallError::slot(run.target));
                let failed = result.is_err();
                if done_tx.send(result).is_err() || failed {
                    break;
                }
            }
            dev
        });
        Lane { jobs, done, thread }
    }

    /// Stops the lane and takes its handle back.
    fn finish(self) -> Result<Device, InstallError> {
        drop(self.jobs);
        self.thread.join().map_err(|_| InstallError::Stopped)
    }
}

/// One chunk's write, counted as time the slot is busy.
fn write_chunk(
    dev: &mut (dyn BlockDevice + Send),
    chunk: &Chunk,
    clocks: &Clocks,
) -> Result<(), bascule_hal::HalError> {
    clocks.in_flight.start(Instant::now());
    let result = clocks.lanes.time(Part::Busy, || {
        dev.write_at(chunk.chunk.offset, &chunk.bytes)
    });
    clocks.in_flight.end(Instant::now());
    result
}

/// The slot being written: which image, its device (none in a dry run), how far.
struct OpenSlot {
    image: usize,
    dev: Option<Device>,
    next_offset: u64,
}

impl OpenSlot {
    fn open(
        run: Run,
        slots: Option<&mut (dyn SlotDevices + '_)>,
        image: usize,
    ) -> Result<Self, InstallError> {
        let class = &run.manifest.images[image].slot_class;
        let dev = match slots {
            Some(s) => Some(
                s.open_slot(class, run.target)
                    .map_err(InstallError::slot(run.target))?,
            ),
            None => None,
        };
        Ok(OpenSlot {
            image,
            dev,
            next_offset: 0,
        })
    }

    /// Checks that `chunk` starts where the image's last chunk ended, then moves
    /// past it.
    fn advance(&mut self, chunk: &Chunk) -> Result<(), InstallError> {
        let Chunk { chunk, bytes } = chunk;
        if chunk.image != self.image || chunk.offset != self.next_offset {
            return Err(InstallError::OutOfOrder {
                image: chunk.image,
                offset: chunk.offset,
            });
        }
        self.next_offset += bytes.len() as u64;
        Ok(())
    }
}

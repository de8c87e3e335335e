//! The pipeline with 1 to [`MAX_WORKERS`] check workers and 1 to 3 write lanes:
//! chunks reach the slot in payload order, a damaged chunk fails the install whichever
//! worker checks it, a failed write fails it at any offset and the slot is then never
//! synced, and the buffers allocated stay a few chunks whatever the image size.
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use bascule_hal::{BlockDevice, FileBlock};

use super::*;
use crate::bundle::tests::{build, key, ring, Built, CS};
use crate::bundle::BundleError;
use crate::install::NoProgress;

/// Two images: seven chunks (the last one short), and three.
const SIZES: [usize; 2] = [6 * CS as usize + 100, 3 * CS as usize];

/// A bundle of the [`SIZES`] images (classes `class0`, `class1`), signed with `key(7)`.
fn bundle(dir: &Path, compression: Compression) -> Built {
    build(dir, &SIZES, compression, &key(7))
}

/// One file per slot class in a directory.
struct DirSlots {
    dir: PathBuf,
}

impl DirSlots {
    fn path(&self, class: &str) -> PathBuf {
        self.dir.join(class)
    }
}

impl SlotDevices for DirSlots {
    fn slot_size(&mut self, _: &str, _: SlotName) -> Result<Option<u64>, bascule_hal::HalError> {
        Ok(Some(1 << 20))
    }

    fn open_slot(
        &mut self,
        class: &str,
        _: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, bascule_hal::HalError> {
        let path = self.path(class);
        std::fs::write(&path, vec![0xee; 1 << 20]).unwrap();
        Ok(Box::new(FileBlock::open(&path, 0, None, true)?))
    }

    fn classes(&self) -> Vec<String> {
        vec!["class0".into(), "class1".into()]
    }
}

/// How a test runs the pipeline.
#[derive(Clone, Copy, Debug)]
struct Shape {
    workers: usize,
    write_lanes: usize,
    verify: Verify,
}

impl Shape {
    fn workers(workers: usize) -> Self {
        Shape {
            workers,
            write_lanes: WRITE_LANES,
            verify: Verify::Chunks,
        }
    }
}

fn stream_with(
    bytes: &[u8],
    shape: Shape,
    slots: &mut dyn SlotDevices,
) -> Result<StageTimes, InstallError> {
    let mut reader = BundleReader::open(Cursor::new(bytes), &ring(&[&key(7)]))?;
    let manifest = reader.manifest().clone();
    let run = Run {
        manifest: &manifest,
        target: SlotName::B,
        verify: shape.verify,
        workers: shape.workers,
        write_lanes: shape.write_lanes,
    };
    run.stream(&mut reader, Some(slots), &mut NoProgress)
}

fn run(
    bytes: &[u8],
    workers: usize,
    verify: Verify,
    slots: &mut DirSlots,
) -> Result<(), InstallError> {
    let shape = Shape {
        verify,
        ..Shape::workers(workers)
    };
    stream_with(bytes, shape, slots).map(drop)
}

#[test]
fn every_worker_count_writes_every_chunk_in_place() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::None, Compression::Zstd, Compression::Xz] {
        let Built { bytes, images, .. } = bundle(dir.path(), compression);
        for workers in 1..=MAX_WORKERS {
            for verify in [Verify::Chunks, Verify::Full] {
                let mut slots = DirSlots {
                    dir: dir.path().to_path_buf(),
                };
                run(&bytes, workers, verify, &mut slots).unwrap();
                for (i, want) in images.iter().enumerate() {
                    let got = std::fs::read(slots.path(&format!("class{i}"))).unwrap();
                    let case = format!("{compression:?}, {workers} workers, {verify:?}, image {i}");
                    assert!(got[..want.len()] == want[..], "{case}: slot differs");
                }
            }
        }
    }
}

#[test]
fn every_lane_count_writes_every_chunk_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let Built { bytes, images, .. } = bundle(dir.path(), Compression::None);
    for write_lanes in 1..=3 {
        for workers in [1, 2, 3] {
            let shape = Shape {
                write_lanes,
                verify: Verify::Full,
                ..Shape::workers(workers)
            };
            let mut slots = DirSlots {
                dir: dir.path().to_path_buf(),
            };
            let times = stream_with(&bytes, shape, &mut slots).unwrap();
            assert_eq!(times.lanes.threads as usize, write_lanes, "{shape:?}");
            for (i, want) in images.iter().enumerate() {
                let got = std::fs::read(slots.path(&format!("class{i}"))).unwrap();
                assert!(
                    got[..want.len()] == want[..],
                    "{shape:?}: image {i} differs"
                );
            }
        }
    }
}

/// A slot in memory that every handle on it shares: its write covering byte
/// `fail_at` fails, and it counts its syncs and the writes in flight at once.
#[derive(Clone, Default)]
struct SharedSlot {
    bytes: Arc<Mutex<Vec<u8>>>,
    fail_at: Option<u64>,
    syncs: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    /// How long each write takes, so that writes overlap.
    write_time: std::time::Duration,
    /// Whether it refuses a second handle, as devices without one do.
    single_handle: bool,
}

impl BlockDevice for SharedSlot {
    fn len(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), bascule_hal::HalError> {
        let bytes = self.bytes.lock().unwrap();
        buf.copy_from_slice(&bytes[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), bascule_hal::HalError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.write_time);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let range = offset..offset + buf.len() as u64;
        if self.fail_at.is_some_and(|at| range.contains(&at)) {
            return Err(bascule_hal::HalError::Poisoned(format!(
                "write at {offset}"
            )));
        }
        let mut bytes = self.bytes.lock().unwrap();
        bytes[range.start as usize..range.end as usize].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), bascule_hal::HalError> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn try_clone_writer(&self) -> Option<Box<dyn BlockDevice + Send>> {
        match self.single_handle {
            true => None,
            false => Some(Box::new(self.clone())),
        }
    }

    fn name(&self) -> String {
        "shared".into()
    }
}

/// One [`SharedSlot`] per class.
struct SharedSlots([SharedSlot; 2]);

impl SharedSlots {
    fn new(fail_at: Option<u64>, write_time: std::time::Duration) -> Self {
        let slot = || SharedSlot {
            bytes: Arc::new(Mutex::new(vec![0xee; 1 << 20])),
            fail_at,
            write_time,
            ..SharedSlot::default()
        };
        SharedSlots([slot(), slot()])
    }
}

impl SlotDevices for SharedSlots {
    fn slot_size(&mut self, _: &str, _: SlotName) -> Result<Option<u64>, bascule_hal::HalError> {
        Ok(Some(1 << 20))
    }

    fn open_slot(
        &mut self,
        class: &str,
        _: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, bascule_hal::HalError> {
        let i = usize::from(class == "class1");
        Ok(Box::new(self.0[i].clone()))
    }

    fn classes(&self) -> Vec<String> {
        vec!["class0".into(), "class1".into()]
    }
}

#[test]
fn a_failed_write_at_any_offset_fails_the_stream_before_its_slot_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bundle(dir.path(), Compression::None).bytes;
    for write_lanes in 1..=3 {
        for chunk in 0..7u64 {
            let fail_at = chunk * u64::from(CS) + 5;
            let mut slots = SharedSlots::new(Some(fail_at), std::time::Duration::ZERO);
            let shape = Shape {
                write_lanes,
                ..Shape::workers(2)
            };
            let err = stream_with(&bytes, shape, &mut slots).unwrap_err();
            let case = format!("{write_lanes} lanes, write of chunk {chunk} fails");
            assert!(
                matches!(
                    err,
                    InstallError::Slot {
                        slot: SlotName::B,
                        ..
                    }
                ),
                "{case}: {err}"
            );
            assert_eq!(slots.0[0].syncs.load(Ordering::SeqCst), 0, "{case}: synced");
        }
    }
}

#[test]
fn writes_are_in_flight_together_and_each_image_synced_once_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let Built { bytes, images, .. } = bundle(dir.path(), Compression::None);
    for write_lanes in [1, 2] {
        let mut slots = SharedSlots::new(None, std::time::Duration::from_millis(5));
        let shape = Shape {
            write_lanes,
            ..Shape::workers(2)
        };
        stream_with(&bytes, shape, &mut slots).unwrap();
        for (slot, want) in slots.0.iter().zip(&images) {
            assert_eq!(slot.syncs.load(Ordering::SeqCst), 1);
            assert!(slot.bytes.lock().unwrap()[..want.len()] == want[..]);
        }
        let most = slots.0[0].most_in_flight.load(Ordering::SeqCst);
        assert_eq!(
            most, write_lanes,
            "{write_lanes} lanes: most writes at once"
        );
    }
}

#[test]
fn a_slot_without_a_second_handle_is_written_one_write_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let Built { bytes, images, .. } = bundle(dir.path(), Compression::None);
    let mut slots = SharedSlots::new(None, std::time::Duration::from_millis(2));
    for slot in &mut slots.0 {
        slot.single_handle = true;
    }
    let times = stream_with(&bytes, Shape::workers(2), &mut slots).unwrap();
    assert_eq!(times.lanes.threads, 1);
    assert_eq!(slots.0[0].most_in_flight.load(Ordering::SeqCst), 1);
    for (slot, want) in slots.0.iter().zip(&images) {
        assert!(slot.bytes.lock().unwrap()[..want.len()] == want[..]);
        assert_eq!(slot.syncs.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_damaged_chunk_fails_whichever_worker_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bundle(dir.path(), Compression::None).bytes;
    let payload: usize = SIZES.iter().sum();
    let payload_start = bytes.len() - payload;
    for workers in 1..=3 {
        for index in 0..5u32 {
            let mut damaged = bytes.clone();
            damaged[payload_start + index as usize * CS as usize + 17] ^= 0x40;
            let mut slots = DirSlots {
                dir: dir.path().to_path_buf(),
            };
            let err = run(&damaged, workers, Verify::Chunks, &mut slots).unwrap_err();
            assert!(
                matches!(
                    err,
                    InstallError::Bundle(BundleError::ChunkHashMismatch { image: 0, index: i, .. })
                        if i == index
                ),
                "{workers} workers, chunk {index}: {err}"
            );
        }
    }
}

/// The check workers' lower priority is theirs alone: the thread that calls it gets
/// nicer, the rest of the process does not.
#[test]
fn only_the_worker_thread_gets_nicer() {
    fn niceness() -> i32 {
        // SAFETY: getpriority takes integers; `who = 0` is the calling thread on Linux.
        unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) }
    }
    let before = niceness();
    let in_worker = std::thread::spawn(move || {
        lower_this_threads_priority();
        niceness()
    })
    .join()
    .unwrap();
    assert_eq!(in_worker, (before + WORKER_NICENESS).min(19));
    assert_eq!(niceness(), before);
}

/// Buffers are allocated for the chunks in flight only: a few per stage, however many
/// chunks the image has, even when the slot is the slow stage.
#[test]
fn buffers_allocated_stay_a_few_chunks_whatever_the_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [200 * CS as usize];
    let Built { bytes, .. } = build(dir.path(), &sizes, Compression::Zstd, &key(7));
    for (workers, write_lanes) in [(2, 2), (4, 3)] {
        let mut slots = SharedSlots::new(None, std::time::Duration::from_micros(200));
        let shape = Shape {
            write_lanes,
            ..Shape::workers(workers)
        };
        let times = stream_with(&bytes, shape, &mut slots).unwrap();
        // Both pools (stored and decompressed bytes) may fill.
        let bound = 2 * buffers_in_flight(workers, write_lanes);
        assert!(
            times.buffers as usize <= bound,
            "{workers} workers, {write_lanes} lanes: {} buffers for 200 chunks (bound {bound})",
            times.buffers
        );
    }
}

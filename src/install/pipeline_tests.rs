//! The pipeline with 1 to [`MAX_WORKERS`] check workers: chunks reach the slot in
//! payload order, and a damaged chunk fails the install whichever worker checks it.
use std::io::Cursor;
use std::path::{Path, PathBuf};

use bascule_hal::FileBlock;

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

fn run(
    bytes: &[u8],
    workers: usize,
    verify: Verify,
    slots: &mut DirSlots,
) -> Result<(), InstallError> {
    let mut reader = BundleReader::open(Cursor::new(bytes), &ring(&[&key(7)]))?;
    let manifest = reader.manifest().clone();
    let run = Run {
        manifest: &manifest,
        target: SlotName::B,
        verify,
        workers,
    };
    run.stream(&mut reader, Some(slots), &mut NoProgress)
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

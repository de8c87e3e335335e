//! The install driver: the one place that moves bytes from a bundle into a slot.
//!
//! Sequence (each step refuses before the next starts):
//! 1. the bundle reader has already checked the signature and decoded the manifest;
//! 2. load the boot environment and plan ([`super::plan`]);
//! 3. commit "target unbootable" to the environment, before its first byte is written;
//! 4. stream: read stored chunk → decode and check the chunk's SHA-256 → write, while
//!    hashing the whole image;
//! 5. per image: compare length and whole-image SHA-256 with the signed manifest, sync;
//! 6. commit "target pending" (one atomic environment write).
//!
//! Any failure after step 3 leaves the target marked unbootable, never pending; the
//! booted slot is never opened for writing. Step 4 is a three-stage pipeline (read,
//! decode+verify, write+hash) over bounded channels, so memory stays a few chunks
//! whatever the image size.
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bascule_hal::{BlockDevice, EnvStore, EnvVars, HalError};
use bascule_partitions::SlotName;

use super::lock::EnvLock;
use super::plan::{plan_install, InstallPlan, PlanInput};
use super::progress::{Phase, Progress};
use super::InstallError;
use crate::bundle::{
    decode_chunk, verify_raw_chunk, BundleReader, ChunkRef, Compression, ImageHasher, Manifest,
};
use crate::slot::{state, BootScheme, BootState};

/// Chunks in flight between two pipeline stages.
const PIPELINE_DEPTH: usize = 3;

/// Where the slots are: opens a slot of a class for writing.
pub trait SlotDevices: Send {
    /// Size of slot `slot` of `class`, or `None` if the device has no such class.
    fn slot_size(&mut self, class: &str, slot: SlotName) -> Result<Option<u64>, HalError>;
    /// Opens slot `slot` of `class` for writing.
    fn open_slot(
        &mut self,
        class: &str,
        slot: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, HalError>;
    /// The names of the slot classes the device has.
    fn classes(&self) -> Vec<String>;
}

/// Choices the operator makes for one install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    pub allow_downgrade: bool,
    pub force: bool,
    pub dry_run: bool,
    pub target: Option<SlotName>,
}

/// What the device contributes to an install.
pub struct InstallTarget<'a> {
    pub env: &'a mut dyn EnvStore,
    pub scheme: &'a dyn BootScheme,
    pub slots: &'a mut dyn SlotDevices,
    pub compatible: &'a str,
    pub booted: SlotName,
    pub attempts: u8,
    pub security_floor: u32,
    /// Directory of the environment lock shared with other bascule processes;
    /// `None` where nothing else can touch the environment (simulations).
    pub env_lock_dir: Option<&'a Path>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub target: SlotName,
    pub version: String,
    pub bytes: u64,
    pub dry_run: bool,
}

/// Installs the bundle behind `reader` into the inactive slot.
pub fn install<R: Read>(
    mut reader: BundleReader<R>,
    mut dev: InstallTarget,
    opts: &InstallOptions,
    progress: &mut dyn Progress,
) -> Result<InstallReport, InstallError> {
    let vars = dev.env.load().map_err(InstallError::EnvLoad)?;
    let boot_state = BootState::read(dev.scheme, &vars)?;
    let manifest = reader.manifest().clone();
    let plan = make_plan(&manifest, &mut dev, &boot_state, opts)?;
    let total: u64 = plan.images.iter().map(|i| i.size).sum();
    if !opts.dry_run {
        update_env(&mut dev, |vars, scheme| {
            state::begin_install(scheme, vars, plan.target)
        })?;
    }
    progress.start(
        if opts.dry_run {
            Phase::Verify
        } else {
            Phase::Write
        },
        total,
    );
    let sink = if opts.dry_run {
        None
    } else {
        Some(&mut *dev.slots)
    };
    stream(&mut reader, &manifest, plan.target, sink, progress)?;
    progress.advance(total);
    progress.finish();
    if !opts.dry_run {
        let attempts = dev.attempts;
        update_env(&mut dev, |vars, scheme| {
            state::mark_pending(scheme, vars, plan.target, &plan.installed, attempts)
        })?;
    }
    Ok(InstallReport {
        target: plan.target,
        version: manifest.version,
        bytes: total,
        dry_run: opts.dry_run,
    })
}

/// One locked read-modify-write of the environment: changes made by other processes
/// since the install started are kept.
fn update_env(
    dev: &mut InstallTarget,
    change: impl FnOnce(&EnvVars, &dyn BootScheme) -> EnvVars,
) -> Result<(), InstallError> {
    let _guard = dev.env_lock_dir.map(EnvLock::acquire).transpose()?;
    let vars = dev.env.load().map_err(InstallError::EnvLoad)?;
    let next = change(&vars, dev.scheme);
    dev.env.commit(&next).map_err(InstallError::EnvCommit)
}

fn make_plan(
    manifest: &Manifest,
    dev: &mut InstallTarget,
    boot_state: &BootState,
    opts: &InstallOptions,
) -> Result<InstallPlan, InstallError> {
    let target = opts.target.unwrap_or(dev.booted.other());
    let mut sizes = Vec::new();
    for image in &manifest.images {
        let size = dev
            .slots
            .slot_size(&image.slot_class, target)
            .map_err(InstallError::slot(target))?;
        sizes.push((image.slot_class.clone(), size));
    }
    let input = PlanInput {
        compatible: dev.compatible,
        booted: dev.booted,
        requested_target: opts.target,
        boot_state,
        security_floor: dev.security_floor,
        allow_downgrade: opts.allow_downgrade,
        force: opts.force,
    };
    let size_of = |class: &str, _slot| sizes.iter().find(|(c, _)| c == class).and_then(|(_, s)| *s);
    Ok(plan_install(
        manifest,
        &input,
        &size_of,
        &dev.slots.classes(),
    )?)
}

struct Decoded {
    chunk: ChunkRef,
    raw: Vec<u8>,
}

/// Runs the read → decode → write pipeline over every chunk of the bundle.
fn stream<R: Read>(
    reader: &mut BundleReader<R>,
    manifest: &Manifest,
    target: SlotName,
    slots: Option<&mut (dyn SlotDevices + '_)>,
    progress: &mut dyn Progress,
) -> Result<(), InstallError> {
    let (stored_tx, stored_rx) = sync_channel::<(ChunkRef, Vec<u8>)>(PIPELINE_DEPTH);
    let (decoded_tx, decoded_rx) = sync_channel::<Decoded>(PIPELINE_DEPTH);
    let (stored_pool_tx, stored_pool_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH * 2 + 2);
    let (raw_pool_tx, raw_pool_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH * 2 + 2);
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
        let writer = scope
            .spawn(move || write_stage(manifest, target, slots, decoded_rx, recycle, written_ref));
        let read_result = read_stage(reader, stored_tx, stored_pool_rx, progress, &written);
        let decode_result = decoder.join().unwrap_or(Err(InstallError::Stopped));
        let write_result = writer.join().unwrap_or(Err(InstallError::Stopped));
        first_cause([read_result, decode_result, write_result])
    })
}

/// The first error that is a cause, not the echo of another stage stopping.
fn first_cause(results: [Result<(), InstallError>; 3]) -> Result<(), InstallError> {
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
    out: SyncSender<(ChunkRef, Vec<u8>)>,
    pool: Receiver<Vec<u8>>,
    progress: &mut dyn Progress,
    written: &AtomicU64,
) -> Result<(), InstallError> {
    loop {
        let mut buf = pool.try_recv().unwrap_or_default();
        let Some(chunk) = reader.next_stored_chunk(&mut buf)? else {
            return Ok(());
        };
        out.send((chunk, buf)).map_err(|_| InstallError::Stopped)?;
        progress.advance(written.load(Ordering::Relaxed));
    }
}

fn decode_stage(
    manifest: &Manifest,
    input: Receiver<(ChunkRef, Vec<u8>)>,
    out: SyncSender<Decoded>,
    stored_pool: SyncSender<Vec<u8>>,
    raw_pool: Receiver<Vec<u8>>,
) -> Result<(), InstallError> {
    for (chunk, stored) in input {
        let entry = &manifest.images[chunk.image];
        let raw = if entry.compression == Compression::None {
            // Stored bytes are the raw bytes: check them in place, forward them.
            verify_raw_chunk(entry, chunk.image, &chunk, &stored)?;
            stored
        } else {
            let mut raw = raw_pool.try_recv().unwrap_or_default();
            decode_chunk(entry, chunk.image, &chunk, &stored, &mut raw)?;
            // The pool is bounded; a full pool only means this buffer is freed instead.
            drop(stored_pool.try_send(stored));
            raw
        };
        out.send(Decoded { chunk, raw })
            .map_err(|_| InstallError::Stopped)?;
    }
    Ok(())
}

/// The image being written: its device (absent in a dry run) and running hash.
struct OpenImage {
    index: usize,
    dev: Option<Box<dyn BlockDevice + Send>>,
    hasher: ImageHasher,
    written: u64,
}

/// Where the writer hands buffers back: uncompressed images reuse the reader's
/// buffers, compressed ones the decoder's.
struct Recycle {
    stored: SyncSender<Vec<u8>>,
    raw: SyncSender<Vec<u8>>,
}

impl Recycle {
    fn give_back(&self, compression: Compression, buf: Vec<u8>) {
        let pool = match compression {
            Compression::None => &self.stored,
            Compression::Zstd => &self.raw,
        };
        // The pool is bounded; a full pool only means this buffer is freed instead.
        drop(pool.try_send(buf));
    }
}

fn write_stage(
    manifest: &Manifest,
    target: SlotName,
    mut slots: Option<&mut (dyn SlotDevices + '_)>,
    input: Receiver<Decoded>,
    recycle: Recycle,
    written: &AtomicU64,
) -> Result<(), InstallError> {
    let mut finished: Vec<usize> = Vec::new();
    let mut current: Option<OpenImage> = None;
    for Decoded { chunk, raw } in input {
        if current.as_ref().map(|c| c.index) != Some(chunk.image) {
            if let Some(done) = current.take() {
                finished.push(finish_image(manifest, target, done)?);
            }
            current = Some(open_image(
                manifest,
                target,
                slots.as_deref_mut(),
                chunk.image,
            )?);
        }
        let open = current.as_mut().ok_or(InstallError::Stopped)?;
        if chunk.offset != open.written {
            return Err(InstallError::OutOfOrder {
                image: chunk.image,
                offset: chunk.offset,
            });
        }
        if let Some(dev) = open.dev.as_mut() {
            dev.write_at(chunk.offset, &raw)
                .map_err(InstallError::slot(target))?;
        }
        open.hasher.update(&raw);
        open.written += raw.len() as u64;
        written.fetch_add(raw.len() as u64, Ordering::Relaxed);
        recycle.give_back(manifest.images[chunk.image].compression, raw);
    }
    if let Some(done) = current.take() {
        finished.push(finish_image(manifest, target, done)?);
    }
    match manifest
        .images
        .iter()
        .enumerate()
        .find(|(i, _)| !finished.contains(i))
    {
        Some((image, entry)) => Err(InstallError::ImageIncomplete {
            image,
            written: 0,
            size: entry.size,
        }),
        None => Ok(()),
    }
}

fn open_image(
    manifest: &Manifest,
    target: SlotName,
    slots: Option<&mut (dyn SlotDevices + '_)>,
    index: usize,
) -> Result<OpenImage, InstallError> {
    let class = &manifest.images[index].slot_class;
    let dev = match slots {
        Some(s) => Some(
            s.open_slot(class, target)
                .map_err(InstallError::slot(target))?,
        ),
        None => None,
    };
    Ok(OpenImage {
        index,
        dev,
        hasher: ImageHasher::new(index),
        written: 0,
    })
}

/// Checks an image's length and SHA-256 against the manifest, then syncs its slot.
fn finish_image(
    manifest: &Manifest,
    target: SlotName,
    mut open: OpenImage,
) -> Result<usize, InstallError> {
    open.hasher.finish(&manifest.images[open.index])?;
    if let Some(dev) = open.dev.as_mut() {
        dev.sync().map_err(InstallError::slot(target))?;
    }
    Ok(open.index)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

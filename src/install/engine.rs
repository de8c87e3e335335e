//! The install driver: the one place that moves bytes from a bundle into a slot.
//!
//! Sequence (each step refuses before the next starts):
//! 1. the bundle reader has already checked the signature and decoded the manifest;
//! 2. load the boot environment and plan ([`super::plan`]);
//! 3. the `pre-install` hook ([`InstallHooks`]); when it fails, nothing has changed;
//! 4. commit "target unbootable" to the environment, before its first byte is written
//!    (re-arming the booted slot in the same write; refused when no slot other than
//!    the target would stay bootable: [`state::begin_install`]);
//! 5. stream: read stored chunk → decode and check the chunk's SHA-256 against the
//!    signed manifest → write at the chunk's offset;
//! 6. per image: every chunk in order and the total length as signed (with
//!    [`Verify::Full`] also a second pass: the whole image's SHA-256), sync;
//! 7. the `post-install` hook;
//! 8. commit "target pending" (one atomic environment write); with
//!    [`InstallOptions::no_activate`] instead: write the record for `bascule activate`
//!    into the state directory ([`super::staged`]), then commit "target staged" (still
//!    unbootable: [`state::mark_staged`]). [`super::activate()`] marks it pending later.
//!
//! Any failure after step 4 (a failed `post-install` hook too) leaves the target marked unbootable, never pending; the
//! booted slot is never opened for writing. Steps 4 and 5 are the
//! `pipeline` (read, decode + chunk check on one worker per core, write,
//! image check) over bounded channels, so memory stays a few chunks whatever the
//! image size.
use std::io::Read;
use std::path::Path;

use bascule_hal::env::EnvFiles;
use bascule_hal::{BlockDevice, EnvStore, EnvVars, HalError};
use bascule_partitions::SlotName;

use super::lock::EnvLock;
use super::pipeline;
use super::plan::{plan_install, InstallPlan, PlanError, PlanInput};
use super::progress::{Phase, Progress};
use super::staged::{self, StagedRecord};
use super::stages::StageTimes;
use super::InstallError;
use crate::bundle::{BundleReader, Manifest};
use crate::hooks::HookFailed;
use crate::slot::{state, BootScheme};

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
    pub verify: Verify,
    /// Write, verify and run `post-install`, but leave the target unbootable and
    /// staged for `bascule activate` (needs [`InstallTarget::state_files`]).
    pub no_activate: bool,
}

/// How much hashing an install does beyond the signature.
///
/// Both modes hash every byte before it is written and refuse the image unless it is
/// exactly the signed one; they differ in whether a second hash pass repeats that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// Every chunk against its signed SHA-256 before it is written, and the image's
    /// chunk count, order and length against the signed manifest. The chunk hashes
    /// are signed and cover every byte of the image once, so under SHA-256's second-
    /// preimage resistance this accepts exactly the image whose SHA-256 is signed;
    /// one hash pass.
    #[default]
    Chunks,
    /// [`Verify::Chunks`], and the whole image's SHA-256 computed again in a second
    /// pass and compared with the signed one: twice the hashing, for defence in depth.
    Full,
}

/// What an install hook is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPoint {
    pub target: SlotName,
    pub booted: SlotName,
    /// The version being installed.
    pub version: String,
    /// The slot classes of the bundle's images, in bundle order.
    pub classes: Vec<String>,
}

/// The operator's commands around the writes (see [`crate::hooks`]); the engine only
/// calls them, at the two points of the sequence above.
pub trait InstallHooks {
    /// Before the target is marked unbootable; a failure stops the install unchanged.
    fn pre_install(&self, at: &HookPoint) -> Result<(), HookFailed>;
    /// After the images are written, verified and synced, before the target is marked
    /// pending; a failure leaves the target unbootable.
    fn post_install(&self, at: &HookPoint) -> Result<(), HookFailed>;
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
    /// The hooks to run; `None` runs none.
    pub hooks: Option<&'a dyn InstallHooks>,
    /// The state directory, where `--no-activate` keeps its record for `activate`
    /// ([`super::staged`]); `None` when the caller stages nothing.
    pub state_files: Option<&'a mut dyn EnvFiles>,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub target: SlotName,
    pub version: String,
    pub bytes: u64,
    pub dry_run: bool,
    /// Left unbootable and staged for `bascule activate` (`--no-activate`).
    pub staged: bool,
    /// Where the streaming part's time went, stage by stage.
    pub stages: StageTimes,
}

/// Installs the bundle behind `reader` into the inactive slot.
pub fn install<R: Read>(
    mut reader: BundleReader<R>,
    mut dev: InstallTarget,
    opts: &InstallOptions,
    progress: &mut dyn Progress,
) -> Result<InstallReport, InstallError> {
    let staging = opts.no_activate && !opts.dry_run;
    if staging && dev.state_files.is_none() {
        return Err(InstallError::NoStateDir);
    }
    let vars = dev.env.load().map_err(InstallError::EnvLoad)?;
    let manifest = reader.manifest().clone();
    let head = staging.then(|| reader.head_bytes());
    let manifest_sha256 = manifest_sha256(reader.manifest_bytes());
    let plan = make_plan(&manifest, &mut dev, &vars, opts)?;
    let total: u64 = plan.images.iter().map(|i| i.size).sum();
    let (booted, attempts) = (dev.booted, dev.attempts);
    let point = HookPoint {
        target: plan.target,
        booted,
        version: manifest.version.clone(),
        classes: manifest
            .images
            .iter()
            .map(|i| i.slot_class.clone())
            .collect(),
    };
    let hooks = dev.hooks.filter(|_| !opts.dry_run);
    if let Some(hooks) = hooks {
        hooks
            .pre_install(&point)
            .map_err(InstallError::PreInstallHook)?;
    }
    let marked = if opts.dry_run {
        None
    } else {
        Some(update_env(&mut dev, |vars, scheme| {
            let begun = state::begin_install(scheme, vars, plan.target, booted, attempts)
                .map_err(PlanError::from)?;
            Ok::<_, InstallError>((begun.vars, begun.marked))
        })?)
    };
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
    let stages = pipeline::stream(
        &mut reader,
        &manifest,
        plan.target,
        sink,
        opts.verify,
        progress,
    )?;
    progress.advance(total);
    progress.finish();
    if let Some(hooks) = hooks {
        hooks
            .post_install(&point)
            .map_err(|source| InstallError::PostInstallHook {
                slot: plan.target,
                source,
            })?;
    }
    if let Some(marked) = marked {
        finish(&mut dev, marked, head, &plan, opts, &manifest_sha256)?;
    }
    Ok(InstallReport {
        target: plan.target,
        version: manifest.version,
        bytes: total,
        dry_run: opts.dry_run,
        staged: staging,
        stages,
    })
}

/// Step 8: the written target becomes pending, or with `--no-activate` (`head` is the
/// bundle head to record) staged.
fn finish(
    dev: &mut InstallTarget,
    marked: state::TargetMarkedBad,
    head: Option<Vec<u8>>,
    plan: &InstallPlan,
    opts: &InstallOptions,
    manifest_sha256: &str,
) -> Result<(), InstallError> {
    let (target, booted, attempts) = (plan.target, dev.booted, dev.attempts);
    if let Some(head) = head {
        let record = StagedRecord::new(target, booted, opts.allow_downgrade, opts.force, head);
        return stage(dev, &record, &marked, manifest_sha256);
    }
    update_env(dev, |vars, scheme| {
        let mut next = state::mark_pending(scheme, vars, &marked, &plan.installed, attempts);
        state::set_manifest(&mut next, target, manifest_sha256);
        Ok::<_, InstallError>((next, ()))
    })
}

/// `--no-activate`'s last steps: the record for `activate` (durable, atomically
/// replaced), then one env commit naming the slot staged. A power cut between the two
/// leaves a record the environment does not confirm, which `activate` refuses; the
/// slot stays unbootable either way.
fn stage(
    dev: &mut InstallTarget,
    record: &StagedRecord,
    marked: &state::TargetMarkedBad,
    manifest_sha256: &str,
) -> Result<(), InstallError> {
    let files = dev
        .state_files
        .as_deref_mut()
        .ok_or(InstallError::NoStateDir)?;
    staged::save(files, record).map_err(|source| InstallError::StagedRecord {
        slot: marked.target(),
        source,
    })?;
    update_env(dev, |vars, _| {
        Ok::<_, InstallError>((state::mark_staged(vars, marked, manifest_sha256), ()))
    })
}

/// One locked read-modify-write of the environment: changes made by other processes
/// since the install started are kept. `change` may refuse; then nothing is written.
pub(super) fn update_env<T, E: From<InstallError>>(
    dev: &mut InstallTarget,
    change: impl FnOnce(&EnvVars, &dyn BootScheme) -> Result<(EnvVars, T), E>,
) -> Result<T, E> {
    let _guard = dev.env_lock_dir.map(EnvLock::acquire).transpose()?;
    let vars = dev.env.load().map_err(InstallError::EnvLoad)?;
    let (next, proof) = change(&vars, dev.scheme)?;
    dev.env.commit(&next).map_err(InstallError::EnvCommit)?;
    Ok(proof)
}

pub(super) fn make_plan(
    manifest: &Manifest,
    dev: &mut InstallTarget,
    vars: &EnvVars,
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
        scheme: dev.scheme,
        vars,
        attempts: dev.attempts,
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

/// Lower-case hex of `bytes`.
/// The release's identity: the SHA-256 (hex) of its signed manifest bytes.
pub fn manifest_sha256(manifest_bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(manifest_bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

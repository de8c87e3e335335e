//! `bascule activate`: marks the slot an `install --no-activate` wrote pending,
//! without writing it again: the "install now, reboot in the maintenance window" flow.
//!
//! Sequence (each step refuses before the next starts; nothing is written before the
//! last one):
//! 1. read the record from the state directory ([`super::staged`]);
//! 2. authenticate its bundle head against the keyring as it is *now*
//!    ([`BundleReader::open`]: signature over the raw manifest bytes, then decode);
//! 3. the slot running now is the one that ran when the slot was written;
//! 4. the environment shows the slot staged with that manifest and still unbootable
//!    ([`state::staged_target`]: not installed over, not revived, not activated);
//! 5. the install's plan checks again, with the install's own `--allow-downgrade` and
//!    `--force` (compatible, security floor, downgrade, `min_from_version`, a slot
//!    other than the target stays bootable);
//! 6. the slot's content against the manifest's signed chunk and image hashes
//!    (`super::readback`);
//! 7. under the environment lock: step 4 again on the environment as it is then,
//!    which yields the [`state::TargetMarkedBad`] proof, and one commit marking the
//!    slot pending ([`state::mark_pending`]) with its version and manifest.
//!
//! Hooks: none run. `post-install` ran when the slot was written (its migration saw
//! the slot then, and nothing has written it since: step 6); `pre-install` guards a
//! write and there is none; `post-commit` runs as always when the slot, once booted,
//! is confirmed.
use std::io::Cursor;

use bascule_hal::HalError;
use bascule_partitions::SlotName;

use super::engine::{make_plan, manifest_sha256, update_env, InstallOptions, InstallTarget};
use super::plan::PlanError;
use super::readback::verify_written;
use super::staged::{self, RecordError, StagedRecord};
use super::InstallError;
use crate::bundle::{BundleError, BundleReader, Keyring};
use crate::slot::state::{self, NotStaged};

/// Why `activate` refused or failed. Each refusal leaves the environment untouched.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error(
        "nothing to activate: no record of an `install --no-activate` in {path}; install \
         the bundle with --no-activate first"
    )]
    NoRecord { path: String },
    #[error("cannot read the record of the staged install {path}: {source}")]
    RecordRead { path: String, source: HalError },
    #[error(
        "the record of the staged install {path} is damaged ({source}); install the bundle again"
    )]
    RecordDamaged { path: String, source: RecordError },
    #[error("the staged release no longer verifies with this device's keyring: {0}")]
    Signature(BundleError),
    #[error(
        "slot {target} was written while slot {recorded} ran, but slot {now} runs now: the \
         checks made then do not hold; install the bundle again"
    )]
    BootedChanged {
        target: SlotName,
        recorded: SlotName,
        now: SlotName,
    },
    #[error("activate refused: {0}")]
    NotStaged(#[from] NotStaged),
    #[error("activate refused: {0}")]
    Plan(PlanError),
    #[error(
        "slot {class}.{slot} no longer holds the staged release ({source}): it changed after \
         it was written; install the bundle again"
    )]
    SlotChanged {
        slot: SlotName,
        class: String,
        source: BundleError,
    },
    #[error("cannot read slot {class}.{slot} back: {source}")]
    SlotRead {
        slot: SlotName,
        class: String,
        source: HalError,
    },
    #[error("activate needs the state directory, where install --no-activate keeps its record")]
    NoStateDir,
    #[error(transparent)]
    Install(#[from] InstallError),
}

/// What `activate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateReport {
    pub target: SlotName,
    pub version: String,
    /// SHA-256 (hex) of the signed manifest now pending.
    pub manifest_sha256: String,
}

/// Marks the slot the record in `dev.state_files` describes pending (module docs).
/// `dev.hooks` is not used.
pub fn activate(
    mut dev: InstallTarget,
    keyring: &Keyring,
) -> Result<ActivateReport, ActivateError> {
    let record = load_record(&mut dev)?;
    let target = record.meta.target;
    let reader = BundleReader::open(Cursor::new(&record.head[..]), keyring)
        .map_err(ActivateError::Signature)?;
    let manifest = reader.manifest();
    let sha = manifest_sha256(reader.manifest_bytes());
    if record.meta.booted != dev.booted {
        return Err(ActivateError::BootedChanged {
            target,
            recorded: record.meta.booted,
            now: dev.booted,
        });
    }
    let vars = dev.env.load().map_err(InstallError::EnvLoad)?;
    state::staged_target(dev.scheme, &vars, target, dev.booted, &sha)?;
    let opts = InstallOptions {
        allow_downgrade: record.meta.allow_downgrade,
        force: record.meta.force,
        target: Some(target),
        ..InstallOptions::default()
    };
    let plan = make_plan(manifest, &mut dev, &vars, &opts).map_err(|e| match e {
        InstallError::Plan(plan) => ActivateError::Plan(plan),
        other => ActivateError::Install(other),
    })?;
    verify_written(manifest, target, dev.slots)?;
    let (booted, attempts) = (dev.booted, dev.attempts);
    update_env(&mut dev, |vars, scheme| {
        let marked = state::staged_target(scheme, vars, target, booted, &sha)?;
        let mut next = state::mark_pending(scheme, vars, &marked, &plan.installed, attempts);
        state::set_manifest(&mut next, target, &sha);
        Ok::<_, ActivateError>((next, ()))
    })?;
    Ok(ActivateReport {
        target,
        version: manifest.version.clone(),
        manifest_sha256: sha,
    })
}

fn load_record(dev: &mut InstallTarget) -> Result<StagedRecord, ActivateError> {
    let files = dev
        .state_files
        .as_deref_mut()
        .ok_or(ActivateError::NoStateDir)?;
    let path = files.path_of(staged::STAGED_FILE);
    let bytes = staged::read(files)
        .map_err(|source| ActivateError::RecordRead {
            path: path.clone(),
            source,
        })?
        .ok_or_else(|| ActivateError::NoRecord { path: path.clone() })?;
    StagedRecord::decode(&bytes).map_err(|source| ActivateError::RecordDamaged { path, source })
}

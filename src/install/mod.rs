//! The install engine: plan an install from a verified manifest, then stream the
//! payload into the inactive slot and mark it pending.
//!
//! [`plan`] is pure (manifest + device state → plan or refusal); [`engine`] is the
//! single driver that does I/O, over `hal` traits; [`lock`] keeps two installs from
//! running at once; [`progress`] renders progress for people and machines.
//! `install --no-activate` leaves the written slot unbootable and staged, with a
//! record in the state directory ([`staged`]); [`activate()`] later checks the record,
//! the environment and the slot's content (`readback`) and marks it pending.
pub mod activate;
mod buffers;
pub mod engine;
pub mod lock;
pub(crate) mod pipeline;
pub mod plan;
pub mod progress;
pub(crate) mod readback;
pub mod staged;
mod stages;
mod write;

use bascule_hal::HalError;
use bascule_partitions::SlotName;

pub use activate::{activate, ActivateError, ActivateReport};
pub use engine::{
    hex, install, manifest_sha256, HookPoint, InstallHooks, InstallOptions, InstallReport,
    InstallTarget, SlotDevices, Verify,
};
pub use plan::{plan_install, InstallPlan, PlanError, PlanInput};
pub use progress::{BarProgress, JsonProgress, LogProgress, NoProgress, Phase, Progress};
pub use stages::{StageTime, StageTimes};

use crate::bundle::BundleError;
use crate::slot::SchemeError;

/// Why an install failed. After the target was marked unbootable, a failure leaves it
/// so: never pending.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("install refused: {0}")]
    Plan(#[from] PlanError),
    #[error("boot environment is not usable: {0}")]
    Scheme(#[from] SchemeError),
    #[error("cannot read the boot environment: {0}")]
    EnvLoad(HalError),
    #[error("cannot write the boot environment: {0}")]
    EnvCommit(HalError),
    #[error("slot {slot}: {source}")]
    Slot { slot: SlotName, source: HalError },
    #[error("image {image}: chunk at offset {offset} arrived out of order")]
    OutOfOrder { image: usize, offset: u64 },
    #[error("image {image}: {written} of {size} bytes written when the payload ended")]
    ImageIncomplete {
        image: usize,
        written: u64,
        size: u64,
    },
    #[error("another install is running (lock {path} held{holder})")]
    Locked { path: String, holder: String },
    #[error("cannot take the install lock {path}: {message}")]
    LockIo { path: String, message: String },
    #[error(
        "install --no-activate needs the state directory to keep its record for `bascule activate`"
    )]
    NoStateDir,
    #[error(
        "slot {slot} was written and verified, but the record for `bascule activate` could not \
         be written ({source}); it stays unbootable: install it again"
    )]
    StagedRecord { slot: SlotName, source: HalError },
    #[error("install stopped before anything was written: {0}")]
    PreInstallHook(crate::hooks::HookFailed),
    #[error("slot {slot} was written and verified, but it stays unbootable: {source}")]
    PostInstallHook {
        slot: SlotName,
        source: crate::hooks::HookFailed,
    },
    /// A pipeline stage stopped because another one failed; never the reported cause
    /// when a cause is known.
    #[error("install pipeline stopped")]
    Stopped,
}

impl InstallError {
    /// Maps a hal error on slot `slot`.
    pub fn slot(slot: SlotName) -> impl Fn(HalError) -> InstallError {
        move |source| InstallError::Slot { slot, source }
    }
}

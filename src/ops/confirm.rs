//! `mark-good` and `mark-bad`: confirming the booted slot (which raises the security
//! floor), reviving a slot with `--force`, and taking a slot out of the boot order.
use bascule_hal::{EnvStore, EnvVars, SecurityFloorStore};
use bascule_partitions::SlotName;

use crate::device::{Device, DeviceError};
use crate::health;
use crate::hooks::HookFailed;
use crate::install::lock::{EnvLock, InstallLock};
use crate::slot::{state, BadReason, BootScheme, BootState, SlotInfo, SlotState};
use crate::Error;

use super::SlotSelector;

/// What `mark-good` did to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoodOutcome {
    /// The booted slot confirmed itself. The security floor went from `floor.0` to
    /// `floor.1` (equal when it did not rise).
    Confirmed { floor: (u32, u32) },
    /// A slot that is not booted and was already good: at most its tries re-armed.
    /// The floor is untouched (the slot did not prove itself by booting now).
    AlreadyGood,
    /// A slot that is not booted and was not good went back on trial (`--force`):
    /// primary with `tries` fresh tries. The floor stays at `floor` until it boots and
    /// confirms itself.
    Revived {
        was: SlotState,
        version: String,
        tries: u8,
        floor: u32,
    },
}

/// The result of `mark-good`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedGood {
    pub slot: SlotName,
    /// Whether the environment was written.
    pub written: bool,
    pub outcome: GoodOutcome,
    /// The `post-commit` hook's failure, when the confirmation committed a release and
    /// the hook failed (recorded in the history; the confirmation stands).
    pub post_commit: Option<HookFailed>,
}

/// Marks a slot good. The booted slot is confirmed, and only then (after the env
/// commit) the security floor rises to its security version: the only way a slot
/// raises the floor is by booting and confirming itself. Any other slot never raises
/// it; one that is not good (rolled back, marked bad, pending) goes back on trial
/// with fresh tries, and only with `force`.
pub fn mark_good(dev: &mut Device, which: SlotSelector, force: bool) -> Result<MarkedGood, Error> {
    let slot = which.resolve(dev)?;
    if dev.booted().ok() == Some(slot) {
        return confirm_booted(dev, slot);
    }
    // Installs never write the booted slot; any other slot may be mid-write.
    let _install = InstallLock::acquire(&dev.config.state_dir)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    let boot_state = BootState::read(dev.scheme.as_ref(), &vars)?;
    let info = boot_state.slot(slot);
    if info.state == SlotState::Good {
        let next = state::confirm(dev.scheme.as_ref(), &vars, slot, dev.config.boot.attempts);
        let written = commit_change(dev.env.as_mut(), &vars, next)?;
        let outcome = GoodOutcome::AlreadyGood;
        return Ok(MarkedGood {
            slot,
            written,
            outcome,
            post_commit: None,
        });
    }
    revive(dev, &vars, info, force)
}

/// Confirms the booted slot, then raises the floor to its security version.
fn confirm_booted(dev: &mut Device, slot: SlotName) -> Result<MarkedGood, Error> {
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let attempts = dev.config.boot.attempts;
    let done = confirm_and_raise_floor(
        dev.env.as_mut(),
        dev.floor.as_mut(),
        dev.scheme.as_ref(),
        slot,
        attempts,
    )?;
    let post_commit = health::post_commit(dev, slot, &done);
    Ok(MarkedGood {
        slot,
        written: done.written,
        outcome: GoodOutcome::Confirmed { floor: done.floor },
        post_commit,
    })
}

/// What [`confirm_and_raise_floor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// Whether the environment was written.
    pub written: bool,
    /// The floor before and after.
    pub floor: (u32, u32),
    /// Whether the slot was pending before: this confirmation committed its release
    /// (the `post-commit` hook runs).
    pub committed: bool,
}

/// Confirms `slot`, which booted and proved healthy, then raises the security floor
/// to its security version. The one order every confirmation takes: the env commit
/// is durable before the floor rises, so a power cut between the two leaves a
/// confirmed slot and the old floor (the next confirmation raises it), never a floor
/// raised for a slot that is not confirmed. Refuses when the scheme would still not
/// boot `slot`. The caller holds the env lock and knows `slot` is the booted one.
pub fn confirm_and_raise_floor(
    env: &mut dyn EnvStore,
    floor: &mut dyn SecurityFloorStore,
    scheme: &dyn BootScheme,
    slot: SlotName,
    attempts: u8,
) -> Result<Confirmation, Error> {
    let vars = env.load()?;
    let boot_state = BootState::read(scheme, &vars)?;
    let next = state::confirm(scheme, &vars, slot, attempts);
    let after = BootState::read(scheme, next.as_ref().unwrap_or(&vars))?;
    if after.slot(slot).state != SlotState::Good {
        return Err(Error::Refused(format!(
            "cannot mark slot {slot} good: it is {} and the bootloader would still not boot it; \
             install a bundle into it instead",
            boot_state.slot(slot).state
        )));
    }
    let floor_err = |e| Error::Device(DeviceError::Floor(e));
    let before = floor.read().map_err(floor_err)?;
    let written = commit_change(env, &vars, next)?;
    let mut now = before;
    if let Some(secver) = boot_state.slot(slot).security_version {
        if floor.raise(secver).map_err(floor_err)? {
            now = secver;
        }
    }
    Ok(Confirmation {
        written,
        floor: (before, now),
        committed: matches!(boot_state.slot(slot).state, SlotState::Pending { .. }),
    })
}

/// Puts a slot that is not booted and not good back on trial, with `force` only.
fn revive(
    dev: &mut Device,
    vars: &EnvVars,
    info: &SlotInfo,
    force: bool,
) -> Result<MarkedGood, Error> {
    let slot = info.slot;
    let (Some(version), Some(security_version)) = (&info.version, info.security_version) else {
        return Err(Error::Refused(format!(
            "cannot mark slot {slot} good: it is {} and bascule does not know what it holds \
             (an install into it did not finish); install a bundle into it instead",
            info.state
        )));
    };
    let tries = dev.config.boot.attempts;
    let floor = dev.security_floor()?;
    let what = format!(
        "slot {slot} (v{version}) {}; --force makes it primary with {tries} fresh tries; the \
         security floor ({floor}) is not raised until it boots and confirms itself",
        why_not_good(&info.state)
    );
    if !force {
        return Err(Error::Refused(format!("refusing to mark-good: {what}")));
    }
    let image = state::InstalledImage {
        version: version.clone(),
        security_version,
    };
    let next = state::retry(dev.scheme.as_ref(), vars, slot, &image, tries);
    let after = BootState::read(dev.scheme.as_ref(), &next)?;
    if !matches!(after.slot(slot).state, SlotState::Pending { .. }) {
        return Err(Error::Refused(format!(
            "cannot put slot {slot} back on trial: the boot scheme would leave it {}",
            after.slot(slot).state
        )));
    }
    dev.env.commit(&next)?;
    let outcome = GoodOutcome::Revived {
        was: info.state.clone(),
        version: version.clone(),
        tries,
        floor,
    };
    Ok(MarkedGood {
        slot,
        written: true,
        outcome,
        post_commit: None,
    })
}

/// Why a slot that is not good is not, in words for `mark-good`'s messages.
fn why_not_good(state: &SlotState) -> String {
    match state {
        SlotState::Bad {
            reason: BadReason::TriesExhausted,
        } => "rolled back after its tries ran out".into(),
        SlotState::Pending { tries_left } => {
            format!("is on trial ({tries_left} tries left) and has not confirmed itself by booting")
        }
        other => format!("is {other}"),
    }
}

/// Commits `next`; with no change, still rewrites `vars` when the store read them from
/// a fallback (the main copy is unreadable and this commit repairs it). Returns
/// whether the environment was written.
fn commit_change(
    env: &mut dyn EnvStore,
    vars: &EnvVars,
    next: Option<EnvVars>,
) -> Result<bool, Error> {
    let next = match next {
        Some(next) => next,
        None if env.degraded().is_some() => vars.clone(),
        None => return Ok(false),
    };
    env.commit(&next)?;
    Ok(true)
}

/// Marks a slot bad. Returns whether the environment was written.
pub fn mark_bad(dev: &mut Device, which: SlotSelector) -> Result<(SlotName, bool), Error> {
    let slot = which.resolve(dev)?;
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    BootState::read(dev.scheme.as_ref(), &vars)?;
    let next = state::mark_bad_keeping_one(dev.scheme.as_ref(), &vars, slot, dev.booted().ok())
        .map_err(|e| Error::Refused(e.to_string()))?;
    let written = commit_change(dev.env.as_mut(), &vars, next)?;
    Ok((slot, written))
}

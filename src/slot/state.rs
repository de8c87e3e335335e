//! The slot state machine: what each slot is (good, pending, bad), and the state
//! changes the updater makes, each computed as one whole new environment.
//!
//! Pure logic over [`EnvVars`]: nothing here reads or writes a device. Every change
//! returns the complete new variable set so the caller commits it with a single
//! atomic [`bascule_hal::EnvStore::commit`]; a change that would not alter anything
//! returns `None` so no flash write is spent on it.
//!
//! bascule keeps its own facts beside the bootloader's variables, in the same atomic
//! write: `BASCULE_PENDING` (the slots on trial, space-separated; two only after an
//! install with `--force` while the booted slot was itself on trial), `BASCULE_<x>_VERSION` and
//! `BASCULE_<x>_SECVER` (what was installed into each slot), and `BASCULE_STAGED`
//! (the slot `install --no-activate` wrote, waiting for `bascule activate`: see
//! `staged`).
use std::fmt;

use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use serde::Serialize;

use super::scheme::{BootScheme, SchemeError, SchemeView};

const PENDING_VAR: &str = "BASCULE_PENDING";

/// The slots on trial that `BASCULE_PENDING` names.
fn pending_slots(vars: &EnvVars) -> Vec<SlotName> {
    vars.get(PENDING_VAR).map_or_else(Vec::new, |v| {
        v.to_string()
            .split_whitespace()
            .filter_map(|w| w.parse::<SlotName>().ok())
            .collect()
    })
}

/// Writes `BASCULE_PENDING` with `slot` added (`on_trial`) or removed; no variable
/// when no slot is on trial.
fn set_on_trial(vars: &mut EnvVars, slot: SlotName, on_trial: bool) {
    let mut slots = pending_slots(vars);
    slots.retain(|s| *s != slot);
    if on_trial {
        slots.insert(0, slot);
    }
    if slots.is_empty() {
        vars.remove(PENDING_VAR);
    } else {
        let words: Vec<&str> = slots.iter().map(|s| s.as_str()).collect();
        vars.insert(PENDING_VAR, words.join(" "));
    }
}

fn version_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_VERSION")
}

fn secver_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_SECVER")
}

fn manifest_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_MANIFEST")
}

/// Records the SHA-256 (hex) of the signed manifest of the release installed in
/// `slot`: the release's identity, which the health history and the quarantine use.
/// Set in the same env commit that marks the slot pending.
pub fn set_manifest(vars: &mut EnvVars, slot: SlotName, sha256_hex: &str) {
    vars.insert(manifest_var(slot), sha256_hex);
}

/// What a slot is, as the bootloader and bascule see it together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SlotState {
    /// Confirmed good: the bootloader keeps booting it.
    Good,
    /// Confirmed, and running now, but this boot spent its last try (GRUB's `TRY=1`
    /// after any boot; U-Boot after `attempts` boots without a confirm): unless it is
    /// confirmed again, the next boot skips it.
    Unarmed,
    /// Installed and on trial: the bootloader tries it `tries_left` more times. A
    /// booted slot with 0 tries left is running its last try.
    Pending { tries_left: u8 },
    /// The bootloader will not boot it.
    Bad { reason: BadReason },
}

/// Why a slot is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    /// Not in the boot order (marked bad, or being written).
    NotInBootOrder,
    /// It was on trial and used up its tries without being confirmed: a rollback.
    TriesExhausted,
    /// In the boot order but with no tries left.
    NoTriesLeft,
    /// Made unbootable on purpose: marked bad, or being written (GRUB's `x_OK=0`).
    MarkedBad,
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotState::Good => f.write_str("good"),
            SlotState::Unarmed => f.write_str(
                "good, but this boot spent its last try: confirm it again (mark-good), \
                 or the next boot skips it",
            ),
            SlotState::Pending { tries_left: 0 } => f.write_str(
                "pending, running its last try: confirm it now, or the next boot falls back",
            ),
            SlotState::Pending { tries_left } => write!(f, "pending ({tries_left} tries left)"),
            SlotState::Bad {
                reason: BadReason::NotInBootOrder,
            } => f.write_str("bad (not in boot order)"),
            SlotState::Bad {
                reason: BadReason::TriesExhausted,
            } => f.write_str("bad (rolled back: tries ran out before it was confirmed)"),
            SlotState::Bad {
                reason: BadReason::NoTriesLeft,
            } => f.write_str("bad (no tries left)"),
            SlotState::Bad {
                reason: BadReason::MarkedBad,
            } => f.write_str("bad (marked unbootable)"),
        }
    }
}

/// Everything known about one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    pub slot: SlotName,
    #[serde(flatten)]
    pub state: SlotState,
    /// The slot the bootloader boots next: the first bootable one in the order.
    pub primary: bool,
    /// The version bascule installed there, if it knows.
    pub version: Option<String>,
    /// The security version of that install.
    pub security_version: Option<u32>,
    /// The SHA-256 (hex) of that install's signed manifest, when recorded.
    pub manifest: Option<String>,
    /// Written and verified by `install --no-activate`, still unbootable, waiting
    /// for `bascule activate` (`staged`).
    pub staged: bool,
}

/// The boot state of an A/B pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    pub view: SchemeView,
    /// The slots on trial (installed, not yet confirmed), newest first.
    pub pending: Vec<SlotName>,
    pub slots: [SlotInfo; 2],
}

impl BootState {
    /// Interprets `vars` with `scheme`, not knowing which slot runs.
    pub fn read(scheme: &dyn BootScheme, vars: &EnvVars) -> Result<BootState, SchemeError> {
        Self::read_with(scheme, vars, None)
    }

    /// Interprets `vars` with `scheme` on a device running `booted`: the booted slot's
    /// spent try is this boot's, so it is reported as running, not as rolled back.
    pub fn read_running(
        scheme: &dyn BootScheme,
        vars: &EnvVars,
        booted: SlotName,
    ) -> Result<BootState, SchemeError> {
        Self::read_with(scheme, vars, Some(booted))
    }

    fn read_with(
        scheme: &dyn BootScheme,
        vars: &EnvVars,
        booted: Option<SlotName>,
    ) -> Result<BootState, SchemeError> {
        let view = scheme.read(vars)?;
        let pending = pending_slots(vars);
        let info = |slot: SlotName| {
            let state = slot_state(&view, pending.contains(&slot), slot, booted == Some(slot));
            let staged = staged_slot(vars) == Some(slot) && matches!(state, SlotState::Bad { .. });
            SlotInfo {
                slot,
                state,
                staged,
                primary: view.order.iter().find(|s| view.bootable(**s)) == Some(&slot),
                version: vars.get(&version_var(slot)).map(ToString::to_string),
                security_version: vars.get_str(&secver_var(slot)).and_then(|v| v.parse().ok()),
                manifest: vars.get_str(&manifest_var(slot)).map(ToString::to_string),
            }
        };
        let slots = [info(SlotName::A), info(SlotName::B)];
        Ok(BootState {
            view,
            pending,
            slots,
        })
    }

    /// The info of `slot`.
    pub fn slot(&self, slot: SlotName) -> &SlotInfo {
        &self.slots[slot.index()]
    }

    /// Whether the bootloader would boot some slot other than `slot`.
    pub fn other_bootable(&self, slot: SlotName) -> bool {
        self.view.bootable(slot.other())
    }
}

fn slot_state(view: &SchemeView, on_trial: bool, slot: SlotName, booted: bool) -> SlotState {
    let tries_left = view.tries[slot.index()];
    if !view.order.contains(&slot) {
        // ChromeOS firmware drops a slot from the order on its last try.
        return match (on_trial && tries_left == 0, booted) {
            (true, true) => SlotState::Pending { tries_left: 0 },
            (true, false) => SlotState::Bad {
                reason: BadReason::TriesExhausted,
            },
            (false, _) => SlotState::Bad {
                reason: BadReason::NotInBootOrder,
            },
        };
    }
    if view.disabled[slot.index()] {
        return SlotState::Bad {
            reason: BadReason::MarkedBad,
        };
    }
    match (on_trial, tries_left, booted) {
        (true, 0, false) => SlotState::Bad {
            reason: BadReason::TriesExhausted,
        },
        (true, n, _) => SlotState::Pending { tries_left: n },
        (false, 0, true) => SlotState::Unarmed,
        (false, 0, false) => SlotState::Bad {
            reason: BadReason::NoTriesLeft,
        },
        (false, _, _) => SlotState::Good,
    }
}

/// What the bootloader does at the next power-on, predicted from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NextBoot {
    /// The slot it boots; `None` when it finds none even after resetting (a brick).
    pub slot: Option<SlotName>,
    /// Whether it first finds no slot, resets the counters and the board.
    pub after_reset: bool,
}

/// Runs the bootloader's decision on a copy of `vars`: the next power-on.
pub fn predict_next_boot(scheme: &dyn BootScheme, vars: &EnvVars) -> NextBoot {
    let mut copy = vars.clone();
    for after_reset in [false, true] {
        if let super::scheme::BootDecision::Boot(slot) = scheme.boot(&mut copy) {
            return NextBoot {
                slot: Some(slot),
                after_reset,
            };
        }
    }
    NextBoot {
        slot: None,
        after_reset: true,
    }
}

/// What an install writes into the environment when it finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledImage {
    pub version: String,
    pub security_version: u32,
}

/// Proof that an install's target was made unbootable while another slot stays
/// bootable: only [`begin_install`] makes one, and [`mark_pending`] takes it, so a
/// slot cannot be marked pending without having been marked bad first, and no
/// install can begin that leaves nothing to fall back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMarkedBad {
    target: SlotName,
}

impl TargetMarkedBad {
    /// The slot being written.
    pub fn target(&self) -> SlotName {
        self.target
    }
}

/// The environment that begins an install, and the proof it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginInstall {
    /// The whole new environment: commit it before the first byte is written.
    pub vars: EnvVars,
    pub marked: TargetMarkedBad,
}

/// An install that would leave no slot but its target bootable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to write slot {target}: while it is written no other slot would be bootable \
     (slot {fallback} is {fallback_state}); a power cut would leave nothing to boot. \
     Make slot {fallback} bootable first (bascule mark-good {fallback})"
)]
pub struct NoFallback {
    pub target: SlotName,
    pub fallback: SlotName,
    pub fallback_state: SlotState,
}

/// Before the first byte of `target` is written: the bootloader must not boot it,
/// bascule forgets what was installed there, and the running slot `booted`, when it
/// is confirmed, is re-armed (its tries restored) in the same write, so a broken
/// update falls back to it after its own tries and is never retried after a counter
/// reset. Refuses when no slot other than `target` would stay bootable.
pub fn begin_install(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    target: SlotName,
    booted: SlotName,
    attempts: u8,
) -> Result<BeginInstall, NoFallback> {
    let before = BootState::read_running(scheme, vars, booted).ok();
    let confirmed = before
        .as_ref()
        .is_some_and(|st| matches!(st.slot(booted).state, SlotState::Good | SlotState::Unarmed));
    let mut next = vars.clone();
    if confirmed && booted != target {
        scheme.set_good(&mut next, booted, attempts);
    }
    scheme.set_bad(&mut next, target);
    next.remove(&version_var(target));
    next.remove(&secver_var(target));
    next.remove(&manifest_var(target));
    set_on_trial(&mut next, target, false);
    staged::unstage(&mut next, target);
    let after = BootState::read_running(scheme, &next, booted).ok();
    if !after.as_ref().is_some_and(|st| st.other_bootable(target)) {
        let fallback = target.other();
        let fallback_state = before.map_or(
            SlotState::Bad {
                reason: BadReason::NotInBootOrder,
            },
            |st| st.slot(fallback).state.clone(),
        );
        return Err(NoFallback {
            target,
            fallback,
            fallback_state,
        });
    }
    Ok(BeginInstall {
        vars: next,
        marked: TargetMarkedBad { target },
    })
}

/// After the whole image was verified and synced: the target that `marked` proves
/// unbootable becomes primary and on trial with `attempts` tries.
pub fn mark_pending(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    marked: &TargetMarkedBad,
    image: &InstalledImage,
    attempts: u8,
) -> EnvVars {
    put_on_trial(scheme, vars, marked.target, image, attempts)
}

/// Puts `slot`, which holds the recorded release `image` and is not written now,
/// back on trial: primary, pending, `attempts` fresh tries (`mark-good --force` of a
/// slot that rolled back). Nothing is written to the slot, so no [`TargetMarkedBad`]
/// is needed; the caller checks that `image` is what bascule recorded there.
pub fn retry(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    slot: SlotName,
    image: &InstalledImage,
    attempts: u8,
) -> EnvVars {
    put_on_trial(scheme, vars, slot, image, attempts)
}

fn put_on_trial(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    slot: SlotName,
    image: &InstalledImage,
    attempts: u8,
) -> EnvVars {
    let mut next = vars.clone();
    scheme.set_primary(&mut next, slot, attempts);
    set_on_trial(&mut next, slot, true);
    staged::unstage(&mut next, slot);
    next.insert(version_var(slot), image.version.clone());
    next.insert(secver_var(slot), image.security_version.to_string());
    next
}

/// The running slot is healthy: it stays the boot choice. `None` when nothing
/// changes (an already confirmed slot with full tries costs no write).
pub fn confirm(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    slot: SlotName,
    attempts: u8,
) -> Option<EnvVars> {
    let mut next = vars.clone();
    scheme.set_good(&mut next, slot, attempts);
    set_on_trial(&mut next, slot, false);
    (next != *vars).then_some(next)
}

/// A complete first state for a device fresh from the factory: `good` primary and
/// confirmed (holding `image`, if known), the other slot unbootable, nothing on trial.
/// Variables of other owners in `vars` are kept.
pub fn factory_state(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    good: SlotName,
    image: Option<&InstalledImage>,
    attempts: u8,
) -> EnvVars {
    let mut next = vars.clone();
    next.retain(|name, _| !name.starts_with("BASCULE_"));
    scheme.set_primary(&mut next, good, attempts);
    scheme.set_good(&mut next, good, attempts);
    scheme.set_bad(&mut next, good.other());
    if let Some(image) = image {
        next.insert(version_var(good), image.version.clone());
        next.insert(secver_var(good), image.security_version.to_string());
    }
    next
}

/// `slot` must not boot again, and a staged install in it is cancelled (`activate`
/// refuses it). `None` when it already cannot boot and is not staged.
pub fn mark_bad(scheme: &dyn BootScheme, vars: &EnvVars, slot: SlotName) -> Option<EnvVars> {
    let mut next = vars.clone();
    scheme.set_bad(&mut next, slot);
    set_on_trial(&mut next, slot, false);
    staged::unstage(&mut next, slot);
    (next != *vars).then_some(next)
}

/// Marking a slot bad would leave no confirmed slot to boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to mark slot {slot} bad: slot {other} is {other_state}, so no confirmed slot \
     would be left to boot (once an unconfirmed one fails its trial, the device would not boot)"
)]
pub struct LastConfirmedSlot {
    pub slot: SlotName,
    pub other: SlotName,
    pub other_state: SlotState,
}

/// [`mark_bad`], refused unless the other slot is confirmed and bootable (good, or
/// running and only waiting to be re-armed): what `bascule mark-bad` does. `booted`
/// is the running slot, when known.
pub fn mark_bad_keeping_one(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    slot: SlotName,
    booted: Option<SlotName>,
) -> Result<Option<EnvVars>, LastConfirmedSlot> {
    let Some(next) = mark_bad(scheme, vars, slot) else {
        return Ok(None);
    };
    let other = slot.other();
    let after = match booted {
        Some(booted) => BootState::read_running(scheme, &next, booted),
        None => BootState::read(scheme, &next),
    };
    let other_state = after.map_or(
        SlotState::Bad {
            reason: BadReason::NotInBootOrder,
        },
        |st| st.slot(other).state.clone(),
    );
    match other_state {
        SlotState::Good | SlotState::Unarmed => Ok(Some(next)),
        other_state => Err(LastConfirmedSlot {
            slot,
            other,
            other_state,
        }),
    }
}

mod staged;
pub use staged::{mark_staged, staged_slot, staged_target, NotStaged};

#[cfg(test)]
mod tests;

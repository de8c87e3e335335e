//! The slot state machine: what each slot is (good, pending, bad), and the state
//! changes the updater makes, each computed as one whole new environment.
//!
//! Pure logic over [`EnvVars`]: nothing here reads or writes a device. Every change
//! returns the complete new variable set so the caller commits it with a single
//! atomic [`bascule_hal::EnvStore::commit`]; a change that would not alter anything
//! returns `None` so no flash write is spent on it.
//!
//! bascule keeps its own facts beside the bootloader's variables, in the same atomic
//! write: `BASCULE_PENDING` (the slot on trial), `BASCULE_<x>_VERSION` and
//! `BASCULE_<x>_SECVER` (what was installed into each slot).
use std::fmt;

use bascule_hal::EnvVars;
use bascule_partitions::SlotName;
use serde::Serialize;

use super::scheme::{BootScheme, SchemeError, SchemeView};

const PENDING_VAR: &str = "BASCULE_PENDING";

fn version_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_VERSION")
}

fn secver_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_SECVER")
}

/// What a slot is, as the bootloader and bascule see it together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SlotState {
    /// Confirmed good: the bootloader keeps booting it.
    Good,
    /// Installed and on trial: the bootloader tries it `tries_left` more times.
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
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotState::Good => f.write_str("good"),
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
}

/// The boot state of an A/B pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    pub view: SchemeView,
    pub pending: Option<SlotName>,
    pub slots: [SlotInfo; 2],
}

impl BootState {
    /// Interprets `vars` with `scheme`.
    pub fn read(scheme: &dyn BootScheme, vars: &EnvVars) -> Result<BootState, SchemeError> {
        let view = scheme.read(vars)?;
        let pending = vars
            .get_str(PENDING_VAR)
            .and_then(|v| v.parse::<SlotName>().ok());
        let info = |slot: SlotName| SlotInfo {
            slot,
            state: slot_state(&view, pending, slot),
            primary: view.order.iter().find(|s| view.bootable(**s)) == Some(&slot),
            version: vars.get(&version_var(slot)).map(ToString::to_string),
            security_version: vars.get_str(&secver_var(slot)).and_then(|v| v.parse().ok()),
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
}

fn slot_state(view: &SchemeView, pending: Option<SlotName>, slot: SlotName) -> SlotState {
    let tries_left = view.tries[slot.index()];
    let on_trial = pending == Some(slot);
    if !view.order.contains(&slot) {
        // ChromeOS firmware drops a slot from the order on its last failed try.
        let reason = if on_trial && tries_left == 0 {
            BadReason::TriesExhausted
        } else {
            BadReason::NotInBootOrder
        };
        return SlotState::Bad { reason };
    }
    match (on_trial, tries_left) {
        (true, 0) => SlotState::Bad {
            reason: BadReason::TriesExhausted,
        },
        (true, n) => SlotState::Pending { tries_left: n },
        (false, 0) => SlotState::Bad {
            reason: BadReason::NoTriesLeft,
        },
        (false, _) => SlotState::Good,
    }
}

/// What an install writes into the environment when it finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledImage {
    pub version: String,
    pub security_version: u32,
}

/// Before the first byte of `target` is written: the bootloader must not boot it,
/// and bascule forgets what was installed there.
pub fn begin_install(scheme: &dyn BootScheme, vars: &EnvVars, target: SlotName) -> EnvVars {
    let mut next = vars.clone();
    scheme.set_bad(&mut next, target);
    next.remove(&version_var(target));
    next.remove(&secver_var(target));
    if next.get_str(PENDING_VAR) == Some(target.as_str()) {
        next.remove(PENDING_VAR);
    }
    next
}

/// After the whole image was verified and synced: `target` becomes primary and on
/// trial with `attempts` tries.
pub fn mark_pending(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    target: SlotName,
    image: &InstalledImage,
    attempts: u8,
) -> EnvVars {
    let mut next = vars.clone();
    scheme.set_primary(&mut next, target, attempts);
    next.insert(PENDING_VAR, target.as_str());
    next.insert(version_var(target), image.version.clone());
    next.insert(secver_var(target), image.security_version.to_string());
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
    if next.get_str(PENDING_VAR) == Some(slot.as_str()) {
        next.remove(PENDING_VAR);
    }
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

/// `slot` must not boot again. `None` when it already cannot.
pub fn mark_bad(scheme: &dyn BootScheme, vars: &EnvVars, slot: SlotName) -> Option<EnvVars> {
    let mut next = vars.clone();
    scheme.set_bad(&mut next, slot);
    if next.get_str(PENDING_VAR) == Some(slot.as_str()) {
        next.remove(PENDING_VAR);
    }
    (next != *vars).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::scheme::{BootDecision, RaucGrub, RaucUboot};

    fn fresh_uboot() -> EnvVars {
        [
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn v2() -> InstalledImage {
        InstalledImage {
            version: "2.0.0".into(),
            security_version: 1,
        }
    }

    #[test]
    fn install_cycle_good_pending_confirmed() {
        let s = &RaucUboot;
        let env = begin_install(s, &fresh_uboot(), SlotName::B);
        let st = BootState::read(s, &env).unwrap();
        assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
        assert_eq!(st.slot(SlotName::A).state, SlotState::Good);

        let mut env = mark_pending(s, &env, SlotName::B, &v2(), 3);
        let st = BootState::read(s, &env).unwrap();
        assert_eq!(
            st.slot(SlotName::B).state,
            SlotState::Pending { tries_left: 3 }
        );
        assert!(st.slot(SlotName::B).primary);
        assert_eq!(st.slot(SlotName::B).version.as_deref(), Some("2.0.0"));

        assert_eq!(s.boot(&mut env, 3), BootDecision::Boot(SlotName::B));
        let env = confirm(s, &env, SlotName::B, 3).unwrap();
        let st = BootState::read(s, &env).unwrap();
        assert_eq!(st.slot(SlotName::B).state, SlotState::Good);
        assert_eq!(st.pending, None);
    }

    #[test]
    fn confirming_a_confirmed_slot_writes_nothing() {
        assert_eq!(confirm(&RaucUboot, &fresh_uboot(), SlotName::A, 3), None);
    }

    #[test]
    fn pending_slot_that_runs_out_of_tries_is_a_rollback() {
        let s = &RaucUboot;
        let mut env = mark_pending(
            s,
            &begin_install(s, &fresh_uboot(), SlotName::B),
            SlotName::B,
            &v2(),
            2,
        );
        for _ in 0..2 {
            assert_eq!(s.boot(&mut env, 3), BootDecision::Boot(SlotName::B));
        }
        assert_eq!(s.boot(&mut env, 3), BootDecision::Boot(SlotName::A));
        let st = BootState::read(s, &env).unwrap();
        assert_eq!(
            st.slot(SlotName::B).state,
            SlotState::Bad {
                reason: BadReason::TriesExhausted
            }
        );
        // B still leads BOOT_ORDER, but A is what the bootloader boots: the primary.
        assert_eq!(st.view.order.first(), Some(&SlotName::B));
        assert!(st.slot(SlotName::A).primary && !st.slot(SlotName::B).primary);
    }

    #[test]
    fn grub_cycle_uses_one_try() {
        let s = &RaucGrub;
        let base: EnvVars = [
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "0"),
            ("B_OK", "1"),
            ("B_TRY", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut env = mark_pending(
            s,
            &begin_install(s, &base, SlotName::B),
            SlotName::B,
            &v2(),
            3,
        );
        assert_eq!(s.boot(&mut env, 3), BootDecision::Boot(SlotName::B));
        let env = confirm(s, &env, SlotName::B, 3).unwrap();
        assert_eq!(
            BootState::read(s, &env).unwrap().slot(SlotName::B).state,
            SlotState::Good
        );
    }

    #[test]
    fn factory_state_is_complete_for_every_scheme() {
        let v1 = InstalledImage {
            version: "1.0.0".into(),
            security_version: 0,
        };
        let schemes: [&dyn BootScheme; 2] = [&RaucUboot, &RaucGrub];
        for s in schemes {
            let mut vars = EnvVars::new();
            vars.insert("bootdelay", "2");
            vars.insert("BASCULE_PENDING", "A");
            let env = factory_state(s, &vars, SlotName::A, Some(&v1), 3);
            let st = BootState::read(s, &env).unwrap();
            assert_eq!(st.slot(SlotName::A).state, SlotState::Good, "{}", s.name());
            assert!(st.slot(SlotName::A).primary);
            assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
            assert_eq!(st.pending, None);
            assert_eq!(st.slot(SlotName::A).version.as_deref(), Some("1.0.0"));
            assert_eq!(env["bootdelay"], "2");
            let unknown = factory_state(s, &vars, SlotName::B, None, 3);
            assert_eq!(
                BootState::read(s, &unknown)
                    .unwrap()
                    .slot(SlotName::B)
                    .version,
                None
            );
        }
    }

    #[test]
    fn mark_bad_of_a_bad_slot_writes_nothing() {
        let s = &RaucUboot;
        let env = begin_install(s, &fresh_uboot(), SlotName::B);
        assert_eq!(mark_bad(s, &env, SlotName::B), None);
    }
}

//! The GRUB fallback environment (`grubenv.good` beside `grubenv`): what GRUB boots
//! when the main grubenv cannot be loaded (corrupt, empty or missing).
//!
//! GRUB's `save_env` rewrites `grubenv` in place, so a power cut or a bad sector can
//! leave a block without its header, and `load_env` then fails. The shipped
//! `grub.cfg` falls back to `load_env -f grubenv.good` and boots the first slot that
//! file names, without `save_env` and without the reset-and-reboot path.
//!
//! Invariant: the fallback names only **confirmed** slots as bootable, never one on
//! trial or being written. A slot is confirmed when it is in `ORDER` (a missing
//! `ORDER` reads as `A B`, as the script's default), its `<x>_OK` is exactly `1` (as the
//! script compares it) and `BASCULE_PENDING` does not name it. Its `<x>_TRY` is not
//! read: a confirmed slot that booted once more and was not re-confirmed yet is still
//! known to be good. The fallback holds `ORDER` = the confirmed slots (main order kept),
//! `<x>_OK=1 <x>_TRY=0` for them, `<x>_OK=0 <x>_TRY=0` for the others, and the
//! `BASCULE_<x>_VERSION`/`_SECVER` of the confirmed slots.
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use super::scheme::{BootDecision, BootScheme, RaucGrub};
use super::state::BootState;

/// Name of the fallback file, beside the main grubenv (`<main name>` + this suffix).
pub const FALLBACK_SUFFIX: &str = ".good";

/// The slots of `vars` that are confirmed (module docs), in boot order.
/// Read through [`RaucGrub`]: in its order, not disabled (`x_OK` exactly `1`), and not
/// on trial.
pub fn confirmed_slots(vars: &EnvVars) -> Vec<SlotName> {
    let Ok(state) = BootState::read(&RaucGrub, vars) else {
        return Vec::new();
    };
    let view = &state.view;
    view.order
        .iter()
        .copied()
        .filter(|s| !view.disabled[s.index()] && !state.pending.contains(s))
        .collect()
}

/// The fallback environment bascule writes beside the main one holding `vars`.
pub fn fallback_vars(vars: &EnvVars) -> EnvVars {
    let confirmed = confirmed_slots(vars);
    let mut out = EnvVars::new();
    let order: Vec<&str> = confirmed.iter().map(|s| s.as_str()).collect();
    out.insert("ORDER", order.join(" "));
    for slot in SlotName::ALL {
        let good = confirmed.contains(&slot);
        out.insert(format!("{slot}_OK"), if good { "1" } else { "0" });
        out.insert(format!("{slot}_TRY"), "0");
        if !good {
            continue;
        }
        for var in [
            format!("BASCULE_{slot}_VERSION"),
            format!("BASCULE_{slot}_SECVER"),
        ] {
            if let Some(value) = vars.get(&var) {
                out.insert(var, value.clone());
            }
        }
    }
    out
}

/// The slot the shipped script boots from `fallback` when the main grubenv cannot be
/// loaded; `None` (GRUB waits at its menu) when no file names a bootable slot.
pub fn fallback_boot(fallback: Option<&EnvVars>) -> Option<SlotName> {
    let mut vars = fallback?.clone();
    match RaucGrub.boot(&mut vars) {
        BootDecision::Boot(slot) => Some(slot),
        BootDecision::NoSlotResetCounters => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::state::{begin_install, confirm, factory_state, mark_bad, mark_pending};
    use crate::slot::InstalledImage;

    fn image() -> InstalledImage {
        InstalledImage {
            version: "2.0".into(),
            security_version: 2,
        }
    }

    #[test]
    fn factory_state_falls_back_to_the_good_slot() {
        let vars = factory_state(&RaucGrub, &EnvVars::new(), SlotName::B, None, 3);
        let fb = fallback_vars(&vars);
        assert_eq!(fb["ORDER"], "B");
        assert_eq!(
            (fb.get_str("B_OK"), fb.get_str("A_OK")),
            (Some("1"), Some("0"))
        );
        assert_eq!(fallback_boot(Some(&fb)), Some(SlotName::B));
    }

    #[test]
    fn a_slot_being_written_or_on_trial_is_never_in_the_fallback() {
        let base = factory_state(&RaucGrub, &EnvVars::new(), SlotName::A, None, 3);
        let both = confirm(&RaucGrub, &base, SlotName::B, 3).unwrap();
        assert_eq!(confirmed_slots(&both), vec![SlotName::A, SlotName::B]);
        let writing = begin_install(&RaucGrub, &both, SlotName::B, SlotName::A, 3).unwrap();
        assert_eq!(fallback_vars(&writing.vars)["ORDER"], "A");
        let pending = mark_pending(&RaucGrub, &writing.vars, &writing.marked, &image(), 3);
        let fb = fallback_vars(&pending);
        assert_eq!(fb["ORDER"], "A");
        assert_eq!(fb["B_OK"], "0");
        assert!(!fb.contains_key("BASCULE_B_VERSION"));
        let confirmed = confirm(&RaucGrub, &pending, SlotName::B, 3).unwrap();
        let fb = fallback_vars(&confirmed);
        assert_eq!(fb["ORDER"], "B A");
        assert_eq!(fb["BASCULE_B_VERSION"], "2.0");
    }

    #[test]
    fn a_confirmed_slot_that_booted_again_stays_in_the_fallback() {
        let mut vars = factory_state(&RaucGrub, &EnvVars::new(), SlotName::A, None, 3);
        RaucGrub.boot(&mut vars);
        assert_eq!(vars["A_TRY"], "1");
        assert_eq!(confirmed_slots(&vars), vec![SlotName::A]);
    }

    /// One step of an exhaustive walk; returns the new env and the booted slot.
    fn step(vars: &EnvVars, booted: SlotName, action: u8) -> (EnvVars, SlotName) {
        let target = booted.other();
        match action {
            0 => {
                let mut next = vars.clone();
                match RaucGrub.boot(&mut next) {
                    BootDecision::Boot(slot) => (next, slot),
                    BootDecision::NoSlotResetCounters => (next, booted),
                }
            }
            1 => (
                confirm(&RaucGrub, vars, booted, 3).unwrap_or(vars.clone()),
                booted,
            ),
            2 => match begin_install(&RaucGrub, vars, target, booted, 3) {
                Ok(writing) => (writing.vars, booted),
                Err(_) => (vars.clone(), booted),
            },
            3 => match begin_install(&RaucGrub, vars, target, booted, 3) {
                Ok(writing) => (
                    mark_pending(&RaucGrub, &writing.vars, &writing.marked, &image(), 3),
                    booted,
                ),
                Err(_) => (vars.clone(), booted),
            },
            _ => (
                mark_bad(&RaucGrub, vars, target).unwrap_or(vars.clone()),
                booted,
            ),
        }
    }

    #[test]
    fn every_short_walk_keeps_pending_and_written_slots_out_of_the_fallback() {
        for walk in 0..5u32.pow(4) {
            let mut vars = factory_state(&RaucGrub, &EnvVars::new(), SlotName::A, None, 3);
            let mut booted = SlotName::A;
            let mut code = walk;
            for _ in 0..4 {
                let action = (code % 5) as u8;
                code /= 5;
                let target = booted.other();
                let began = begin_install(&RaucGrub, &vars, target, booted, 3).is_ok();
                (vars, booted) = step(&vars, booted, action);
                let fb = fallback_vars(&vars);
                let order = fb["ORDER"].to_string();
                let named: Vec<&str> = order.split_whitespace().collect();
                if matches!(action, 2 | 3) && began {
                    assert!(!named.contains(&target.as_str()), "walk {walk}: {fb:?}");
                }
                let pending = vars.get_str("BASCULE_PENDING").unwrap_or("");
                for slot in pending.split_whitespace() {
                    assert!(!named.contains(&slot), "walk {walk}: {fb:?}");
                }
                for slot in named {
                    assert_eq!(vars[&format!("{slot}_OK")], "1", "walk {walk}: {vars:?}");
                }
            }
        }
    }

    #[test]
    fn flags_are_compared_as_the_script_does() {
        let vars: EnvVars = [("A_OK", " 1"), ("B_OK", "1")].into_iter().collect();
        assert_eq!(
            confirmed_slots(&vars),
            vec![SlotName::B],
            "missing ORDER is A B"
        );
        assert_eq!(fallback_boot(None), None);
    }
}

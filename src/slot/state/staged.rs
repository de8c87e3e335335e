//! Staged slots: written and verified by `install --no-activate`, left unbootable,
//! waiting for `bascule activate` to mark them pending without writing them again.
//!
//! The environment shows a staged slot with `BASCULE_STAGED=<slot>` and
//! `BASCULE_<slot>_MANIFEST=<SHA-256 of the signed manifest>`, set in one commit after
//! the slot was written, verified and its `post-install` hook passed, while the slot
//! stays marked bad. Every later change that writes or revives the slot
//! ([`super::begin_install`], [`super::mark_pending`], [`super::retry`]) or marks it
//! bad on purpose ([`super::mark_bad`]: `bascule mark-bad` cancels a staged install)
//! drops `BASCULE_STAGED` in the same commit, so the variable names a slot only while
//! it still holds what that install wrote and nothing made it bootable or cancelled it.
//!
//! Invariant kept: a slot is never marked pending without a [`TargetMarkedBad`], and
//! the only two makers of one are [`super::begin_install`] (before the first byte is
//! written) and [`staged_target`] (from an environment that shows the slot staged,
//! which only a `--no-activate` install that had one can leave).
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use super::{manifest_var, BadReason, BootState, SlotState, TargetMarkedBad};
use crate::slot::BootScheme;

const STAGED_VAR: &str = "BASCULE_STAGED";

/// Why the environment does not show `slot` staged by the install a record describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStaged {
    #[error("slot {slot} is the booted slot: only the other slot can be activated")]
    IsBooted { slot: SlotName },
    #[error(
        "slot {slot} is not staged: the boot environment names {staged} as the slot an \
         `install --no-activate` left waiting (slot {slot} was installed over, activated \
         already, or never staged); it is {state}. Install the bundle again"
    )]
    NotMarkedStaged {
        slot: SlotName,
        /// What `BASCULE_STAGED` says ("no slot" when unset).
        staged: String,
        state: SlotState,
    },
    #[error(
        "slot {slot} is staged with release {env} (manifest SHA-256), but the record names \
         release {record}: the record is not of the install that staged the slot. Install \
         the bundle again"
    )]
    ManifestDiffers {
        slot: SlotName,
        /// `BASCULE_<slot>_MANIFEST` ("none" when unset).
        env: String,
        record: String,
    },
    #[error(
        "slot {slot} was staged but is now {state}: something made it bootable since it \
         was written (mark-good, an edit of the boot environment); install the bundle again"
    )]
    Revived { slot: SlotName, state: SlotState },
}

/// The slot `BASCULE_STAGED` names, if any.
pub fn staged_slot(vars: &EnvVars) -> Option<SlotName> {
    vars.get_str(STAGED_VAR)
        .and_then(|v| v.trim().parse::<SlotName>().ok())
}

/// After a `--no-activate` install wrote, verified and synced the slot that `marked`
/// proves unbootable, and its `post-install` hook passed: the environment names it
/// staged with the release whose signed manifest hashes to `manifest_sha256`. The
/// slot stays exactly as unbootable as `vars` has it.
pub fn mark_staged(vars: &EnvVars, marked: &TargetMarkedBad, manifest_sha256: &str) -> EnvVars {
    let mut next = vars.clone();
    next.insert(STAGED_VAR, marked.target.as_str());
    next.insert(manifest_var(marked.target), manifest_sha256);
    next
}

/// The proof that `slot` is unbootable, from an environment that shows it staged with
/// the release `manifest_sha256` while `booted` runs: `BASCULE_STAGED` names it, its
/// recorded manifest is that release's, and the bootloader would not boot it.
pub fn staged_target(
    scheme: &dyn BootScheme,
    vars: &EnvVars,
    slot: SlotName,
    booted: SlotName,
    manifest_sha256: &str,
) -> Result<TargetMarkedBad, NotStaged> {
    if slot == booted {
        return Err(NotStaged::IsBooted { slot });
    }
    let state = BootState::read_running(scheme, vars, booted)
        .map(|st| st.slot(slot).state.clone())
        .unwrap_or(SlotState::Bad {
            reason: BadReason::NotInBootOrder,
        });
    if staged_slot(vars) != Some(slot) {
        let staged = vars
            .get_str(STAGED_VAR)
            .map_or_else(|| "no slot".to_string(), |v| format!("{:?}", v.trim()));
        return Err(NotStaged::NotMarkedStaged {
            slot,
            staged,
            state,
        });
    }
    let env = vars.get_str(&manifest_var(slot)).map(str::trim);
    if env != Some(manifest_sha256) {
        return Err(NotStaged::ManifestDiffers {
            slot,
            env: env.unwrap_or("none").to_string(),
            record: manifest_sha256.to_string(),
        });
    }
    match state {
        SlotState::Bad {
            reason: BadReason::MarkedBad | BadReason::NotInBootOrder,
        } => Ok(TargetMarkedBad { target: slot }),
        state => Err(NotStaged::Revived { slot, state }),
    }
}

/// Drops `BASCULE_STAGED` when it names `slot`: the slot is being written again, or
/// put on trial.
pub(super) fn unstage(vars: &mut EnvVars, slot: SlotName) {
    if staged_slot(vars) == Some(slot) {
        vars.remove(STAGED_VAR);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{begin_install, mark_bad, mark_pending, retry, InstalledImage};
    use super::*;
    use crate::slot::scheme::{RaucGrub, RaucUboot};

    const SHA: &str = "ab";

    fn factory(s: &dyn BootScheme) -> EnvVars {
        super::super::factory_state(s, &EnvVars::new(), SlotName::A, None, 3)
    }

    /// B written by a `--no-activate` install while A runs.
    fn staged_b(s: &dyn BootScheme) -> EnvVars {
        let begun = begin_install(s, &factory(s), SlotName::B, SlotName::A, 3).unwrap();
        mark_staged(&begun.vars, &begun.marked, SHA)
    }

    fn v2() -> InstalledImage {
        InstalledImage {
            version: "2.0.0".into(),
            security_version: 1,
        }
    }

    #[test]
    fn a_staged_slot_stays_bad_and_yields_the_proof() {
        for s in [&RaucUboot as &dyn BootScheme, &RaucGrub] {
            let vars = staged_b(s);
            let st = BootState::read_running(s, &vars, SlotName::A).unwrap();
            assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
            assert_eq!(staged_slot(&vars), Some(SlotName::B));
            let marked = staged_target(s, &vars, SlotName::B, SlotName::A, SHA).unwrap();
            assert_eq!(marked.target(), SlotName::B);
            let next = mark_pending(s, &vars, &marked, &v2(), 3);
            assert_eq!(staged_slot(&next), None, "pending drops the staged mark");
            let st = BootState::read(s, &next).unwrap();
            assert!(matches!(
                st.slot(SlotName::B).state,
                SlotState::Pending { .. }
            ));
            assert!(st.slot(SlotName::B).primary);
        }
    }

    #[test]
    fn installed_over_or_never_staged_is_refused() {
        let s = &RaucUboot;
        let over = begin_install(s, &staged_b(s), SlotName::B, SlotName::A, 3).unwrap();
        let err = staged_target(s, &over.vars, SlotName::B, SlotName::A, SHA).unwrap_err();
        assert!(matches!(err, NotStaged::NotMarkedStaged { .. }), "{err}");
        let err = staged_target(s, &factory(s), SlotName::B, SlotName::A, SHA).unwrap_err();
        assert!(err.to_string().contains("names no slot"), "{err}");
    }

    #[test]
    fn another_release_or_a_revived_slot_or_the_booted_one_is_refused() {
        let s = &RaucUboot;
        let vars = staged_b(s);
        let err = staged_target(s, &vars, SlotName::B, SlotName::A, "cd").unwrap_err();
        assert!(matches!(err, NotStaged::ManifestDiffers { .. }), "{err}");
        let mut revived = vars.clone();
        s.set_primary(&mut revived, SlotName::B, 3);
        let err = staged_target(s, &revived, SlotName::B, SlotName::A, SHA).unwrap_err();
        assert!(matches!(err, NotStaged::Revived { .. }), "{err}");
        let err = staged_target(s, &vars, SlotName::B, SlotName::B, SHA).unwrap_err();
        assert_eq!(err, NotStaged::IsBooted { slot: SlotName::B });
    }

    #[test]
    fn retry_and_mark_bad_drop_the_staged_mark() {
        let s = &RaucUboot;
        let vars = staged_b(s);
        assert_eq!(staged_slot(&retry(s, &vars, SlotName::B, &v2(), 3)), None);
        let cancelled = mark_bad(s, &vars, SlotName::B).expect("mark-bad cancels the staging");
        assert_eq!(staged_slot(&cancelled), None);
        assert_eq!(
            mark_bad(s, &cancelled, SlotName::B),
            None,
            "nothing left to do"
        );
        assert_eq!(
            staged_slot(&mark_bad(s, &vars, SlotName::A).unwrap()),
            Some(SlotName::B),
            "marking the other slot bad keeps B staged"
        );
    }
}

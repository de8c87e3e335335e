//! The ChromeOS boot scheme: priority, tries and successful bits in each slot's GPT
//! partition entry, as the vboot firmware (depthcharge), `cgpt` and Bottlerocket use
//! them. The variables are the ones [`bascule_hal::gpt::GptAttrEnv`] exposes:
//! `GPT_<slot>_PRIORITY` (0–15), `GPT_<slot>_TRIES` (0–15), `GPT_<slot>_SUCCESSFUL`
//! (0/1), decimal.
//!
//! Semantics, from vboot's `cgptlib.c` (`GptNextKernelEntry`, `GptUpdateKernelWithEntry`)
//! and ChromeOS's `chromeos-setgoodkernel`:
//!
//! | operation          | what it writes                                                  |
//! |--------------------|-----------------------------------------------------------------|
//! | boot order         | slots with priority > 0 and (successful or tries > 0), highest priority first; ties: lowest partition number (here A before B) |
//! | firmware, per boot | picks the first slot of that order; if not successful: tries > 1 → tries − 1, else tries 0 **and priority 0** (its last try) |
//! | [`set_primary`]    | priority above the other slot (`cgpt prioritize`), tries = attempts (at most 15), successful 0 (update_engine's `SetActiveBootSlot`) |
//! | [`set_good`]       | successful 1, tries 0, prioritized (`cgpt add -S1 -T0` then `cgpt prioritize`, as `chromeos-setgoodkernel` does); the firmware ignores tries once successful |
//! | [`set_bad`]        | priority 0, tries 0, successful 0 (`cgpt add -P0 -T0 -S0`)       |
//!
//! [`read`](BootScheme::read) reports a successful slot with at least 1 try, so
//! bascule's state machine counts it bootable. When no slot is bootable the ChromeOS
//! firmware enters recovery mode; there are no counters to reset, so
//! [`boot`](BootScheme::boot) returns [`BootDecision::NoSlotResetCounters`] and
//! changes nothing.
//!
//! [`set_primary`]: BootScheme::set_primary
//! [`set_good`]: BootScheme::set_good
//! [`set_bad`]: BootScheme::set_bad
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

use super::scheme::{BootDecision, BootScheme, SchemeError, SchemeView};

/// Largest value of the 4-bit priority and tries fields.
const FIELD_MAX: u8 = 15;

/// The three fields of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Fields {
    priority: u8,
    tries: u8,
    successful: bool,
}

impl Fields {
    /// What the firmware considers: priority above 0 and a reason to boot.
    fn bootable(self) -> bool {
        self.priority > 0 && (self.successful || self.tries > 0)
    }
}

fn var(slot: SlotName, field: &str) -> String {
    format!("GPT_{slot}_{field}")
}

fn read_field(vars: &EnvVars, slot: SlotName, field: &str, max: u8) -> Result<u8, SchemeError> {
    let name = var(slot, field);
    let value = vars
        .get(&name)
        .map(ToString::to_string)
        .ok_or_else(|| SchemeError::Missing { var: name.clone() })?;
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u8>() {
        Ok(n) if digits && n <= max => Ok(n),
        _ => Err(SchemeError::BadValue {
            var: name,
            value: value.clone(),
            reason: if max == 1 {
                "expected 0 or 1"
            } else {
                "expected a decimal 0-15"
            },
        }),
    }
}

/// ChromeOS GPT attribute scheme (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChromeosGpt;

impl ChromeosGpt {
    fn fields(vars: &EnvVars, slot: SlotName) -> Result<Fields, SchemeError> {
        Ok(Fields {
            priority: read_field(vars, slot, "PRIORITY", FIELD_MAX)?,
            tries: read_field(vars, slot, "TRIES", FIELD_MAX)?,
            successful: read_field(vars, slot, "SUCCESSFUL", 1)? == 1,
        })
    }

    /// The fields, with anything missing or unreadable taken as 0 (operations cannot
    /// fail; `read` reports such an environment).
    fn fields_or_zero(vars: &EnvVars, slot: SlotName) -> Fields {
        Self::fields(vars, slot).unwrap_or_default()
    }

    fn write(vars: &mut EnvVars, slot: SlotName, f: Fields) {
        vars.insert(var(slot, "PRIORITY"), f.priority.to_string());
        vars.insert(var(slot, "TRIES"), f.tries.to_string());
        vars.insert(var(slot, "SUCCESSFUL"), u8::from(f.successful).to_string());
    }

    /// Bootable slots, highest priority first; ties keep A before B.
    fn order(all: [Fields; 2]) -> Vec<SlotName> {
        let mut order: Vec<SlotName> = SlotName::ALL
            .into_iter()
            .filter(|s| all[s.index()].bootable())
            .collect();
        order.sort_by_key(|s| std::cmp::Reverse(all[s.index()].priority));
        order
    }

    /// `cgpt prioritize` for two slots: `slot` gets a priority above the other's,
    /// keeping its own when it already is; the other is lowered only when `slot`
    /// cannot go higher (15). The other slot keeps priority 0 if it had it.
    fn prioritize(vars: &mut EnvVars, slot: SlotName, mut own: Fields) -> Fields {
        let mut other = Self::fields_or_zero(vars, slot.other());
        let top = if own.priority > other.priority {
            own.priority
        } else {
            (other.priority + 1).min(FIELD_MAX)
        };
        own.priority = top.max(1);
        if other.priority >= own.priority {
            other.priority = own.priority - 1;
            Self::write(vars, slot.other(), other);
        }
        own
    }
}

impl BootScheme for ChromeosGpt {
    fn name(&self) -> &'static str {
        "chromeos-gpt"
    }

    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError> {
        let all = [
            Self::fields(vars, SlotName::A)?,
            Self::fields(vars, SlotName::B)?,
        ];
        let tries = all.map(|f| {
            if f.successful {
                f.tries.max(1)
            } else {
                f.tries
            }
        });
        Ok(SchemeView {
            order: Self::order(all),
            tries,
            disabled: [false; 2],
        })
    }

    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName) {
        Self::write(vars, slot, Fields::default());
    }

    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8) {
        let own = Fields {
            tries: attempts.min(FIELD_MAX),
            successful: false,
            ..Self::fields_or_zero(vars, slot)
        };
        let own = Self::prioritize(vars, slot, own);
        Self::write(vars, slot, own);
    }

    fn set_good(&self, vars: &mut EnvVars, slot: SlotName, _attempts: u8) {
        let own = Fields {
            tries: 0,
            successful: true,
            ..Self::fields_or_zero(vars, slot)
        };
        let own = Self::prioritize(vars, slot, own);
        Self::write(vars, slot, own);
    }

    fn boot(&self, vars: &mut EnvVars) -> BootDecision {
        let all = SlotName::ALL.map(|s| Self::fields_or_zero(vars, s));
        let Some(&slot) = Self::order(all).first() else {
            return BootDecision::NoSlotResetCounters;
        };
        let mut f = all[slot.index()];
        if !f.successful {
            // GPT_UPDATE_ENTRY_TRY: the last try also drops the priority to 0.
            if f.tries > 1 {
                f.tries -= 1;
            } else {
                f = Fields::default();
            }
            Self::write(vars, slot, f);
        }
        BootDecision::Boot(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::state::{
        begin_install, confirm, mark_bad, mark_pending, BadReason, BootState, InstalledImage,
        SlotState,
    };

    /// Variables for `[priority, tries, successful]` of A and B.
    fn env(a: [u8; 3], b: [u8; 3]) -> EnvVars {
        let mut v = EnvVars::new();
        for (slot, f) in [(SlotName::A, a), (SlotName::B, b)] {
            ChromeosGpt::write(
                &mut v,
                slot,
                Fields {
                    priority: f[0],
                    tries: f[1],
                    successful: f[2] == 1,
                },
            );
        }
        v
    }

    fn fields(v: &EnvVars, slot: SlotName) -> [u8; 3] {
        let f = ChromeosGpt::fields(v, slot).unwrap();
        [f.priority, f.tries, u8::from(f.successful)]
    }

    #[test]
    fn order_is_bootable_slots_by_descending_priority() {
        let view = ChromeosGpt.read(&env([1, 0, 1], [2, 3, 0])).unwrap();
        assert_eq!(view.order, vec![SlotName::B, SlotName::A]);
        assert_eq!(
            view.tries,
            [1, 3],
            "a successful slot counts one try at least"
        );
        // Priority 0 never boots; neither does a slot with no tries and not successful.
        let view = ChromeosGpt.read(&env([0, 5, 1], [2, 0, 0])).unwrap();
        assert!(view.order.is_empty());
        // Equal priorities: the lower partition number (A) first, as the firmware scans.
        let view = ChromeosGpt.read(&env([1, 0, 1], [1, 0, 1])).unwrap();
        assert_eq!(view.order, vec![SlotName::A, SlotName::B]);
    }

    #[test]
    fn read_names_missing_and_bad_values() {
        let mut v = env([1, 0, 1], [2, 3, 0]);
        v.remove("GPT_B_TRIES");
        assert_eq!(
            ChromeosGpt.read(&v),
            Err(SchemeError::Missing {
                var: "GPT_B_TRIES".into()
            })
        );
        let mut v = env([1, 0, 1], [2, 3, 0]);
        v.insert("GPT_A_PRIORITY", "16");
        let err = ChromeosGpt.read(&v).unwrap_err();
        assert!(err.to_string().contains("GPT_A_PRIORITY"), "{err}");
        v.insert("GPT_A_PRIORITY", "1");
        v.insert("GPT_A_SUCCESSFUL", "2");
        assert!(matches!(
            ChromeosGpt.read(&v),
            Err(SchemeError::BadValue { .. })
        ));
    }

    #[test]
    fn primary_goes_above_the_other_with_fresh_tries() {
        let mut v = env([2, 0, 1], [0, 0, 0]);
        ChromeosGpt.set_primary(&mut v, SlotName::B, 6);
        assert_eq!(fields(&v, SlotName::B), [3, 6, 0]);
        assert_eq!(fields(&v, SlotName::A), [2, 0, 1]);
        // At the top of the range the other slot is lowered instead.
        let mut v = env([15, 0, 1], [1, 0, 1]);
        ChromeosGpt.set_primary(&mut v, SlotName::B, 40);
        assert_eq!(
            fields(&v, SlotName::B),
            [15, 15, 0],
            "tries is a 4-bit field"
        );
        assert_eq!(fields(&v, SlotName::A), [14, 0, 1]);
    }

    #[test]
    fn good_sets_successful_clears_tries_and_prioritizes() {
        let mut v = env([1, 0, 1], [2, 2, 0]);
        ChromeosGpt.set_good(&mut v, SlotName::B, 3);
        assert_eq!(fields(&v, SlotName::B), [2, 0, 1]);
        // After its last try the firmware left priority 0: set_good restores one.
        let mut v = env([1, 0, 1], [0, 0, 0]);
        ChromeosGpt.set_good(&mut v, SlotName::B, 3);
        assert_eq!(fields(&v, SlotName::B), [2, 0, 1]);
        assert_eq!(
            ChromeosGpt.read(&v).unwrap().order,
            vec![SlotName::B, SlotName::A]
        );
    }

    #[test]
    fn bad_zeroes_all_three() {
        let mut v = env([2, 0, 1], [1, 0, 1]);
        ChromeosGpt.set_bad(&mut v, SlotName::A);
        assert_eq!(fields(&v, SlotName::A), [0, 0, 0]);
        assert_eq!(ChromeosGpt.read(&v).unwrap().order, vec![SlotName::B]);
    }

    #[test]
    fn boot_takes_a_try_and_the_last_try_drops_priority() {
        let mut v = env([1, 0, 1], [2, 2, 0]);
        assert_eq!(ChromeosGpt.boot(&mut v), BootDecision::Boot(SlotName::B));
        assert_eq!(fields(&v, SlotName::B), [2, 1, 0]);
        assert_eq!(ChromeosGpt.boot(&mut v), BootDecision::Boot(SlotName::B));
        assert_eq!(fields(&v, SlotName::B), [0, 0, 0]);
        assert_eq!(ChromeosGpt.boot(&mut v), BootDecision::Boot(SlotName::A));
        assert_eq!(
            fields(&v, SlotName::A),
            [1, 0, 1],
            "a successful slot keeps its fields"
        );
    }

    #[test]
    fn boot_with_no_bootable_slot_changes_nothing() {
        let mut v = env([0, 0, 1], [3, 0, 0]);
        let before = v.clone();
        assert_eq!(ChromeosGpt.boot(&mut v), BootDecision::NoSlotResetCounters);
        assert_eq!(v, before);
    }

    fn v2() -> InstalledImage {
        InstalledImage {
            version: "2.0.0".into(),
            security_version: 1,
        }
    }

    #[test]
    fn install_cycle_bad_pending_booted_confirmed() {
        let s = &ChromeosGpt;
        let fresh = env([2, 0, 1], [1, 0, 1]);
        let begun = begin_install(s, &fresh, SlotName::B, SlotName::A, 3).unwrap();
        let st = BootState::read(s, &begun.vars).unwrap();
        assert!(matches!(st.slot(SlotName::B).state, SlotState::Bad { .. }));
        assert_eq!(st.slot(SlotName::A).state, SlotState::Good);

        let mut vars = mark_pending(s, &begun.vars, &begun.marked, &v2(), 3);
        let st = BootState::read(s, &vars).unwrap();
        assert_eq!(
            st.slot(SlotName::B).state,
            SlotState::Pending { tries_left: 3 }
        );
        assert!(st.slot(SlotName::B).primary);
        assert_eq!(fields(&vars, SlotName::B), [3, 3, 0]);

        assert_eq!(s.boot(&mut vars), BootDecision::Boot(SlotName::B));
        let vars = confirm(s, &vars, SlotName::B, 3).unwrap();
        let st = BootState::read(s, &vars).unwrap();
        assert_eq!(st.slot(SlotName::B).state, SlotState::Good);
        assert_eq!(st.slot(SlotName::A).state, SlotState::Good);
        assert!(st.slot(SlotName::B).primary);
        assert!(st.pending.is_empty());
        assert_eq!(fields(&vars, SlotName::B), [3, 0, 1]);
        assert_eq!(
            confirm(s, &vars, SlotName::B, 3),
            None,
            "confirming again writes nothing"
        );
    }

    #[test]
    fn unconfirmed_install_rolls_back_to_the_good_slot() {
        let s = &ChromeosGpt;
        let fresh = env([2, 0, 1], [1, 0, 1]);
        let begun = begin_install(s, &fresh, SlotName::B, SlotName::A, 2).unwrap();
        let mut vars = mark_pending(s, &begun.vars, &begun.marked, &v2(), 2);
        assert_eq!(s.boot(&mut vars), BootDecision::Boot(SlotName::B));
        assert_eq!(s.boot(&mut vars), BootDecision::Boot(SlotName::B));
        assert_eq!(s.boot(&mut vars), BootDecision::Boot(SlotName::A));
        let st = BootState::read(s, &vars).unwrap();
        // The firmware zeroed B's priority on its last try: out of the boot order,
        // and since B was on trial, that is a rollback.
        assert_eq!(
            st.slot(SlotName::B).state,
            SlotState::Bad {
                reason: BadReason::TriesExhausted
            }
        );
        assert_eq!(st.pending, [SlotName::B]);
        assert!(st.slot(SlotName::A).primary);
        // Marking it bad changes no boot bit, only ends its trial.
        let marked = mark_bad(s, &vars, SlotName::B).unwrap();
        assert!(!marked.contains_key("BASCULE_PENDING"));
        assert_eq!(marked.get("GPT_B_PRIORITY"), vars.get("GPT_B_PRIORITY"));
    }
}

//! Boot schemes: how a bootloader's script encodes boot order and try counters in its
//! environment variables, and the decision that script makes at each boot.
//!
//! Each scheme follows RAUC's documented variables exactly, so a device that boots
//! with RAUC's boot scripts can switch to bascule without touching its bootloader:
//!
//! | scheme        | order variable | per slot                       | good when                   |
//! |---------------|----------------|--------------------------------|-----------------------------|
//! | [`RaucUboot`] | `BOOT_ORDER`   | `BOOT_<x>_LEFT` (decimal)      | in order and `_LEFT` > 0    |
//! | [`RaucGrub`]  | `ORDER`        | `<x>_OK`, `<x>_TRY`            | in order, `OK=1`, `TRY=0`   |
//!
//! Operations change variables in place, as RAUC's backends do, so a caller builds a
//! whole state change on a copy and commits it once (never a chain of writes).
use bascule_hal::EnvVars;
use bascule_partitions::SlotName;

/// What a scheme reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeView {
    /// Slots the bootloader may boot, first = primary.
    pub order: Vec<SlotName>,
    /// Boot attempts left per slot (index by [`SlotName::index`]).
    pub tries: [u8; 2],
}

impl SchemeView {
    /// Whether the bootloader would consider `slot` at all.
    pub fn bootable(&self, slot: SlotName) -> bool {
        self.order.contains(&slot) && self.tries[slot.index()] > 0
    }
}

/// What the bootloader script decides at power-on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDecision {
    /// Boot this slot (its counter was already taken).
    Boot(SlotName),
    /// No slot had tries left: the script reset the counters and reset the board.
    NoSlotResetCounters,
}

/// An environment the scheme cannot interpret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("{var} is missing from the boot environment")]
    Missing { var: String },
    #[error("{var}={value:?} is not valid: {reason}")]
    BadValue {
        var: String,
        value: String,
        reason: &'static str,
    },
}

/// A bootloader's variable scheme.
pub trait BootScheme {
    /// A name for messages and status ("rauc-uboot").
    fn name(&self) -> &'static str;
    /// Reads order and counters.
    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError>;
    /// Makes `slot` unbootable.
    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName);
    /// Makes `slot` the primary with `attempts` boot attempts (after an install).
    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8);
    /// Marks `slot` good: it keeps booting.
    fn set_good(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8);
    /// The decision the bootloader's script makes at power-on, with the variable
    /// changes it saves before booting.
    fn boot(&self, vars: &mut EnvVars, attempts: u8) -> BootDecision;
}

fn parse_order(var: &str, vars: &EnvVars) -> Result<Vec<SlotName>, SchemeError> {
    let value = vars
        .get(var)
        .map(ToString::to_string)
        .ok_or_else(|| SchemeError::Missing { var: var.into() })?;
    let mut order = Vec::new();
    for word in value.split_whitespace() {
        let slot = word
            .parse::<SlotName>()
            .map_err(|_| SchemeError::BadValue {
                var: var.into(),
                value: value.clone(),
                reason: "slot names must be A or B",
            })?;
        if !order.contains(&slot) {
            order.push(slot);
        }
    }
    Ok(order)
}

fn write_order(var: &str, vars: &mut EnvVars, order: &[SlotName]) {
    let words: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    vars.insert(var, words.join(" "));
}

fn move_to_front(order: &mut Vec<SlotName>, slot: SlotName) {
    order.retain(|s| *s != slot);
    order.insert(0, slot);
}

/// RAUC's U-Boot scheme: `BOOT_ORDER="A B"`, `BOOT_A_LEFT=3`, `BOOT_B_LEFT=3`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaucUboot;

impl RaucUboot {
    fn left_var(slot: SlotName) -> String {
        format!("BOOT_{slot}_LEFT")
    }

    fn read_left(vars: &EnvVars, slot: SlotName) -> Result<u8, SchemeError> {
        let var = Self::left_var(slot);
        let Some(value) = vars.get(&var).map(ToString::to_string) else {
            return Ok(0);
        };
        value
            .trim()
            .parse::<u8>()
            .map_err(|_| SchemeError::BadValue {
                var,
                value: value.clone(),
                reason: "expected a decimal count 0-255",
            })
    }

    fn order_or_empty(vars: &EnvVars) -> Vec<SlotName> {
        parse_order("BOOT_ORDER", vars).unwrap_or_default()
    }
}

impl BootScheme for RaucUboot {
    fn name(&self) -> &'static str {
        "rauc-uboot"
    }

    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError> {
        let order = parse_order("BOOT_ORDER", vars)?;
        let tries = [
            Self::read_left(vars, SlotName::A)?,
            Self::read_left(vars, SlotName::B)?,
        ];
        Ok(SchemeView { order, tries })
    }

    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName) {
        let mut order = Self::order_or_empty(vars);
        order.retain(|s| *s != slot);
        write_order("BOOT_ORDER", vars, &order);
        vars.insert(Self::left_var(slot), "0");
    }

    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8) {
        let mut order = Self::order_or_empty(vars);
        move_to_front(&mut order, slot);
        write_order("BOOT_ORDER", vars, &order);
        vars.insert(Self::left_var(slot), attempts.to_string());
        // bootmeth_rauc refuses to boot when a slot in BOOT_ORDER lacks _LEFT.
        let other = Self::left_var(slot.other());
        vars.entry(other).or_insert_with(|| "0".into());
    }

    fn set_good(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8) {
        vars.insert(Self::left_var(slot), attempts.to_string());
    }

    fn boot(&self, vars: &mut EnvVars, attempts: u8) -> BootDecision {
        // RAUC's documented boot.cmd: first slot in BOOT_ORDER with _LEFT > 0,
        // decrement and saveenv; none: reset both counters and reset.
        for slot in Self::order_or_empty(vars) {
            let left = Self::read_left(vars, slot).unwrap_or(0);
            if left > 0 {
                vars.insert(Self::left_var(slot), (left - 1).to_string());
                return BootDecision::Boot(slot);
            }
        }
        for slot in SlotName::ALL {
            vars.insert(Self::left_var(slot), attempts.to_string());
        }
        BootDecision::NoSlotResetCounters
    }
}

/// RAUC's GRUB scheme: `ORDER="A B"`, `A_OK`, `A_TRY`, `B_OK`, `B_TRY`.
///
/// GRUB gives a slot one try: its script boots the first slot with `OK=1, TRY=0`
/// after saving `TRY=1`. A slot is good again only once it is marked good.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaucGrub;

impl RaucGrub {
    fn flag(vars: &EnvVars, slot: SlotName, suffix: &str) -> bool {
        vars.get(&format!("{slot}_{suffix}"))
            .is_some_and(|v| v.to_string().trim() == "1")
    }

    fn set_flags(vars: &mut EnvVars, slot: SlotName, ok: bool, tried: bool) {
        vars.insert(format!("{slot}_OK"), if ok { "1" } else { "0" });
        vars.insert(format!("{slot}_TRY"), if tried { "1" } else { "0" });
    }

    fn order_or_empty(vars: &EnvVars) -> Vec<SlotName> {
        parse_order("ORDER", vars).unwrap_or_default()
    }
}

impl BootScheme for RaucGrub {
    fn name(&self) -> &'static str {
        "rauc-grub"
    }

    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError> {
        let order = parse_order("ORDER", vars)?;
        let tries_of =
            |slot| u8::from(Self::flag(vars, slot, "OK") && !Self::flag(vars, slot, "TRY"));
        Ok(SchemeView {
            order,
            tries: [tries_of(SlotName::A), tries_of(SlotName::B)],
        })
    }

    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName) {
        Self::set_flags(vars, slot, false, false);
    }

    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, _attempts: u8) {
        let mut order = Self::order_or_empty(vars);
        move_to_front(&mut order, slot);
        if !order.contains(&slot.other()) {
            order.push(slot.other());
        }
        write_order("ORDER", vars, &order);
        Self::set_flags(vars, slot, true, false);
    }

    fn set_good(&self, vars: &mut EnvVars, slot: SlotName, _attempts: u8) {
        Self::set_flags(vars, slot, true, false);
    }

    fn boot(&self, vars: &mut EnvVars, _attempts: u8) -> BootDecision {
        for slot in Self::order_or_empty(vars) {
            if Self::flag(vars, slot, "OK") && !Self::flag(vars, slot, "TRY") {
                vars.insert(format!("{slot}_TRY"), "1");
                return BootDecision::Boot(slot);
            }
        }
        // RAUC's grub.cfg: no slot left, reset every TRY and try again.
        for slot in SlotName::ALL {
            vars.insert(format!("{slot}_TRY"), "0");
        }
        BootDecision::NoSlotResetCounters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> EnvVars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn uboot_reads_raucs_variables() {
        let env = vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "0"),
        ]);
        let view = RaucUboot.read(&env).unwrap();
        assert_eq!(view.order, vec![SlotName::B, SlotName::A]);
        assert!(!view.bootable(SlotName::B));
        assert!(view.bootable(SlotName::A));
    }

    #[test]
    fn uboot_bad_removes_from_order_and_zeroes_counter() {
        let mut env = vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "3"),
        ]);
        RaucUboot.set_bad(&mut env, SlotName::B);
        assert_eq!(env["BOOT_ORDER"], "A");
        assert_eq!(env["BOOT_B_LEFT"], "0");
    }

    #[test]
    fn uboot_primary_moves_to_front_and_resets_counter() {
        let mut env = vars(&[
            ("BOOT_ORDER", "A"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "0"),
        ]);
        RaucUboot.set_primary(&mut env, SlotName::B, 3);
        assert_eq!(env["BOOT_ORDER"], "B A");
        assert_eq!(env["BOOT_B_LEFT"], "3");
        assert_eq!(env["BOOT_A_LEFT"], "2");
    }

    #[test]
    fn uboot_boot_takes_a_try_then_falls_back() {
        let mut env = vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "1"),
        ]);
        assert_eq!(RaucUboot.boot(&mut env, 3), BootDecision::Boot(SlotName::B));
        assert_eq!(env["BOOT_B_LEFT"], "0");
        assert_eq!(RaucUboot.boot(&mut env, 3), BootDecision::Boot(SlotName::A));
        assert_eq!(env["BOOT_A_LEFT"], "2");
    }

    #[test]
    fn uboot_boot_with_no_slot_resets_counters() {
        let mut env = vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "0"),
            ("BOOT_B_LEFT", "0"),
        ]);
        assert_eq!(
            RaucUboot.boot(&mut env, 3),
            BootDecision::NoSlotResetCounters
        );
        assert_eq!(env["BOOT_A_LEFT"], "3");
    }

    #[test]
    fn uboot_rejects_non_decimal_counter() {
        let env = vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "x"),
            ("BOOT_B_LEFT", "3"),
        ]);
        let err = RaucUboot.read(&env).unwrap_err();
        assert!(err.to_string().contains("BOOT_A_LEFT"), "{err}");
    }

    #[test]
    fn grub_good_means_ok_and_not_tried() {
        let env = vars(&[
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "1"),
            ("B_OK", "1"),
            ("B_TRY", "0"),
        ]);
        let view = RaucGrub.read(&env).unwrap();
        assert_eq!(view.tries, [0, 1]);
    }

    #[test]
    fn grub_boot_sets_try_and_primary_clears_it() {
        let mut env = vars(&[
            ("ORDER", "A B"),
            ("A_OK", "1"),
            ("A_TRY", "0"),
            ("B_OK", "0"),
            ("B_TRY", "0"),
        ]);
        RaucGrub.set_primary(&mut env, SlotName::B, 3);
        assert_eq!(env["ORDER"], "B A");
        assert_eq!(RaucGrub.boot(&mut env, 3), BootDecision::Boot(SlotName::B));
        assert_eq!(env["B_TRY"], "1");
        // B failed to confirm: next boot falls back to A.
        assert_eq!(RaucGrub.boot(&mut env, 3), BootDecision::Boot(SlotName::A));
    }
}

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
    /// Slots made unbootable on purpose (marked bad, or being written), as opposed
    /// to slots whose tries ran out: GRUB's `x_OK` other than 1. A slot missing from
    /// the order is never bootable either way.
    pub disabled: [bool; 2],
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
    fn boot(&self, vars: &mut EnvVars) -> BootDecision;
}

/// The order the scripts use when their order variable is missing or empty.
pub const DEFAULT_ORDER: &str = "A B";

/// The env variable holding the attempts a new or re-armed slot gets, written by
/// `init-env` and `install` so the U-Boot script can reset counters to the
/// configured value rather than a literal.
pub const ATTEMPTS_VAR: &str = "BASCULE_ATTEMPTS";

/// What bascule writes as `BOOT_ORDER` when no slot is left in it: a word that names
/// no slot, because an empty order means [`DEFAULT_ORDER`] to the script (so an
/// empty order would make every slot bootable again).
pub const NO_SLOT_ORDER: &str = "none";

/// The attempts the shipped U-Boot script uses when [`ATTEMPTS_VAR`] is missing.
pub const SCRIPT_DEFAULT_ATTEMPTS: &str = "3";

/// A variable's value, or `None` when it is missing or empty (U-Boot's `env import`
/// deletes a variable with an empty value, and both scripts test `-n`/`-z`).
fn non_empty<'a>(vars: &'a EnvVars, var: &str) -> Option<&'a [u8]> {
    vars.get(var)
        .map(|v| v.as_bytes())
        .filter(|v| !v.is_empty())
}

/// A word of an order as the scripts compare it: exactly `A` or `B` (case matters).
fn slot_word(word: &[u8]) -> Option<SlotName> {
    match word {
        b"A" => Some(SlotName::A),
        b"B" => Some(SlotName::B),
        _ => None,
    }
}

/// The words of a value as the scripts split it: on blanks, empty words dropped.
fn words(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
}

/// The slots named in an order value, as the scripts read it: words split on
/// whitespace, words other than `A` and `B` skipped, a repeated slot counted once.
fn slots_in_order(value: &[u8]) -> Vec<SlotName> {
    let mut order = Vec::new();
    for slot in words(value).filter_map(slot_word) {
        if !order.contains(&slot) {
            order.push(slot);
        }
    }
    order
}

/// The order variable as the scripts use it: missing or empty means [`DEFAULT_ORDER`].
fn effective_order(vars: &EnvVars, var: &str) -> Vec<u8> {
    non_empty(vars, var)
        .unwrap_or(DEFAULT_ORDER.as_bytes())
        .to_vec()
}

fn write_order(var: &str, vars: &mut EnvVars, order: &[SlotName]) {
    let words: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    vars.insert(var, words.join(" "));
}

fn move_to_front(order: &mut Vec<SlotName>, slot: SlotName) {
    order.retain(|s| *s != slot);
    order.insert(0, slot);
}

/// U-Boot's `simple_strtol(s, NULL, 0)`, which `test A -gt B` applies to both sides:
/// an optional `-`, then `0x` for hex, a leading `0` for octal, decimal otherwise;
/// digits are read up to the first one that does not fit the base; no digit is 0.
pub fn uboot_strtol(s: impl AsRef<[u8]>) -> i64 {
    let s = s.as_ref();
    let (negative, rest) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let value = uboot_strtoul(rest, 0) as i64;
    if negative {
        value.wrapping_neg()
    } else {
        value
    }
}

/// U-Boot's `simple_strtoul(s, NULL, base)` (lib/strto.c): a `0x` prefix selects hex
/// (and is skipped for base 16), a leading `0` selects octal when no base is given.
fn uboot_strtoul(bytes: &[u8], base: u32) -> u64 {
    let (mut base, mut digits) = (base, bytes);
    if bytes.first() == Some(&b'0') {
        if bytes.get(1).is_some_and(|b| b.eq_ignore_ascii_case(&b'x')) {
            base = 16;
            digits = &bytes[2..];
        } else if base == 0 {
            base = 8;
        }
    }
    if base == 0 {
        base = 10;
    }
    let mut result: u64 = 0;
    for &b in digits {
        match (b as char).to_digit(16).filter(|d| *d < base) {
            Some(d) => {
                result = result
                    .wrapping_mul(u64::from(base))
                    .wrapping_add(u64::from(d))
            }
            None => break,
        }
    }
    result
}

/// What `setexpr X ${X} - 1` leaves in `X`: the value read as hex (`hextoul`), one
/// subtracted, printed as lower-case hex without prefix (`env_set_hex`).
pub fn uboot_setexpr_decrement(value: impl AsRef<[u8]>) -> String {
    format!("{:x}", uboot_strtoul(value.as_ref(), 16).wrapping_sub(1))
}

/// RAUC's U-Boot scheme: `BOOT_ORDER="A B"`, `BOOT_A_LEFT=3`, `BOOT_B_LEFT=3`.
///
/// The rules are those of the shipped `bootloader/uboot/boot.cmd`, case by case
/// (the script is the reference; `qemu/` checks this model against the real U-Boot):
///
/// | case                               | the script (and this model)                              |
/// |------------------------------------|----------------------------------------------------------|
/// | `BOOT_ORDER` missing or empty      | set to `A B` (and saved)                                 |
/// | `BOOT_x_LEFT` missing or empty     | set to `BASCULE_ATTEMPTS`, or 3 without it (and saved)   |
/// | a word other than exactly `A`/`B`  | skipped (`a b` names no slot)                            |
/// | a slot may boot                    | `test ${BOOT_x_LEFT} -gt 0`: [`uboot_strtol`] above 0     |
/// | a counter of blanks                | boots and is never decremented (`setexpr` fails)         |
/// | a slot boots                       | `setexpr` decrement: [`uboot_setexpr_decrement`]          |
/// | no slot may boot                   | both counters set to the attempts above, saved, reset    |
///
/// bascule itself only writes decimal counters 0-9 (the config refuses more), where
/// hex and decimal agree.
#[derive(Debug, Clone, Copy, Default)]
pub struct RaucUboot;

impl RaucUboot {
    fn left_var(slot: SlotName) -> String {
        format!("BOOT_{slot}_LEFT")
    }

    /// The value the script gives a missing counter and resets counters to.
    fn script_attempts(vars: &EnvVars) -> Vec<u8> {
        non_empty(vars, ATTEMPTS_VAR)
            .unwrap_or(SCRIPT_DEFAULT_ATTEMPTS.as_bytes())
            .to_vec()
    }

    /// The script's first lines: fill in a missing order and missing counters.
    fn fill_defaults(vars: &mut EnvVars) {
        let order = effective_order(vars, "BOOT_ORDER");
        vars.insert("BOOT_ORDER", order);
        let attempts = Self::script_attempts(vars);
        for slot in SlotName::ALL {
            if non_empty(vars, &Self::left_var(slot)).is_none() {
                vars.insert(Self::left_var(slot), attempts.clone());
            }
        }
    }

    /// Tries left as the script's `test -gt 0` sees them, after [`Self::fill_defaults`].
    /// A counter of blanks expands to no word at all: `test -gt 0` is then true and
    /// `setexpr` fails, so such a slot boots every time (bascule never writes one).
    fn tries_left(vars: &EnvVars, slot: SlotName) -> u8 {
        let value = non_empty(vars, &Self::left_var(slot)).unwrap_or(b"0");
        let Some(word) = words(value).next() else {
            return u8::MAX;
        };
        u8::try_from(uboot_strtol(word).max(0)).unwrap_or(u8::MAX)
    }

    fn order_written(vars: &EnvVars) -> Vec<SlotName> {
        slots_in_order(&effective_order(vars, "BOOT_ORDER"))
    }
}

impl BootScheme for RaucUboot {
    fn name(&self) -> &'static str {
        "rauc-uboot"
    }

    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError> {
        let mut filled = vars.clone();
        Self::fill_defaults(&mut filled);
        Ok(SchemeView {
            order: Self::order_written(&filled),
            tries: SlotName::ALL.map(|s| Self::tries_left(&filled, s)),
            disabled: [false; 2],
        })
    }

    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName) {
        let mut order = Self::order_written(vars);
        order.retain(|s| *s != slot);
        if order.is_empty() {
            vars.insert("BOOT_ORDER", NO_SLOT_ORDER);
        } else {
            write_order("BOOT_ORDER", vars, &order);
        }
        vars.insert(Self::left_var(slot), "0");
    }

    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8) {
        let mut order = Self::order_written(vars);
        move_to_front(&mut order, slot);
        write_order("BOOT_ORDER", vars, &order);
        vars.insert(Self::left_var(slot), attempts.to_string());
        vars.insert(ATTEMPTS_VAR, attempts.to_string());
        // bootmeth_rauc refuses to boot when a slot in BOOT_ORDER lacks _LEFT.
        let other = Self::left_var(slot.other());
        if non_empty(vars, &other).is_none() {
            vars.insert(other, "0");
        }
    }

    fn set_good(&self, vars: &mut EnvVars, slot: SlotName, attempts: u8) {
        vars.insert(Self::left_var(slot), attempts.to_string());
    }

    fn boot(&self, vars: &mut EnvVars) -> BootDecision {
        Self::fill_defaults(vars);
        let order = effective_order(vars, "BOOT_ORDER");
        for slot in words(&order).filter_map(slot_word) {
            if Self::tries_left(vars, slot) > 0 {
                let var = Self::left_var(slot);
                let next = words(vars[&var].as_bytes())
                    .next()
                    .map(uboot_setexpr_decrement);
                if let Some(next) = next {
                    vars.insert(var, next);
                }
                return BootDecision::Boot(slot);
            }
        }
        let attempts = Self::script_attempts(vars);
        for slot in SlotName::ALL {
            vars.insert(Self::left_var(slot), attempts.clone());
        }
        BootDecision::NoSlotResetCounters
    }
}

/// RAUC's GRUB scheme: `ORDER="A B"`, `A_OK`, `A_TRY`, `B_OK`, `B_TRY`.
///
/// GRUB gives a slot one try: its script boots the first slot with `OK=1, TRY=0`
/// after saving `TRY=1`. A slot is good again only once it is marked good. As in the
/// shipped `bootloader/grub/grub.cfg`: a missing or empty `ORDER` means `A B` (not
/// saved: the script saves only the `TRY` flags); a missing `x_OK`/`x_TRY` is `0`;
/// flags are compared as exact strings (`"$A_OK" = "1"`, `"$A_TRY" = "0"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RaucGrub;

impl RaucGrub {
    /// The flag as the script's `[ "$x" = "v" ]` sees it (missing = "0").
    fn flag_is(vars: &EnvVars, slot: SlotName, suffix: &str, expected: &str) -> bool {
        vars.get(&format!("{slot}_{suffix}"))
            .map_or(&b"0"[..], |v| v.as_bytes())
            == expected.as_bytes()
    }

    fn may_boot(vars: &EnvVars, slot: SlotName) -> bool {
        Self::flag_is(vars, slot, "OK", "1") && Self::flag_is(vars, slot, "TRY", "0")
    }

    fn set_flags(vars: &mut EnvVars, slot: SlotName, ok: bool, tried: bool) {
        vars.insert(format!("{slot}_OK"), if ok { "1" } else { "0" });
        vars.insert(format!("{slot}_TRY"), if tried { "1" } else { "0" });
    }

    fn order_written(vars: &EnvVars) -> Vec<SlotName> {
        slots_in_order(&effective_order(vars, "ORDER"))
    }
}

impl BootScheme for RaucGrub {
    fn name(&self) -> &'static str {
        "rauc-grub"
    }

    fn read(&self, vars: &EnvVars) -> Result<SchemeView, SchemeError> {
        Ok(SchemeView {
            order: Self::order_written(vars),
            tries: SlotName::ALL.map(|s| u8::from(Self::may_boot(vars, s))),
            disabled: SlotName::ALL.map(|s| !Self::flag_is(vars, s, "OK", "1")),
        })
    }

    fn set_bad(&self, vars: &mut EnvVars, slot: SlotName) {
        Self::set_flags(vars, slot, false, false);
    }

    fn set_primary(&self, vars: &mut EnvVars, slot: SlotName, _attempts: u8) {
        let mut order = Self::order_written(vars);
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

    fn boot(&self, vars: &mut EnvVars) -> BootDecision {
        for slot in Self::order_written(vars) {
            if Self::may_boot(vars, slot) {
                // `save_env A_TRY B_TRY` saves both, a missing one as the script's 0.
                let other = format!("{}_TRY", slot.other());
                if vars.get(&other).is_none() {
                    vars.insert(other, "0");
                }
                vars.insert(format!("{slot}_TRY"), "1");
                return BootDecision::Boot(slot);
            }
        }
        // No slot left: the script resets every TRY, saves, and reboots.
        for slot in SlotName::ALL {
            vars.insert(format!("{slot}_TRY"), "0");
        }
        BootDecision::NoSlotResetCounters
    }
}

#[cfg(test)]
mod tests;

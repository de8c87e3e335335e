//! Which slot is running: read from the kernel command line the bootloader wrote.
//!
//! The bootloader script appends `bascule.slot=A` (or RAUC's `rauc.slot=A`, which
//! U-Boot's `bootmeth_rauc` passes). If the command line names no slot, or names two
//! different ones, the answer is "unknown" and every writing command refuses: an
//! updater that guesses the booted slot can overwrite the system it runs from.
use bascule_partitions::SlotName;

/// Why the booted slot could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootedSlotError {
    #[error(
        "the kernel command line names no booted slot (expected {keys}=A or =B); refusing to guess"
    )]
    NotNamed { keys: String },
    #[error("the kernel command line names slot {value:?} via {key}, which is not A or B")]
    BadValue { key: String, value: String },
    #[error("the kernel command line names two different booted slots ({first} and {second})")]
    Conflicting { first: SlotName, second: SlotName },
}

/// Finds the booted slot in `cmdline`, looking for each of `keys`.
pub fn booted_slot(cmdline: &str, keys: &[&str]) -> Result<SlotName, BootedSlotError> {
    let mut found: Option<SlotName> = None;
    for word in cmdline.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        if !keys.contains(&key) {
            continue;
        }
        let slot = value
            .parse::<SlotName>()
            .map_err(|_| BootedSlotError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
            })?;
        match found {
            Some(first) if first != slot => {
                return Err(BootedSlotError::Conflicting {
                    first,
                    second: slot,
                })
            }
            _ => found = Some(slot),
        }
    }
    found.ok_or_else(|| BootedSlotError::NotNamed {
        keys: keys.join(" or "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["bascule.slot", "rauc.slot"];

    #[test]
    fn finds_either_key() {
        assert_eq!(
            booted_slot("console=ttyS0 bascule.slot=B quiet", KEYS),
            Ok(SlotName::B)
        );
        assert_eq!(
            booted_slot("root=/dev/vda2 rauc.slot=A", KEYS),
            Ok(SlotName::A)
        );
    }

    #[test]
    fn refuses_when_unsure() {
        assert!(matches!(
            booted_slot("console=ttyS0", KEYS),
            Err(BootedSlotError::NotNamed { .. })
        ));
        assert!(matches!(
            booted_slot("bascule.slot=C", KEYS),
            Err(BootedSlotError::BadValue { .. })
        ));
        assert!(matches!(
            booted_slot("bascule.slot=A rauc.slot=B", KEYS),
            Err(BootedSlotError::Conflicting { .. })
        ));
    }
}

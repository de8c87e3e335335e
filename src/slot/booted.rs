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

/// The root device path the kernel command line names (`root=/dev/...`), if it names
/// one by path (not `PARTUUID=` or `LABEL=`).
pub fn root_device(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("root="))
        .next_back()
        .filter(|value| value.starts_with('/'))
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
    fn root_device_is_the_last_root_by_path() {
        assert_eq!(
            root_device("root=/dev/vda2 ro root=/dev/vda3"),
            Some("/dev/vda3")
        );
        assert_eq!(root_device("root=PARTUUID=1234-02"), None);
        assert_eq!(root_device("quiet"), None);
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

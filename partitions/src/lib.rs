//! Slot layout: which slot classes a device has, which slots each class holds, and
//! where each slot lives.
//!
//! A device has one or more A/B slot classes (`rootfs`, maybe `appfs`), each with
//! exactly two slots named [`SlotName::A`] and [`SlotName::B`], and optionally one
//! `data` slot for per-binary installs and state that survives updates. A slot is a
//! window of a file or block device ([`SlotSpec`]). Two slots never overlap: a layout
//! where they do is refused when it is loaded, so an install into one slot can never
//! touch another.
//!
//! [`disk_layout`] is the factory's view: the whole GPT disk a provisioning station
//! writes (`layout.toml`).
pub mod disk_layout;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the two slots of an A/B class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlotName {
    A,
    B,
}

impl SlotName {
    /// Both slots, in order.
    pub const ALL: [SlotName; 2] = [SlotName::A, SlotName::B];

    /// The slot that is not `self`.
    pub fn other(self) -> SlotName {
        match self {
            SlotName::A => SlotName::B,
            SlotName::B => SlotName::A,
        }
    }

    /// The name as a bootloader writes it ("A" or "B").
    pub fn as_str(self) -> &'static str {
        match self {
            SlotName::A => "A",
            SlotName::B => "B",
        }
    }

    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            SlotName::A => 0,
            SlotName::B => 1,
        }
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SlotName {
    type Err = LayoutError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" | "a" => Ok(SlotName::A),
            "B" | "b" => Ok(SlotName::B),
            other => Err(LayoutError::BadSlotName(other.to_string())),
        }
    }
}

/// Where a slot lives: `size` bytes at `offset` of `device` (the rest of the device
/// when `size` is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    pub device: PathBuf,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub size: Option<u64>,
}

impl SlotSpec {
    fn resolved(&self, base: &Path) -> SlotSpec {
        SlotSpec {
            device: base.join(&self.device),
            ..self.clone()
        }
    }

    fn overlaps(&self, other: &SlotSpec) -> bool {
        if self.device != other.device {
            return false;
        }
        let end = |s: &SlotSpec| s.size.map_or(u64::MAX, |n| s.offset.saturating_add(n));
        self.offset < end(other) && other.offset < end(self)
    }
}

/// The two slots of one A/B class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbPair {
    #[serde(rename = "A")]
    pub a: SlotSpec,
    #[serde(rename = "B")]
    pub b: SlotSpec,
}

impl AbPair {
    /// The spec of slot `name`.
    pub fn get(&self, name: SlotName) -> &SlotSpec {
        match name {
            SlotName::A => &self.a,
            SlotName::B => &self.b,
        }
    }
}

/// The slot layout of a device, as written in the `[slots]` and `[data]` tables of
/// `system.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// A/B slot classes by name (`rootfs`, ...).
    pub slots: BTreeMap<String, AbPair>,
    /// The data/overlay slot, if the device has one.
    #[serde(default)]
    pub data: Option<SlotSpec>,
}

/// A layout that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("slot name {0:?} is not A or B")]
    BadSlotName(String),
    #[error("the layout has no slot class (add [slots.rootfs.A] and [slots.rootfs.B])")]
    NoSlotClass,
    #[error("slot {first} overlaps slot {second} on {device}")]
    Overlap {
        first: String,
        second: String,
        device: PathBuf,
    },
    #[error("slot class {class:?} is not in the layout (known: {known})")]
    UnknownClass { class: String, known: String },
}

impl Layout {
    /// Resolves relative device paths against `base` (the config file's directory)
    /// and checks that no two slots overlap.
    pub fn resolve(&self, base: &Path) -> Result<Layout, LayoutError> {
        if self.slots.is_empty() {
            return Err(LayoutError::NoSlotClass);
        }
        let slots = self
            .slots
            .iter()
            .map(|(class, pair)| {
                let pair = AbPair {
                    a: pair.a.resolved(base),
                    b: pair.b.resolved(base),
                };
                (class.clone(), pair)
            })
            .collect();
        let layout = Layout {
            slots,
            data: self.data.as_ref().map(|d| d.resolved(base)),
        };
        layout.check_overlaps()?;
        Ok(layout)
    }

    /// Every slot with a name for messages ("rootfs.A", "data").
    pub fn all_slots(&self) -> Vec<(String, &SlotSpec)> {
        let mut all = Vec::new();
        for (class, pair) in &self.slots {
            for name in SlotName::ALL {
                all.push((format!("{class}.{name}"), pair.get(name)));
            }
        }
        if let Some(data) = &self.data {
            all.push(("data".to_string(), data));
        }
        all
    }

    /// The pair of slots of `class`.
    pub fn class(&self, class: &str) -> Result<&AbPair, LayoutError> {
        self.slots
            .get(class)
            .ok_or_else(|| LayoutError::UnknownClass {
                class: class.to_string(),
                known: self.slots.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    fn check_overlaps(&self) -> Result<(), LayoutError> {
        let all = self.all_slots();
        for (i, (first, a)) in all.iter().enumerate() {
            for (second, b) in &all[i + 1..] {
                if a.overlaps(b) {
                    return Err(LayoutError::Overlap {
                        first: first.clone(),
                        second: second.clone(),
                        device: a.device.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Layout {
        toml::from_str(text).unwrap()
    }

    const TWO_WINDOWS: &str = r#"
        [slots.rootfs.A]
        device = "disk.img"
        offset = 0
        size = 1024
        [slots.rootfs.B]
        device = "disk.img"
        offset = 1024
        size = 1024
    "#;

    #[test]
    fn relative_devices_resolve_against_the_config_directory() {
        let layout = parse(TWO_WINDOWS)
            .resolve(Path::new("/etc/bascule"))
            .unwrap();
        let pair = layout.class("rootfs").unwrap();
        assert_eq!(
            pair.get(SlotName::B).device,
            Path::new("/etc/bascule/disk.img")
        );
        assert_eq!(pair.get(SlotName::B).offset, 1024);
    }

    #[test]
    fn overlapping_slots_are_refused() {
        let text = TWO_WINDOWS.replace("offset = 1024", "offset = 1000");
        let err = parse(&text).resolve(Path::new("/")).unwrap_err();
        assert!(matches!(err, LayoutError::Overlap { .. }), "{err}");
    }

    #[test]
    fn open_ended_slot_overlaps_everything_after_it() {
        let text = TWO_WINDOWS.replacen("size = 1024", "", 1);
        let err = parse(&text).resolve(Path::new("/")).unwrap_err();
        assert!(matches!(err, LayoutError::Overlap { .. }));
    }

    #[test]
    fn unknown_class_names_the_known_ones() {
        let layout = parse(TWO_WINDOWS);
        let err = layout.class("appfs").unwrap_err();
        assert_eq!(
            err.to_string(),
            "slot class \"appfs\" is not in the layout (known: rootfs)"
        );
    }

    #[test]
    fn slot_names_parse_and_pair() {
        assert_eq!("B".parse::<SlotName>().unwrap().other(), SlotName::A);
        assert!("C".parse::<SlotName>().is_err());
    }
}

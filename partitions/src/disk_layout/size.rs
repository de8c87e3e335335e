//! Byte sizes as a layout writes them: a plain integer, or text with a binary unit
//! (`"512"`, `"64KiB"`, `"1 MiB"`, `"2GiB"`), and the two words `"rest"` (a
//! partition: the space up to the next fixed start or the end of the disk) and
//! `"device"` (the disk: the whole device it is written to).
use serde::{Deserialize, Serialize};

/// A size as written in the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeText {
    Bytes(u64),
    Text(String),
}

/// A size once read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    /// `"rest"`.
    Rest,
    /// `"device"`.
    Device,
}

impl SizeText {
    /// The size, or `None` when the text is not a size.
    pub fn read(&self) -> Option<Size> {
        let text = match self {
            SizeText::Bytes(n) => return Some(Size::Bytes(*n)),
            SizeText::Text(t) => t.trim(),
        };
        match text {
            "rest" => return Some(Size::Rest),
            "device" => return Some(Size::Device),
            _ => {}
        }
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().ok()?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" | "K" => 10,
            "MiB" | "M" => 20,
            "GiB" | "G" => 30,
            "TiB" | "T" => 40,
            _ => return None,
        };
        number.checked_mul(1 << shift).map(Size::Bytes)
    }

    /// The size in bytes; `None` for `"rest"`, `"device"` or not a size.
    pub fn bytes(&self) -> Option<u64> {
        match self.read()? {
            Size::Bytes(n) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for SizeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeText::Bytes(n) => write!(f, "{n}"),
            SizeText::Text(t) => write!(f, "{t:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units() {
        let t = |s: &str| SizeText::Text(s.into()).read();
        assert_eq!(t("64MiB"), Some(Size::Bytes(64 << 20)));
        assert_eq!(t("1 GiB"), Some(Size::Bytes(1 << 30)));
        assert_eq!(t("512"), Some(Size::Bytes(512)));
        assert_eq!(t("rest"), Some(Size::Rest));
        assert_eq!(t("device"), Some(Size::Device));
        assert_eq!(SizeText::Bytes(7).read(), Some(Size::Bytes(7)));
        for bad in ["", "MiB", "1.5GiB", "64MB", "-1", "99999999999999999999GiB"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }
}

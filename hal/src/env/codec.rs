//! Errors of the pure environment codecs (U-Boot, GRUB, native), shared so that a
//! store can name the copy and the place of a failure in one [`HalError`].
//!
//! Codecs know nothing of devices: a [`DecodeError`] says what is wrong inside one
//! copy (with byte offsets relative to that copy), an [`EncodeError`] what cannot be
//! stored. The stores turn them into [`HalError::EnvCorrupt`], [`HalError::EnvTooLarge`]
//! or [`HalError::EnvInvalidVar`] naming themselves, the copy and its device offset.
use alloc::string::String;

use crate::HalError;

/// Why one stored copy of an environment cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer does not have the size the layout says.
    #[error("{len} bytes, expected {expected}")]
    WrongSize { len: usize, expected: usize },
    /// The stored CRC32 does not match the content.
    #[error("CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    /// A variable runs to the end of the data area without its terminator.
    #[error("variable at byte {offset} is not terminated")]
    Unterminated { offset: usize },
    /// The block does not start with its signature or magic number.
    #[error("bad signature at byte 0, expected {expected}")]
    BadSignature { expected: &'static str },
    /// A header field has a value this reader does not support.
    #[error("unsupported {field} {found} (supported: {supported})")]
    Unsupported {
        field: &'static str,
        found: u64,
        supported: u64,
    },
    /// A length field points past the end of the copy.
    #[error("{field} {found} exceeds the {max} bytes available")]
    LengthOutOfRange {
        field: &'static str,
        found: u64,
        max: u64,
    },
    /// The payload does not decode.
    #[error("payload does not decode: {0}")]
    Payload(&'static str),
}

/// Why an environment cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The encoded variables need more bytes than the copy holds.
    TooLarge { needed: usize, available: usize },
    /// A name or value contains something the format cannot represent.
    InvalidVar { name: String, reason: &'static str },
}

impl EncodeError {
    /// The error as a [`HalError`] naming `store`.
    pub fn into_hal(self, store: &str) -> HalError {
        match self {
            EncodeError::TooLarge { needed, available } => HalError::EnvTooLarge {
                store: String::from(store),
                needed,
                available,
            },
            EncodeError::InvalidVar { name, reason } => HalError::EnvInvalidVar {
                store: String::from(store),
                name,
                reason,
            },
        }
    }
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::TooLarge { needed, available } => {
                write!(f, "needs {needed} bytes, {available} available")
            }
            EncodeError::InvalidVar { name, reason } => write!(f, "variable {name:?}: {reason}"),
        }
    }
}

/// CRC-32 as zlib's `crc32()` computes it (the one U-Boot uses).
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

/// Whether `bytes` are erased storage: all 0x00 or all 0xff (flash after an erase,
/// a zeroed image). An empty slice counts as erased.
pub fn is_erased(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0) || bytes.iter().all(|&b| b == 0xff)
}

/// Reads a little-endian u32 at `at`; `None` when the slice is too short.
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn erased_means_one_fill_byte() {
        assert!(is_erased(&[0; 8]) && is_erased(&[0xff; 8]) && is_erased(&[]));
        assert!(!is_erased(&[0, 0xff]) && !is_erased(&[0xff, 0xff, 1]));
    }

    #[test]
    fn encode_error_names_the_store() {
        let e = EncodeError::TooLarge {
            needed: 9,
            available: 4,
        }
        .into_hal("env0");
        assert_eq!(
            alloc::format!("{e}"),
            "env0: environment needs 9 bytes but only 4 are available"
        );
    }
}

//! The bundle wire format: the fixed header and its limits. Pure, no I/O.
//!
//! A bundle is four sections, read front to back without seeking:
//!
//! ```text
//! offset                      size            section
//! 0                           32              header
//! 32                          72              signature block
//! 104                         manifest_len    manifest (postcard)
//! 104 + manifest_len          sum(stored_len) payload
//! ```
//!
//! # Header (32 bytes, integers little-endian)
//!
//! | offset | size | field             | rule                                              |
//! |-------:|-----:|-------------------|---------------------------------------------------|
//! | 0      | 8    | magic             | `b"BASCULE\0"`                                    |
//! | 8      | 2    | format_version    | `1` ([`FORMAT_VERSION`]), else `UnsupportedFormat` |
//! | 10     | 2    | required_features | bitset, see [`FEATURES`]: [`FEATURE_XZ`] (bit 0) if an image is xz, [`FEATURE_MIN_FROM_VERSION`] (bit 1) if the manifest has `min_from_version`; a bit outside [`FEATURES_KNOWN`] is `UnknownRequiredFeatures`, refused by its number before the manifest is read |
//! | 12     | 4    | manifest_len      | `<=` [`MAX_MANIFEST_LEN`] (8 MiB), checked before allocating |
//! | 16     | 2    | sig_block_len     | `72` ([`SIG_BLOCK_LEN`])                          |
//! | 18     | 14   | reserved          | all zero                                          |
//!
//! There is no header CRC. Every header field is either checked for an exact value
//! (magic, sig_block_len, reserved), bounded (manifest_len: a wrong value reads the
//! wrong bytes as manifest and fails the signature), or repeated in the signed manifest
//! and compared after verification (format_version, required_features). So a flipped
//! header bit is already caught by a check that names the field; a CRC would only add
//! an unauthenticated second opinion in front of them.
//!
//! # Signature block (72 bytes)
//!
//! | offset | size | field     |                                                      |
//! |-------:|-----:|-----------|------------------------------------------------------|
//! | 0      | 8    | key_id    | first 8 bytes of SHA-256 of the 32-byte ed25519 public key |
//! | 8      | 64   | signature | ed25519 (`verify_strict`) over the exact manifest bytes |
//!
//! # Manifest
//!
//! `manifest_len` bytes of postcard ([`Manifest`](super::Manifest)); decoded only after
//! the signature is verified, then validated by [`Manifest::validate`](super::Manifest::validate).
//!
//! # Payload
//!
//! The images in manifest order; each image as its chunks in order; each chunk
//! `stored_len` bytes: the raw bytes (`Compression::None`), exactly one independent
//! zstd frame (`Compression::Zstd`) or xz stream (`Compression::Xz`). The payload offset of every chunk is therefore
//! computable from the manifest alone ([`Manifest::chunk_payload_offset`](super::Manifest::chunk_payload_offset)),
//! ready for HTTP Range resume and chunk-level delta updates. Nothing follows the payload.
//!
//! # Example
//!
//! ```
//! use bascule::bundle::format::{parse_header, Header, HEADER_LEN, MAGIC};
//!
//! let header = Header::new(1234);
//! let bytes: [u8; HEADER_LEN] = header.encode();
//! assert_eq!(&bytes[..8], &MAGIC);
//! assert_eq!(&bytes[12..16], &1234u32.to_le_bytes());
//! assert_eq!(parse_header(&bytes).unwrap(), header);
//!
//! let mut bad = bytes;
//! bad[10] = 0x80; // a required feature this bascule does not know
//! assert!(parse_header(&bad).unwrap_err().to_string().contains("bit 7 (0x0080)"));
//! ```

use super::BundleError;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// The 8 magic bytes every bundle starts with.
pub const MAGIC: [u8; 8] = *b"BASCULE\0";
/// The only format version this reader understands.
pub const FORMAT_VERSION: u16 = 1;
/// Required-feature bit: some image is xz-compressed ([`Compression::Xz`](super::Compression::Xz)).
pub const FEATURE_XZ: u16 = 1 << 0;
/// Required-feature bit: the manifest carries `min_from_version`
/// ([`Manifest::min_from_version`](super::Manifest::min_from_version)), appended after
/// the version-1 fields.
pub const FEATURE_MIN_FROM_VERSION: u16 = 1 << 1;
/// Every required-feature bit this reader understands, with the name that errors,
/// `bundle info` and `docs/bundle-format.md` use for it. A new bit is added here, in
/// the docs' table, and nowhere else.
pub const FEATURES: [(u16, &str); 2] = [
    (FEATURE_XZ, "xz"),
    (FEATURE_MIN_FROM_VERSION, "min-from-version"),
];
/// Required-feature bits this reader understands.
pub const FEATURES_KNOWN: u16 = FEATURE_XZ | FEATURE_MIN_FROM_VERSION;
/// The version of this bascule, named in refusals of bundles from the future.
pub const READER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest manifest accepted, checked before the manifest buffer is allocated.
pub const MAX_MANIFEST_LEN: u32 = 8 * 1024 * 1024;
/// Length of the key id in the signature block.
pub const KEY_ID_LEN: usize = 8;
/// Length of the ed25519 signature in the signature block.
pub const SIGNATURE_LEN: usize = 64;
/// Length of the signature block: key id + signature.
pub const SIG_BLOCK_LEN: u16 = (KEY_ID_LEN + SIGNATURE_LEN) as u16;
/// Offset of the reserved bytes, which must be zero.
const RESERVED_AT: usize = 18;

/// The decoded fixed header. Construct with [`Header::new`] or [`parse_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format_version: u16,
    pub required_features: u16,
    pub manifest_len: u32,
    pub sig_block_len: u16,
}

impl Header {
    /// The header this bascule writes for a manifest of `manifest_len` bytes.
    pub fn new(manifest_len: u32) -> Header {
        Header {
            format_version: FORMAT_VERSION,
            required_features: 0,
            manifest_len,
            sig_block_len: SIG_BLOCK_LEN,
        }
    }

    /// The 32 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.format_version.to_le_bytes());
        b[10..12].copy_from_slice(&self.required_features.to_le_bytes());
        b[12..16].copy_from_slice(&self.manifest_len.to_le_bytes());
        b[16..18].copy_from_slice(&self.sig_block_len.to_le_bytes());
        b
    }

    /// Offset of the first manifest byte in the bundle.
    pub fn manifest_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.sig_block_len)
    }

    /// Offset of the first payload byte in the bundle.
    pub fn payload_offset(&self) -> u64 {
        self.manifest_offset() + u64::from(self.manifest_len)
    }
}

/// Decodes and checks the fixed header, in field order: magic, format version,
/// required features, manifest length bound, signature block length, reserved bytes.
pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Result<Header, BundleError> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    if bytes[0..8] != MAGIC {
        return Err(BundleError::BadMagic);
    }
    let format_version = u16_at(8);
    if format_version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedFormat {
            found: format_version,
        });
    }
    let required_features = u16_at(10);
    check_features(required_features, FEATURES_KNOWN)?;
    let manifest_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if manifest_len > MAX_MANIFEST_LEN {
        return Err(BundleError::ManifestTooLarge {
            len: manifest_len,
            max: MAX_MANIFEST_LEN,
        });
    }
    let sig_block_len = u16_at(16);
    if sig_block_len != SIG_BLOCK_LEN {
        return Err(BundleError::SignatureBlockLen {
            len: sig_block_len,
            expected: SIG_BLOCK_LEN,
        });
    }
    if let Some(i) = bytes[RESERVED_AT..].iter().position(|&b| b != 0) {
        return Err(BundleError::HeaderReserved {
            offset: RESERVED_AT + i,
        });
    }
    Ok(Header {
        format_version,
        required_features,
        manifest_len,
        sig_block_len,
    })
}

/// Refuses `required` if it has a bit outside `known` (this reader's [`FEATURES_KNOWN`];
/// a parameter so a test can play an older reader).
pub(crate) fn check_features(required: u16, known: u16) -> Result<(), BundleError> {
    match required & !known {
        0 => Ok(()),
        bits => Err(BundleError::UnknownRequiredFeatures { bits }),
    }
}

/// The bits of `bits` as text: `` `xz` (bit 0), bit 5 `` (a name where this reader
/// knows one, the bit number always).
pub fn describe_features(bits: u16) -> String {
    let named: Vec<String> = (0..16)
        .map(|n| 1u16 << n)
        .filter(|bit| bits & bit != 0)
        .map(|bit| match FEATURES.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => format!("`{name}` (bit {})", bit.trailing_zeros()),
            None => format!("bit {}", bit.trailing_zeros()),
        })
        .collect();
    if named.is_empty() {
        "none".into()
    } else {
        named.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> [u8; HEADER_LEN] {
        Header::new(4321).encode()
    }

    #[test]
    fn header_round_trip() {
        let h = Header::new(4321);
        let bytes = h.encode();
        assert_eq!(parse_header(&bytes), Ok(h));
        assert_eq!(h.manifest_offset(), 104);
        assert_eq!(h.payload_offset(), 104 + 4321);
    }

    #[test]
    fn header_layout_is_stable() {
        let bytes = good();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"BASCULE\0");
        expected.extend_from_slice(&[1, 0, 0, 0]);
        expected.extend_from_slice(&4321u32.to_le_bytes());
        expected.extend_from_slice(&[72, 0]);
        expected.extend_from_slice(&[0; 14]);
        assert_eq!(bytes.to_vec(), expected);
    }

    #[test]
    fn header_rejects_bad_magic() {
        let mut b = good();
        b[3] ^= 0x20;
        assert_eq!(parse_header(&b), Err(BundleError::BadMagic));
    }

    #[test]
    fn header_rejects_other_format_version() {
        let mut b = good();
        b[8] = 2;
        assert_eq!(
            parse_header(&b),
            Err(BundleError::UnsupportedFormat { found: 2 })
        );
    }

    #[test]
    fn header_rejects_unknown_required_features() {
        let mut b = good();
        b[10] = 0x03; // xz and min-from-version (known) and bit 15 (not)
        b[11] = 0x80;
        let err = parse_header(&b).unwrap_err();
        assert_eq!(err, BundleError::UnknownRequiredFeatures { bits: 0x8000 });
        assert_eq!(
            err.to_string(),
            format!(
                "bundle needs required feature bit 15 (0x8000), which this bascule \
                 ({READER_VERSION}) does not know (it knows `xz` (bit 0), `min-from-version` \
                 (bit 1)); see \"Required features\" in docs/bundle-format.md, and install a \
                 newer bascule first"
            )
        );
    }

    /// The reader before `min_from_version` knew only xz: it refuses a bundle using the
    /// field by the bit's number, before reading the manifest.
    #[test]
    fn an_older_reader_refuses_min_from_version_by_its_bit() {
        let mut h = Header::new(100);
        h.required_features = FEATURE_MIN_FROM_VERSION | FEATURE_XZ;
        let bytes = h.encode();
        assert_eq!(parse_header(&bytes), Ok(h));
        let older = check_features(u16_at(&bytes, 10), FEATURE_XZ).unwrap_err();
        assert_eq!(older, BundleError::UnknownRequiredFeatures { bits: 0b10 });
        assert!(older.to_string().contains("bit 1 (0x0002)"), "{older}");
    }

    #[test]
    fn features_are_named_where_known_and_numbered_always() {
        assert_eq!(describe_features(0), "none");
        assert_eq!(
            describe_features(0b11),
            "`xz` (bit 0), `min-from-version` (bit 1)"
        );
        assert_eq!(describe_features(0x8001), "`xz` (bit 0), bit 15");
        let known: u16 = FEATURES.iter().fold(0, |acc, (bit, _)| acc | bit);
        assert_eq!(known, FEATURES_KNOWN);
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn header_rejects_hostile_manifest_len() {
        let mut b = good();
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_header(&b),
            Err(BundleError::ManifestTooLarge {
                len: u32::MAX,
                max: MAX_MANIFEST_LEN
            })
        );
        b[12..16].copy_from_slice(&(MAX_MANIFEST_LEN + 1).to_le_bytes());
        assert!(matches!(
            parse_header(&b),
            Err(BundleError::ManifestTooLarge { .. })
        ));
        b[12..16].copy_from_slice(&MAX_MANIFEST_LEN.to_le_bytes());
        assert!(parse_header(&b).is_ok());
    }

    #[test]
    fn header_rejects_other_signature_block_len() {
        let mut b = good();
        b[16] = 73;
        assert_eq!(
            parse_header(&b),
            Err(BundleError::SignatureBlockLen {
                len: 73,
                expected: 72
            })
        );
    }

    #[test]
    fn header_rejects_nonzero_reserved() {
        for offset in RESERVED_AT..HEADER_LEN {
            let mut b = good();
            b[offset] = 1;
            assert_eq!(
                parse_header(&b),
                Err(BundleError::HeaderReserved { offset })
            );
        }
    }
}

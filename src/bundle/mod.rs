//! Signed, streaming release bundles: create them, authenticate them, read them front to back.
//!
//! A bundle is `header | signature block | manifest | payload` (byte layout in
//! [`format`](mod@format) and `docs/bundle-format.md`). The reader never seeks, so a bundle can come
//! from stdin or an HTTP body.
//!
//! Invariants every reader path keeps:
//! - **Bound before you buffer**: every declared length is checked against a named
//!   constant ([`MAX_MANIFEST_LEN`], the chunk bounds of [`Manifest::validate`]) before a
//!   buffer of that size is allocated; decompression is bounded by the chunk's raw length.
//! - **Authenticate before you parse**: the ed25519 signature over the raw manifest bytes
//!   is checked against the [`Keyring`] before a single manifest byte is decoded. The
//!   header fields that change how the rest is read are repeated in the signed manifest
//!   and compared after verification.
//! - Payload bytes are trusted only through the signed manifest: every chunk is checked
//!   against its SHA-256 ([`decode_chunk`]), every image against its size and SHA-256
//!   ([`ImageHasher`]).

mod chunk;
mod create;
pub mod format;
mod keys;
mod manifest;
mod reader;
mod sha256x2;
mod xz;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;

pub use chunk::{
    check_chunks, decode_chunk, decode_chunk_unchecked, raw_chunk_unchecked, verify_raw_chunk,
    written_chunk_unchecked, ChunkBuf, UncheckedChunk,
};
pub use create::{create_bundle, CreateOptions};
pub use format::{
    describe_features, parse_header, Header, FEATURES, FEATURES_KNOWN, FEATURE_MIN_FROM_VERSION,
    FEATURE_XZ, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_MANIFEST_LEN, READER_VERSION, SIG_BLOCK_LEN,
};
pub use keys::{keygen, load_public_key, load_signing_key, KeyId, Keyring};
pub use manifest::{
    max_stored_len, ChunkEntry, ChunkRef, Compression, ImageEntry, Manifest, MAX_CHUNK_SIZE,
    MAX_IMAGES, MAX_STRING_LEN, MIN_CHUNK_SIZE,
};
pub use reader::{BundleReader, ImageHasher};

/// Everything that can go wrong creating, authenticating or reading a bundle.
///
/// One variant per check, each naming the place; messages are written for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("I/O error {context}: {message}")]
    Io { context: String, message: String },
    #[error("not a bascule bundle: bad magic bytes at offset 0")]
    BadMagic,
    #[error(
        "bundle format version {found} is not supported by this bascule ({READER_VERSION}), \
         which reads version {FORMAT_VERSION} only: a newer format needs a newer bascule"
    )]
    UnsupportedFormat { found: u16 },
    /// `bits` are only the bits this reader does not know.
    #[error("{}", unknown_features(*bits))]
    UnknownRequiredFeatures { bits: u16 },
    #[error("bundle header: reserved byte at offset {offset} is not zero")]
    HeaderReserved { offset: usize },
    #[error("bundle header: signature block length is {len}, expected {expected}")]
    SignatureBlockLen { len: u16, expected: u16 },
    #[error("bundle header: manifest length {len} exceeds the limit of {max} bytes")]
    ManifestTooLarge { len: u32, max: u32 },
    #[error("bundle truncated in the {section}: expected {expected} bytes, got {got}")]
    Truncated {
        section: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("bundle has data after the end of the payload")]
    TrailingData,
    #[error("bundle reader stopped after an earlier error")]
    ReaderPoisoned,
    #[error(
        "signature check failed: bundle is signed by key {key_id}, which is not in the keyring"
    )]
    UnknownKey { key_id: KeyId },
    #[error(
        "signature check failed: bundle is signed by key {key_id}, which is revoked on this device"
    )]
    RevokedKey { key_id: KeyId },
    #[error("signature check failed: bundle is not signed by key {key_id} or was modified")]
    BadSignature { key_id: KeyId },
    #[error("bundle header {field} is {header} but the signed manifest says {manifest}: header was modified")]
    HeaderMismatch {
        field: &'static str,
        header: u16,
        manifest: u16,
    },
    #[error("manifest cannot be decoded: {0}")]
    ManifestDecode(String),
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(String),
    #[error("image {image} chunk {index}: cannot decompress: {message}")]
    ChunkDecompress {
        image: usize,
        index: u32,
        message: String,
    },
    #[error("image {image} chunk {index} (offset {offset}): SHA-256 does not match the manifest")]
    ChunkHashMismatch {
        image: usize,
        index: u32,
        offset: u64,
    },
    #[error("image {image}: {found} bytes written, the manifest says {expected}")]
    ImageSizeMismatch {
        image: usize,
        expected: u64,
        found: u64,
    },
    #[error("image {image}: SHA-256 is {found}, the manifest says {expected}")]
    ImageHashMismatch {
        image: usize,
        expected: String,
        found: String,
    },
    #[error("key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("key file {path} is a public key: signing needs the secret key (the .key file `bascule keygen` wrote)")]
    PublicKeyForSigning { path: PathBuf },
    #[error("no public keys (*.pub) in keyring directory {dir}")]
    NoKeys { dir: PathBuf },
    #[error("cannot get random bytes from the operating system: {message}")]
    Entropy { message: String },
    #[error("cannot create bundle: {0}")]
    InvalidOptions(String),
}

/// The refusal of required-feature bits this reader does not know: each by its
/// number, with what this reader does know and where the bits are documented.
fn unknown_features(bits: u16) -> String {
    let numbers: Vec<String> = (0..16)
        .filter(|n| bits & (1 << n) != 0)
        .map(|n| n.to_string())
        .collect();
    let plural = if numbers.len() == 1 { "" } else { "s" };
    format!(
        "bundle needs required feature bit{plural} {} ({bits:#06x}), which this bascule \
         ({READER_VERSION}) does not know (it knows {}); see \"Required features\" in \
         docs/bundle-format.md, and install a newer bascule first",
        numbers.join(", "),
        format::describe_features(FEATURES_KNOWN),
    )
}

impl BundleError {
    /// Wraps an I/O error with the place it happened (e.g. "reading bundle header").
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        BundleError::Io {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing into a String cannot fail.
        write!(s, "{b:02x}").expect("write to String");
    }
    s
}

/// SHA-256 of `data` as a plain array.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

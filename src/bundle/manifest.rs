//! The signed manifest: what a bundle contains and where every chunk lies. Pure, no I/O.
//!
//! The manifest is postcard-encoded: first the version-1 fields (the serde fields of
//! [`Manifest`], in declaration order), then one extension field per required-feature
//! bit that carries one, in bit order, present exactly when its bit is set in the
//! manifest's `required_features`. Today that is [`Manifest::min_from_version`]
//! ([`FEATURE_MIN_FROM_VERSION`]). A manifest without extension bits is byte for byte a
//! version-1 manifest, so every bundle made before the extensions still decodes, and a
//! reader that does not know a bit refuses the bundle at the header, by the bit's number,
//! before it would misread the tail (see "Growing the format" in `docs/bundle-format.md`).
//!
//! [`Manifest::decode`] only decodes (it is a fuzz
//! target); [`Manifest::validate`] then checks every bound and cross-field rule, so code
//! after it may rely on: chunk counts match sizes, chunk sizes are powers of two within
//! [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`], stored lengths are bounded ([`max_stored_len`]),
//! strings are bounded, slot classes are unique, and payload offsets cannot overflow.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::format::{FEATURES_KNOWN, FEATURE_MIN_FROM_VERSION, FEATURE_XZ, FORMAT_VERSION};
use super::BundleError;

/// Smallest chunk size accepted.
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// Largest chunk size accepted: bounds every per-chunk buffer.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Most images in one bundle.
pub const MAX_IMAGES: usize = 16;
/// Longest version, compatible, build id or slot class string, in bytes.
pub const MAX_STRING_LEN: usize = 256;

/// How a chunk's bytes are stored in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// The raw bytes.
    None,
    /// One independent zstd frame per chunk.
    Zstd,
    /// One independent xz stream per chunk (see `bundle::xz`); the bundle must
    /// declare [`FEATURE_XZ`] so that readers without xz refuse it by name.
    Xz,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        })
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            other => Err(format!(
                "unknown compression {other:?} (expected \"none\", \"zstd\" or \"xz\")"
            )),
        }
    }
}

/// The most payload bytes a chunk of `raw_len` bytes may take with `compression`.
pub fn max_stored_len(compression: Compression, raw_len: u32) -> u64 {
    match compression {
        Compression::None => u64::from(raw_len),
        Compression::Zstd => zstd::zstd_safe::compress_bound(raw_len as usize) as u64,
        Compression::Xz => super::xz::max_stored_len(raw_len),
    }
}

/// The whole bundle description, covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Copy of the header's format_version, so the signature covers it.
    pub format: u16,
    /// Copy of the header's required_features, so the signature covers it.
    pub required_features: u16,
    /// Semantic version of the release.
    pub version: String,
    /// Which devices may install this bundle (matched against the device's config).
    pub compatible: String,
    /// Anti-rollback counter: a device refuses bundles below its floor.
    pub security_version: u32,
    pub build_id: String,
    pub created_unix: u64,
    /// The images, in payload order.
    pub images: Vec<ImageEntry>,
    /// The oldest running version this release upgrades from directly (semver); a
    /// device running an older one must install an intermediate release first.
    /// Extension field of [`FEATURE_MIN_FROM_VERSION`]: encoded after `images`, only
    /// when that bit is set, so serde skips it and [`Manifest::encode`] and
    /// [`Manifest::decode`] handle it.
    #[serde(skip)]
    pub min_from_version: Option<String>,
}

/// One image to write into a slot of class `slot_class`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub slot_class: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// SHA-256 of the whole uncompressed image.
    pub sha256: [u8; 32],
    pub compression: Compression,
    /// Uncompressed bytes per chunk; the last chunk may be shorter.
    pub chunk_size: u32,
    pub chunks: Vec<ChunkEntry>,
}

/// One chunk of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// SHA-256 of the uncompressed chunk.
    pub sha256: [u8; 32],
    /// Bytes the chunk takes in the payload.
    pub stored_len: u32,
}

/// Where one chunk is, in the image and in the payload order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Index of the image in [`Manifest::images`].
    pub image: usize,
    /// Index of the chunk in [`ImageEntry::chunks`].
    pub index: u32,
    /// Offset of the chunk in the uncompressed image.
    pub offset: u64,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Length in the payload.
    pub stored_len: u32,
}

impl ImageEntry {
    /// Number of chunks an image of `size` bytes has with `chunk_size`.
    pub fn expected_chunks(size: u64, chunk_size: u32) -> u64 {
        size.div_ceil(u64::from(chunk_size.max(1)))
    }

    /// The chunk at `index`, or `None` past the end. `image` is this entry's index.
    pub fn chunk_ref(&self, image: usize, index: u32) -> Option<ChunkRef> {
        let chunk = self.chunks.get(index as usize)?;
        let offset = u64::from(index) * u64::from(self.chunk_size);
        let raw_len = self
            .size
            .saturating_sub(offset)
            .min(u64::from(self.chunk_size)) as u32;
        Some(ChunkRef {
            image,
            index,
            offset,
            raw_len,
            stored_len: chunk.stored_len,
        })
    }

    /// Bytes this image takes in the payload.
    pub fn stored_size(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.stored_len)).sum()
    }
}

impl Manifest {
    /// The postcard bytes of this manifest (what gets signed): the version-1 fields,
    /// then `min_from_version` when present ([`Manifest::validate`] requires its bit
    /// exactly then).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs, strings and vectors into a Vec cannot fail.
        let mut bytes = postcard::to_allocvec(self).expect("manifest serializes");
        if let Some(min_from) = &self.min_from_version {
            bytes.extend(postcard::to_allocvec(min_from).expect("string serializes"));
        }
        bytes
    }

    /// Decodes manifest bytes; every byte must be used. Does not validate.
    ///
    /// The extension fields are read according to the decoded `required_features`;
    /// a bit this reader does not know leaves its tail unread, so it is refused as
    /// unexpected bytes (the header check refuses such a bundle by name first).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let decode_err = |e: postcard::Error| BundleError::ManifestDecode(e.to_string());
        let (mut manifest, mut rest) =
            postcard::take_from_bytes::<Manifest>(bytes).map_err(decode_err)?;
        if manifest.required_features & FEATURE_MIN_FROM_VERSION != 0 {
            let (min_from, after) = postcard::take_from_bytes::<String>(rest).map_err(|e| {
                BundleError::ManifestDecode(format!("min_from_version (feature bit 1): {e}"))
            })?;
            manifest.min_from_version = Some(min_from);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(BundleError::ManifestDecode(format!(
                "{} unexpected bytes after the manifest",
                rest.len()
            )));
        }
        Ok(manifest)
    }

    /// Total payload length in bytes.
    pub fn payload_len(&self) -> u64 {
        self.images.iter().map(ImageEntry::stored_size).sum()
    }

    /// Offset of a chunk from the start of the payload (add
    /// [`Header::payload_offset`](super::Header::payload_offset) for the bundle offset).
    pub fn chunk_payload_offset(&self, image: usize, index: u32) -> Option<u64> {
        let entry = self.images.get(image)?;
        if index as usize >= entry.chunks.len() {
            return None;
        }
        let before: u64 = self.images[..image]
            .iter()
            .map(ImageEntry::stored_size)
            .sum();
        let within: u64 = entry.chunks[..index as usize]
            .iter()
            .map(|c| u64::from(c.stored_len))
            .sum();
        Some(before + within)
    }

    /// Every chunk in payload order.
    pub fn chunk_refs(&self) -> impl Iterator<Item = ChunkRef> + '_ {
        self.images.iter().enumerate().flat_map(|(image, entry)| {
            (0..entry.chunks.len() as u32).filter_map(move |i| entry.chunk_ref(image, i))
        })
    }

    /// The required-feature bits this manifest needs: [`FEATURE_XZ`] if an image is
    /// xz, [`FEATURE_MIN_FROM_VERSION`] if `min_from_version` is present.
    pub fn features_needed(&self) -> u16 {
        let xz = self.images.iter().any(|i| i.compression == Compression::Xz);
        let mut bits = 0;
        if xz {
            bits |= FEATURE_XZ;
        }
        if self.min_from_version.is_some() {
            bits |= FEATURE_MIN_FROM_VERSION;
        }
        bits
    }

    /// Checks every bound and cross-field rule (see the module doc).
    pub fn validate(&self) -> Result<(), BundleError> {
        let invalid = |msg: String| Err(BundleError::ManifestInvalid(msg));
        if self.format != FORMAT_VERSION {
            return invalid(format!("format {} is not {FORMAT_VERSION}", self.format));
        }
        if self.required_features & !FEATURES_KNOWN != 0 {
            return invalid(format!(
                "unknown required features {:#06x}",
                self.required_features & !FEATURES_KNOWN
            ));
        }
        check_text("version", &self.version, false)?;
        if let Err(e) = semver::Version::parse(&self.version) {
            return invalid(format!("version {:?} is not semver: {e}", self.version));
        }
        self.validate_min_from_version()?;
        check_text("compatible", &self.compatible, false)?;
        check_text("build_id", &self.build_id, true)?;
        if self.images.is_empty() {
            return invalid("no images".into());
        }
        if self.images.len() > MAX_IMAGES {
            return invalid(format!(
                "{} images, at most {MAX_IMAGES} allowed",
                self.images.len()
            ));
        }
        if self.required_features != self.features_needed() {
            return invalid(format!(
                "required features {:#06x}, but the manifest needs {:#06x}",
                self.required_features,
                self.features_needed()
            ));
        }
        let mut classes = BTreeSet::new();
        for (i, image) in self.images.iter().enumerate() {
            image
                .validate()
                .map_err(|msg| BundleError::ManifestInvalid(format!("image {i}: {msg}")))?;
            if !classes.insert(image.slot_class.as_str()) {
                return invalid(format!(
                    "image {i}: slot class {:?} appears twice",
                    image.slot_class
                ));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// `min_from_version`, when present: bounded text, semver, and not newer than the
    /// release itself (a bundle that upgrades from nothing it can be installed over).
    fn validate_min_from_version(&self) -> Result<(), BundleError> {
        let Some(min_from) = &self.min_from_version else {
            return Ok(());
        };
        check_text("min_from_version", min_from, false)?;
        let invalid = |msg: String| Err(BundleError::ManifestInvalid(msg));
        let min = match semver::Version::parse(min_from) {
            Ok(v) => v,
            Err(e) => return invalid(format!("min_from_version {min_from:?} is not semver: {e}")),
        };
        match semver::Version::parse(&self.version) {
            Ok(version) if min > version => invalid(format!(
                "min_from_version {min} is newer than the bundle's version {version}"
            )),
            _ => Ok(()),
        }
    }
}

impl ImageEntry {
    fn validate(&self) -> Result<(), String> {
        let class = &self.slot_class;
        if class.is_empty() || class.len() > 64 {
            return Err(format!("slot class {class:?} must be 1 to 64 bytes"));
        }
        if !class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "slot class {class:?} may only use letters, digits, '.', '_' and '-'"
            ));
        }
        let cs = self.chunk_size;
        if !cs.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&cs) {
            return Err(format!(
                "chunk size {cs} is not a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]"
            ));
        }
        let expected = ImageEntry::expected_chunks(self.size, cs);
        if self.chunks.len() as u64 != expected {
            return Err(format!(
                "{} chunks listed, but {} bytes in chunks of {cs} make {expected}",
                self.chunks.len(),
                self.size
            ));
        }
        for index in 0..self.chunks.len() as u32 {
            let c = self.chunk_ref(0, index).expect("index below chunk count");
            let max = max_stored_len(self.compression, c.raw_len);
            let min = match self.compression {
                Compression::None => max,
                Compression::Zstd | Compression::Xz => 1,
            };
            let stored = u64::from(c.stored_len);
            if stored < min || stored > max {
                return Err(format!(
                    "chunk {index}: stored length {stored} outside [{min}, {max}] for {} raw bytes ({})",
                    c.raw_len, self.compression
                ));
            }
        }
        Ok(())
    }
}

/// Bounded, printable text: no control characters, at most [`MAX_STRING_LEN`] bytes.
fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<(), BundleError> {
    let msg = if value.len() > MAX_STRING_LEN {
        format!(
            "{field} is {} bytes, at most {MAX_STRING_LEN} allowed",
            value.len()
        )
    } else if value.is_empty() && !may_be_empty {
        format!("{field} is empty")
    } else if value.chars().any(char::is_control) {
        format!("{field} {value:?} contains control characters")
    } else {
        return Ok(());
    };
    Err(BundleError::ManifestInvalid(msg))
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;

    const CS: u32 = 4096;

    /// A valid manifest: one uncompressed image of 10000 bytes (3 chunks), one empty.
    pub(crate) fn sample() -> Manifest {
        let chunks = [4096, 4096, 1808]
            .iter()
            .map(|&n| ChunkEntry {
                sha256: [7; 32],
                stored_len: n,
            })
            .collect();
        Manifest {
            format: FORMAT_VERSION,
            required_features: 0,
            version: "1.2.3-rc.1".into(),
            compatible: "acme-gateway-v2".into(),
            security_version: 5,
            build_id: "ci-4711".into(),
            created_unix: 1_700_000_000,
            min_from_version: None,
            images: vec![
                ImageEntry {
                    slot_class: "rootfs".into(),
                    size: 10_000,
                    sha256: [1; 32],
                    compression: Compression::None,
                    chunk_size: CS,
                    chunks,
                },
                ImageEntry {
                    slot_class: "appfs".into(),
                    size: 0,
                    sha256: [2; 32],
                    compression: Compression::Zstd,
                    chunk_size: CS,
                    chunks: vec![],
                },
            ],
        }
    }

    fn rejects(m: &Manifest, needle: &str) {
        match m.validate() {
            Err(BundleError::ManifestInvalid(msg)) => {
                assert!(msg.contains(needle), "{msg:?} should mention {needle:?}")
            }
            other => panic!("expected ManifestInvalid({needle:?}), got {other:?}"),
        }
    }

    #[test]
    fn manifest_round_trip_and_valid() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()), Ok(m.clone()));
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn manifest_decode_rejects_trailing_and_truncated_bytes() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(BundleError::ManifestDecode(_))
        ));
        bytes.truncate(bytes.len() - 2);
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(BundleError::ManifestDecode(_))
        ));
    }

    #[test]
    fn offsets_are_computable_from_the_manifest() {
        let m = sample();
        assert_eq!(m.payload_len(), 10_000);
        assert_eq!(m.chunk_payload_offset(0, 2), Some(8192));
        assert_eq!(m.chunk_payload_offset(0, 3), None);
        assert_eq!(m.chunk_payload_offset(1, 0), None);
        let refs: Vec<_> = m.chunk_refs().collect();
        assert_eq!(refs.len(), 3);
        assert_eq!(
            refs[2],
            ChunkRef {
                image: 0,
                index: 2,
                offset: 8192,
                raw_len: 1808,
                stored_len: 1808
            }
        );
    }

    #[test]
    fn validate_rejects_bad_semver() {
        let mut m = sample();
        m.version = "1.2".into();
        rejects(&m, "not semver");
    }

    #[test]
    fn validate_rejects_wrong_chunk_count() {
        let mut m = sample();
        m.images[0].chunks.pop();
        rejects(&m, "2 chunks listed");
        let mut m = sample();
        m.images[1].chunks.push(ChunkEntry {
            sha256: [0; 32],
            stored_len: 1,
        });
        rejects(&m, "image 1: 1 chunks listed");
    }

    #[test]
    fn validate_rejects_bad_chunk_size() {
        for cs in [0, 2048, 4097, 6144, 32 * 1024 * 1024] {
            let mut m = sample();
            m.images[1].chunk_size = cs;
            rejects(&m, "chunk size");
        }
    }

    #[test]
    fn validate_rejects_stored_len_out_of_bounds() {
        let mut m = sample();
        m.images[0].chunks[2].stored_len = 1809;
        rejects(&m, "chunk 2: stored length 1809");
        let mut m = sample();
        m.images[0].compression = Compression::Zstd;
        m.images[0].chunks[0].stored_len = 0;
        rejects(&m, "chunk 0: stored length 0");
        let mut m = sample();
        m.images[0].compression = Compression::Zstd;
        m.images[0].chunks[1].stored_len = max_stored_len(Compression::Zstd, CS) as u32 + 1;
        rejects(&m, "chunk 1: stored length");
    }

    #[test]
    fn validate_rejects_duplicate_slot_class() {
        let mut m = sample();
        m.images[1].slot_class = "rootfs".into();
        rejects(&m, "appears twice");
    }

    #[test]
    fn validate_rejects_unbounded_or_odd_strings() {
        let mut m = sample();
        m.build_id = "x".repeat(MAX_STRING_LEN + 1);
        rejects(&m, "build_id is 257 bytes");
        let mut m = sample();
        m.compatible = String::new();
        rejects(&m, "compatible is empty");
        let mut m = sample();
        m.compatible = "a\nb".into();
        rejects(&m, "control characters");
        let mut m = sample();
        m.images[0].slot_class = "root fs".into();
        rejects(&m, "may only use");
    }

    #[test]
    fn validate_rejects_no_images_and_wrong_format() {
        let mut m = sample();
        m.images.clear();
        rejects(&m, "no images");
        let mut m = sample();
        m.format = 2;
        rejects(&m, "format 2");
        let mut m = sample();
        m.required_features = 4;
        rejects(&m, "0x0004");
    }

    #[test]
    fn the_xz_feature_bit_is_set_exactly_when_an_image_is_xz() {
        let mut m = sample();
        m.required_features = FEATURE_XZ;
        rejects(
            &m,
            "required features 0x0001, but the manifest needs 0x0000",
        );
        m.images[1].compression = Compression::Xz;
        assert_eq!(m.validate(), Ok(()));
        m.required_features = 0;
        rejects(
            &m,
            "required features 0x0000, but the manifest needs 0x0001",
        );
    }

    fn with_min_from(min_from: &str) -> Manifest {
        let mut m = sample();
        m.min_from_version = Some(min_from.into());
        m.required_features = FEATURE_MIN_FROM_VERSION;
        m
    }

    #[test]
    fn min_from_version_round_trips_after_the_version_1_fields() {
        let m = with_min_from("1.0.0");
        assert_eq!(m.validate(), Ok(()));
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        // The version-1 fields come first, unchanged; the field is their tail.
        let mut plain = m.clone();
        plain.min_from_version = None;
        let v1 = plain.encode();
        assert_eq!(&bytes[..v1.len()], &v1[..]);
        assert_eq!(&bytes[v1.len()..], b"\x051.0.0");
    }

    #[test]
    fn a_manifest_without_min_from_version_is_a_version_1_manifest() {
        let m = sample();
        let bytes = m.encode();
        let decoded = Manifest::decode(&bytes).unwrap();
        assert_eq!(decoded.min_from_version, None);
        assert_eq!(decoded, m);
    }

    #[test]
    fn min_from_version_is_read_exactly_when_its_bit_is_set() {
        // Bit set but no field: the manifest ends early.
        let mut m = sample();
        m.required_features = FEATURE_MIN_FROM_VERSION;
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("min_from_version"), "{err}");
        // Field present but bit clear: its bytes are unexpected.
        let mut m = with_min_from("1.0.0");
        m.required_features = 0;
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("6 unexpected bytes"), "{err}");
    }

    #[test]
    fn the_min_from_version_bit_is_set_exactly_when_the_field_is() {
        let mut m = with_min_from("1.0.0");
        m.required_features = 0;
        rejects(
            &m,
            "required features 0x0000, but the manifest needs 0x0002",
        );
        let mut m = sample();
        m.required_features = FEATURE_MIN_FROM_VERSION;
        rejects(
            &m,
            "required features 0x0002, but the manifest needs 0x0000",
        );
    }

    #[test]
    fn validate_rejects_a_bad_min_from_version() {
        rejects(&with_min_from("2"), "min_from_version \"2\" is not semver");
        rejects(&with_min_from(""), "min_from_version is empty");
        rejects(
            &with_min_from("1.2.4"),
            "min_from_version 1.2.4 is newer than the bundle's version 1.2.3-rc.1",
        );
        assert_eq!(with_min_from("1.2.3-rc.1").validate(), Ok(()));
    }

    #[test]
    fn compression_text_round_trip() {
        for c in [Compression::None, Compression::Zstd, Compression::Xz] {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
        }
        assert!("lz4".parse::<Compression>().is_err());
    }
}

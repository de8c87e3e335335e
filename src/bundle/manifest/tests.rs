//! Unit tests of the manifest codec and its checks.
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

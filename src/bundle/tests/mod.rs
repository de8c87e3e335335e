//! End-to-end tests: create → open → read → decode. Damage of every kind: [`damage`].

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::*;

mod damage;

pub(crate) const CS: u32 = 4096;

pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn ring(keys: &[&SigningKey]) -> Keyring {
    Keyring::from_keys(keys.iter().map(|k| k.verifying_key()))
}

/// Half compressible, half pseudo-random bytes, different per `seed`.
pub(super) fn image_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 1000) % 2 == 0 {
                (i % 7) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

pub(crate) struct Built {
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifest: Manifest,
    pub(crate) images: Vec<Vec<u8>>,
}

pub(crate) fn build(
    dir: &Path,
    sizes: &[usize],
    compression: Compression,
    key: &SigningKey,
) -> Built {
    let mut images = Vec::new();
    let mut paths = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let data = image_bytes(len, i as u32 + 1);
        let path = dir.join(format!("img{i}"));
        std::fs::write(&path, &data).unwrap();
        images.push(data);
        paths.push((format!("class{i}"), path));
    }
    let opts = CreateOptions {
        version: semver::Version::new(2, 5, 0),
        compatible: "acme-gw".into(),
        security_version: 3,
        build_id: "test".into(),
        min_from_version: None,
        images: paths,
        compression,
        chunk_size: CS,
        zstd_level: 3,
        xz_level: 6,
    };
    let out = dir.join("out.bundle");
    let manifest = create_bundle(&opts, key, &out).unwrap();
    Built {
        bytes: std::fs::read(&out).unwrap(),
        manifest,
        images,
    }
}

/// The standard bundle for damage tests: three images (10000, 8192, 0 bytes).
pub(super) fn standard(compression: Compression) -> Built {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[10_000, 8192, 0], compression, &key(1))
}

/// Opens, reads, decodes and checks everything; returns the images.
pub(super) fn read_all(
    bytes: &[u8],
    keyring: Option<&Keyring>,
) -> Result<Vec<Vec<u8>>, BundleError> {
    let mut reader = match keyring {
        Some(k) => BundleReader::open(bytes, k)?,
        None => BundleReader::open_unverified(bytes)?,
    };
    let manifest = reader.manifest().clone();
    let mut images = vec![Vec::new(); manifest.images.len()];
    let (mut stored, mut raw) = (Vec::new(), Vec::new());
    while let Some(chunk) = reader.next_stored_chunk(&mut stored)? {
        assert_eq!(stored.len(), chunk.stored_len as usize);
        let entry = &manifest.images[chunk.image];
        decode_chunk(entry, chunk.image, &chunk, &stored, &mut raw)?;
        assert_eq!(images[chunk.image].len() as u64, chunk.offset);
        images[chunk.image].extend_from_slice(&raw);
    }
    for (i, (data, entry)) in images.iter().zip(&manifest.images).enumerate() {
        let mut hasher = ImageHasher::new(i);
        hasher.update(data);
        hasher.finish(entry)?;
    }
    Ok(images)
}

pub(super) fn payload_offset(b: &Built) -> usize {
    b.bytes.len() - b.manifest.payload_len() as usize
}

pub(super) fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[at] ^= 0x04;
    v
}

#[test]
fn round_trip_uncompressed_with_partial_last_chunk_and_empty_image() {
    let b = standard(Compression::None);
    let images = read_all(&b.bytes, Some(&ring(&[&key(1)]))).unwrap();
    assert_eq!(images, b.images);
    assert_eq!(b.manifest.images[0].chunks.len(), 3);
    assert_eq!(b.manifest.images[1].chunks.len(), 2);
    assert_eq!(b.manifest.images[2].chunks.len(), 0);
    assert_eq!(b.manifest.payload_len(), 18_192);
}

#[test]
fn round_trip_zstd_with_partial_last_chunk_and_empty_image() {
    let b = standard(Compression::Zstd);
    let images = read_all(&b.bytes, Some(&ring(&[&key(1)]))).unwrap();
    assert_eq!(images, b.images);
    assert!(
        b.manifest.payload_len() < 18_192,
        "zstd should shrink the images"
    );
}

#[test]
fn round_trip_single_empty_image() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::None, Compression::Zstd, Compression::Xz] {
        let b = build(dir.path(), &[0], compression, &key(1));
        assert_eq!(b.manifest.payload_len(), 0);
        assert_eq!(
            read_all(&b.bytes, Some(&ring(&[&key(1)]))).unwrap(),
            vec![Vec::<u8>::new()]
        );
    }
}

#[test]
fn reader_reports_what_it_checked() {
    let b = standard(Compression::Zstd);
    let k = key(1);
    let mut reader = BundleReader::open(&b.bytes[..], &ring(&[&k])).unwrap();
    assert!(reader.signature_verified());
    assert_eq!(reader.key_id(), KeyId::of(&k.verifying_key()));
    assert_eq!(reader.manifest(), &b.manifest);
    assert_eq!(reader.manifest_bytes(), &b.manifest.encode()[..]);
    assert_eq!(reader.bytes_read() as usize, payload_offset(&b));
    assert_eq!(reader.verify_payload().unwrap(), b.manifest.payload_len());
    assert_eq!(reader.bytes_read() as usize, b.bytes.len());

    let unverified = BundleReader::open_unverified(&b.bytes[..]).unwrap();
    assert!(!unverified.signature_verified());
}

#[test]
fn chunk_offsets_from_manifest_match_the_stream() {
    let b = standard(Compression::Zstd);
    let mut reader = BundleReader::open_unverified(&b.bytes[..]).unwrap();
    let base = reader.header().payload_offset() as usize;
    let mut stored = Vec::new();
    while let Some(c) = reader.next_stored_chunk(&mut stored).unwrap() {
        let at = base + b.manifest.chunk_payload_offset(c.image, c.index).unwrap() as usize;
        assert_eq!(&b.bytes[at..at + stored.len()], &stored[..]);
    }
}

#[test]
fn reader_is_poisoned_after_an_error() {
    let b = standard(Compression::None);
    let cut = &b.bytes[..payload_offset(&b) + 10];
    let mut reader = BundleReader::open_unverified(cut).unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        reader.next_stored_chunk(&mut buf),
        Err(BundleError::Truncated { .. })
    ));
    assert_eq!(
        reader.next_stored_chunk(&mut buf),
        Err(BundleError::ReaderPoisoned)
    );
}

#[test]
fn wrong_key_is_unknown_key() {
    let b = standard(Compression::None);
    let err = BundleReader::open(&b.bytes[..], &ring(&[&key(2)]))
        .err()
        .unwrap();
    assert_eq!(
        err,
        BundleError::UnknownKey {
            key_id: KeyId::of(&key(1).verifying_key())
        }
    );
}

#[test]
fn keyring_with_two_keys_accepts_either_during_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let old_id = keygen(&keys.join("old")).unwrap();
    let new_id = keygen(&keys.join("new")).unwrap();
    let ring = Keyring::load_dir(&keys).unwrap();
    let mut expected = vec![old_id, new_id];
    expected.sort();
    assert_eq!(ring.ids(), expected);
    for (name, id) in [("old", old_id), ("new", new_id)] {
        let signer = load_signing_key(&keys.join(format!("{name}.key"))).unwrap();
        let b = build(dir.path(), &[5000], Compression::Zstd, &signer);
        let reader = BundleReader::open(&b.bytes[..], &ring).unwrap();
        assert_eq!(reader.key_id(), id);
    }
}

#[test]
fn image_hasher_checks_size_then_hash() {
    let b = standard(Compression::None);
    let entry = &b.manifest.images[0];
    let mut short = ImageHasher::new(0);
    short.update(&b.images[0][..9_999]);
    assert_eq!(
        short.finish(entry),
        Err(BundleError::ImageSizeMismatch {
            image: 0,
            expected: 10_000,
            found: 9_999
        })
    );
    let mut wrong = ImageHasher::new(0);
    wrong.update(&b.images[1][..8192]);
    wrong.update(&b.images[0][..1808]);
    assert!(matches!(
        wrong.finish(entry),
        Err(BundleError::ImageHashMismatch { image: 0, .. })
    ));
}

#[test]
fn failed_create_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bundle");
    let opts = CreateOptions {
        version: semver::Version::new(1, 0, 0),
        compatible: "x".into(),
        security_version: 0,
        build_id: String::new(),
        min_from_version: None,
        images: vec![("rootfs".into(), PathBuf::from("/nonexistent/image"))],
        compression: Compression::None,
        chunk_size: CS,
        zstd_level: 3,
        xz_level: 6,
    };
    let err = create_bundle(&opts, &key(1), &out).unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }), "{err:?}");
    let bad_chunk = CreateOptions {
        chunk_size: 5000,
        ..opts
    };
    assert!(matches!(
        create_bundle(&bad_chunk, &key(1), &out),
        Err(BundleError::InvalidOptions(_))
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn create_checks_options_before_reading_images() {
    let dir = tempfile::tempdir().unwrap();
    let missing = PathBuf::from("/nonexistent/image");
    let opts = CreateOptions {
        version: semver::Version::new(1, 0, 0),
        compatible: "x".into(),
        security_version: 0,
        build_id: String::new(),
        min_from_version: None,
        images: vec![
            ("rootfs".into(), missing.clone()),
            ("rootfs".into(), missing),
        ],
        compression: Compression::Zstd,
        chunk_size: CS,
        zstd_level: 3,
        xz_level: 6,
    };
    let out = dir.path().join("out.bundle");
    let err = create_bundle(&opts, &key(1), &out).unwrap_err();
    assert!(
        matches!(&err, BundleError::InvalidOptions(m) if m.contains("appears twice")),
        "{err:?}"
    );
    let no_images = CreateOptions {
        images: vec![],
        ..opts.clone()
    };
    assert!(matches!(
        create_bundle(&no_images, &key(1), &out),
        Err(BundleError::InvalidOptions(_))
    ));
    let bad_level = CreateOptions {
        zstd_level: 99,
        xz_level: 6,
        images: vec![opts.images[0].clone()],
        ..opts
    };
    let err = create_bundle(&bad_level, &key(1), &out).unwrap_err();
    assert!(
        matches!(&err, BundleError::InvalidOptions(m) if m.contains("zstd level 99")),
        "{err:?}"
    );
}

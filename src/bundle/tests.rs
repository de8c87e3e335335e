//! End-to-end tests: create → open → read → decode, and every way a bundle can be damaged.

use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;

use super::*;

const CS: u32 = 4096;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn ring(keys: &[&SigningKey]) -> Keyring {
    Keyring::from_keys(keys.iter().map(|k| k.verifying_key()))
}

/// Half compressible, half pseudo-random bytes, different per `seed`.
fn image_bytes(len: usize, seed: u32) -> Vec<u8> {
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

struct Built {
    bytes: Vec<u8>,
    manifest: Manifest,
    images: Vec<Vec<u8>>,
}

fn build(dir: &Path, sizes: &[usize], compression: Compression, key: &SigningKey) -> Built {
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
        images: paths,
        compression,
        chunk_size: CS,
        zstd_level: 3,
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
fn standard(compression: Compression) -> Built {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &[10_000, 8192, 0], compression, &key(1))
}

/// Opens, reads, decodes and checks everything; returns the images.
fn read_all(bytes: &[u8], keyring: Option<&Keyring>) -> Result<Vec<Vec<u8>>, BundleError> {
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

fn payload_offset(b: &Built) -> usize {
    b.bytes.len() - b.manifest.payload_len() as usize
}

fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
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
    for compression in [Compression::None, Compression::Zstd] {
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
fn header_bit_flips_are_caught_by_field() {
    let b = standard(Compression::None);
    let k = ring(&[&key(1)]);
    let open = |bytes: Vec<u8>| BundleReader::open(&bytes[..], &k).err().unwrap();
    assert_eq!(open(flipped(&b.bytes, 0)), BundleError::BadMagic);
    assert_eq!(
        open(flipped(&b.bytes, 8)),
        BundleError::UnsupportedFormat { found: 5 }
    );
    assert_eq!(
        open(flipped(&b.bytes, 11)),
        BundleError::UnknownRequiredFeatures { bits: 0x0400 }
    );
    assert!(matches!(
        open(flipped(&b.bytes, 15)),
        BundleError::ManifestTooLarge { .. }
    ));
    // A smaller manifest_len reads a prefix of the manifest: the signature fails.
    let mut shorter = b.bytes.clone();
    shorter[12] = shorter[12].wrapping_sub(1);
    assert!(matches!(open(shorter), BundleError::BadSignature { .. }));
    assert_eq!(
        open(flipped(&b.bytes, 16)),
        BundleError::SignatureBlockLen {
            len: 76,
            expected: 72
        }
    );
    assert_eq!(
        open(flipped(&b.bytes, 25)),
        BundleError::HeaderReserved { offset: 25 }
    );
}

#[test]
fn signature_block_bit_flips_are_caught() {
    let b = standard(Compression::None);
    let k = ring(&[&key(1)]);
    let id = KeyId::of(&key(1).verifying_key());
    let err = BundleReader::open(&flipped(&b.bytes, 33)[..], &k)
        .err()
        .unwrap();
    assert!(matches!(err, BundleError::UnknownKey { .. }), "{err:?}");
    for at in [40, 70, 103] {
        let err = BundleReader::open(&flipped(&b.bytes, at)[..], &k)
            .err()
            .unwrap();
        assert_eq!(err, BundleError::BadSignature { key_id: id });
        assert_eq!(
            err.to_string(),
            format!("signature check failed: bundle is not signed by key {id} or was modified")
        );
    }
}

#[test]
fn manifest_bit_flips_fail_the_signature_before_decoding() {
    let b = standard(Compression::None);
    let k = ring(&[&key(1)]);
    for at in [104, 110, payload_offset(&b) - 1] {
        let err = BundleReader::open(&flipped(&b.bytes, at)[..], &k)
            .err()
            .unwrap();
        assert!(
            matches!(err, BundleError::BadSignature { .. }),
            "at {at}: {err:?}"
        );
    }
}

#[test]
fn payload_bit_flips_name_the_chunk() {
    let k = ring(&[&key(1)]);
    let b = standard(Compression::None);
    let p = payload_offset(&b);
    assert_eq!(
        read_all(&flipped(&b.bytes, p + 5), Some(&k)).unwrap_err(),
        BundleError::ChunkHashMismatch {
            image: 0,
            index: 0,
            offset: 0
        }
    );
    assert_eq!(
        read_all(&flipped(&b.bytes, p + 10_000 + 4096), Some(&k)).unwrap_err(),
        BundleError::ChunkHashMismatch {
            image: 1,
            index: 1,
            offset: 4096
        }
    );

    let z = standard(Compression::Zstd);
    let pz = payload_offset(&z);
    let second = pz + z.manifest.chunk_payload_offset(0, 1).unwrap() as usize;
    for at in [
        second,
        second + 9,
        second + z.manifest.images[0].chunks[1].stored_len as usize - 1,
    ] {
        match read_all(&flipped(&z.bytes, at), Some(&k)).unwrap_err() {
            BundleError::ChunkHashMismatch {
                image: 0,
                index: 1,
                offset: 4096,
            }
            | BundleError::ChunkDecompress {
                image: 0, index: 1, ..
            } => {}
            other => panic!("flip at {at}: {other:?}"),
        }
    }
}

#[test]
fn truncation_names_the_section() {
    let b = standard(Compression::Zstd);
    let k = ring(&[&key(1)]);
    let p = payload_offset(&b);
    let cases = [
        (0, "header", 0),
        (31, "header", 31),
        (32, "signature block", 0),
        (100, "signature block", 68),
        (104, "manifest", 0),
        (p - 1, "manifest", (p - 1 - 104) as u64),
        (p + 1, "payload", 1),
        (b.bytes.len() - 1, "payload", b.manifest.payload_len() - 1),
    ];
    for (cut, section, got) in cases {
        let err = read_all(&b.bytes[..cut], Some(&k)).unwrap_err();
        match err {
            BundleError::Truncated {
                section: s, got: g, ..
            } if s == section && g == got => {}
            other => panic!("cut at {cut}: expected {section} got {got}, found {other:?}"),
        }
    }
    // Cut exactly at the payload start: the first chunk is missing.
    let err = read_all(&b.bytes[..p], Some(&k)).unwrap_err();
    assert!(matches!(
        err,
        BundleError::Truncated {
            section: "payload",
            got: 0,
            ..
        }
    ));
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
fn trailing_data_is_refused() {
    let b = standard(Compression::None);
    let mut bytes = b.bytes.clone();
    bytes.push(0);
    assert_eq!(
        read_all(&bytes, Some(&ring(&[&key(1)]))).unwrap_err(),
        BundleError::TrailingData
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

/// A source that fails the test if read past its bytes.
struct OnlyThis<'a>(&'a [u8]);

impl Read for OnlyThis<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        assert!(!self.0.is_empty(), "reader read past the header");
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn hostile_manifest_len_is_refused_before_reading_or_allocating() {
    let mut header = Header::new(0).encode();
    header[12..16].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let err = BundleReader::open_unverified(OnlyThis(&header))
        .err()
        .unwrap();
    assert_eq!(
        err,
        BundleError::ManifestTooLarge {
            len: 0xffff_fff0,
            max: MAX_MANIFEST_LEN
        }
    );
    // At the limit, with nothing behind it, the reader reports what actually arrived.
    let mut bytes = Header::new(MAX_MANIFEST_LEN).encode().to_vec();
    bytes.extend_from_slice(&[0; 72 + 10]);
    assert_eq!(
        BundleReader::open_unverified(&bytes[..]).err().unwrap(),
        BundleError::Truncated {
            section: "manifest",
            expected: MAX_MANIFEST_LEN as u64,
            got: 10
        }
    );
}

/// Header + signature block + manifest, signed by `key`, no payload.
fn assemble(header: Header, key: &SigningKey, manifest: &[u8]) -> Vec<u8> {
    let mut v = header.encode().to_vec();
    v.extend_from_slice(&KeyId::of(&key.verifying_key()).0);
    v.extend_from_slice(&key.sign(manifest).to_bytes());
    v.extend_from_slice(manifest);
    v
}

#[test]
fn header_must_agree_with_signed_manifest() {
    let b = standard(Compression::None);
    let mut m = b.manifest.clone();
    m.required_features = 1;
    let bytes = m.encode();
    let bundle = assemble(Header::new(bytes.len() as u32), &key(1), &bytes);
    assert_eq!(
        BundleReader::open(&bundle[..], &ring(&[&key(1)]))
            .err()
            .unwrap(),
        BundleError::HeaderMismatch {
            field: "required_features",
            header: 0,
            manifest: 1
        }
    );
}

#[test]
fn signed_but_invalid_manifest_is_refused() {
    let b = standard(Compression::None);
    let mut m = b.manifest.clone();
    m.images[0].chunks.pop();
    let bytes = m.encode();
    let bundle = assemble(Header::new(bytes.len() as u32), &key(1), &bytes);
    let err = BundleReader::open(&bundle[..], &ring(&[&key(1)]))
        .err()
        .unwrap();
    assert!(matches!(err, BundleError::ManifestInvalid(_)), "{err:?}");
    let garbage = assemble(Header::new(3), &key(1), &[0xff, 0xff, 0xff]);
    let err = BundleReader::open(&garbage[..], &ring(&[&key(1)]))
        .err()
        .unwrap();
    assert!(matches!(err, BundleError::ManifestDecode(_)), "{err:?}");
}

fn zstd_entry(raw: &[u8], stored: &[u8]) -> (ImageEntry, ChunkRef) {
    let entry = ImageEntry {
        slot_class: "rootfs".into(),
        size: raw.len() as u64,
        sha256: super::sha256(raw),
        compression: Compression::Zstd,
        chunk_size: CS,
        chunks: vec![ChunkEntry {
            sha256: super::sha256(raw),
            stored_len: stored.len() as u32,
        }],
    };
    let chunk = entry.chunk_ref(0, 0).unwrap();
    (entry, chunk)
}

#[test]
fn zstd_bomb_fails_without_allocating() {
    let raw = vec![0u8; CS as usize];
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    assert!(bomb.len() < 10_000);
    let (entry, chunk) = zstd_entry(&raw, &bomb);
    let mut out = Vec::new();
    let err = decode_chunk(&entry, 0, &chunk, &bomb, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::ChunkDecompress {
                image: 0,
                index: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        out.capacity() <= 2 * CS as usize,
        "allocated {}",
        out.capacity()
    );
}

#[test]
fn zstd_chunk_must_be_exactly_one_frame_of_the_right_length() {
    let raw = image_bytes(CS as usize, 9);
    let half = zstd::bulk::compress(&raw[..2048], 3).unwrap();
    let mut two = half.clone();
    two.extend_from_slice(&zstd::bulk::compress(&raw[2048..], 3).unwrap());
    let mut out = Vec::new();
    for stored in [two, half] {
        let (entry, chunk) = zstd_entry(&raw, &stored);
        let err = decode_chunk(&entry, 0, &chunk, &stored, &mut out).unwrap_err();
        assert!(
            matches!(err, BundleError::ChunkDecompress { .. }),
            "{err:?}"
        );
    }
    let good = zstd::bulk::compress(&raw, 3).unwrap();
    let (entry, chunk) = zstd_entry(&raw, &good);
    decode_chunk(&entry, 0, &chunk, &good, &mut out).unwrap();
    assert_eq!(out, raw);
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
        images: vec![("rootfs".into(), PathBuf::from("/nonexistent/image"))],
        compression: Compression::None,
        chunk_size: CS,
        zstd_level: 3,
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

proptest! {
    #[test]
    fn random_bytes_never_panic_open(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let k = ring(&[&key(1)]);
        let _verified = read_all(&bytes, Some(&k));
        let _unverified = read_all(&bytes, None);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        len in 0u32..400,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = Header::new(len).encode().to_vec();
        bytes.extend_from_slice(&body);
        let _unverified = read_all(&bytes, None);
    }

    #[test]
    fn damaged_bundles_never_panic_and_never_pass(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        // Uncompressed: every byte is checked exactly, signed or hashed, so no flip passes.
        let mut plain = cached(Compression::None).clone();
        // Compressed: a flip may leave the decoded output unchanged, which is harmless.
        let mut packed = cached(Compression::Zstd).clone();
        for (at, mask) in flips {
            let i = at.index(plain.len());
            plain[i] ^= mask;
            let j = at.index(packed.len());
            packed[j] ^= mask;
        }
        prop_assert!(read_all(&plain, Some(&ring(&[&key(1)]))).is_err());
        let _verified = read_all(&packed, Some(&ring(&[&key(1)])));
        let _unverified = read_all(&packed, None);
    }
}

/// The standard bundle's bytes, built once per compression for the property tests.
fn cached(compression: Compression) -> &'static Vec<u8> {
    static PLAIN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    static PACKED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let cell = match compression {
        Compression::None => &PLAIN,
        Compression::Zstd => &PACKED,
    };
    cell.get_or_init(|| standard(compression).bytes)
}

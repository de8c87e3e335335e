//! Damaged and hostile bundles: every flipped bit, cut and lie is refused by the check
//! that names it, and nothing panics.

use std::io::Read;

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;

use super::super::*;
use super::{flipped, image_bytes, key, payload_offset, read_all, ring, standard, CS};

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
fn trailing_data_is_refused() {
    let b = standard(Compression::None);
    let mut bytes = b.bytes.clone();
    bytes.push(0);
    assert_eq!(
        read_all(&bytes, Some(&ring(&[&key(1)]))).unwrap_err(),
        BundleError::TrailingData
    );
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
        let mut xzed = cached(Compression::Xz).clone();
        for (at, mask) in flips {
            for bytes in [&mut plain, &mut packed, &mut xzed] {
                let i = at.index(bytes.len());
                bytes[i] ^= mask;
            }
        }
        prop_assert!(read_all(&plain, Some(&ring(&[&key(1)]))).is_err());
        for bytes in [&packed, &xzed] {
            let _verified = read_all(bytes, Some(&ring(&[&key(1)])));
            let _unverified = read_all(bytes, None);
        }
    }
}

/// The standard bundle's bytes, built once per compression for the property tests.
fn cached(compression: Compression) -> &'static Vec<u8> {
    static PLAIN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    static PACKED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    static XZED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let cell = match compression {
        Compression::None => &PLAIN,
        Compression::Zstd => &PACKED,
        Compression::Xz => &XZED,
    };
    cell.get_or_init(|| standard(compression).bytes)
}

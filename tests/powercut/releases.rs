//! The three signed releases of the campaign (v1 provisioned at the factory, v2, v3,
//! with security versions 1, 2, 3): pseudo-random images and their bundles, built once
//! per test binary.
use std::sync::OnceLock;

use bascule::bundle::{create_bundle, Compression, CreateOptions, Keyring};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

use super::{CHUNK, COMPATIBLE};

/// A signed release: its version, image bytes, image SHA-256 and bundle bytes.
pub struct Release {
    pub version: &'static str,
    pub image: Vec<u8>,
    pub sha256: [u8; 32],
    pub bundle: Vec<u8>,
}

impl Release {
    /// Whether `slot_bytes` starts with exactly this release's image.
    pub fn is_in(&self, slot_bytes: &[u8]) -> bool {
        slot_bytes.len() >= self.image.len()
            && <[u8; 32]>::from(Sha256::digest(&slot_bytes[..self.image.len()])) == self.sha256
    }
}

/// The three releases (v1 provisioned at the factory, v2, v3) and the keyring.
pub struct Fixture {
    pub releases: [Release; 3],
    pub keyring: Keyring,
}

impl Fixture {
    /// The release whose version is `version`.
    pub fn release(&self, version: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.version == version)
    }
}

/// Pseudo-random bytes, different per `seed`, with some runs so zstd has work.
pub fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 3000) % 3 == 0 {
                (i % 11) as u8
            } else {
                x as u8
            }
        })
        .collect()
}

fn build_release(
    dir: &std::path::Path,
    key: &SigningKey,
    version: &'static str,
    len: usize,
    compression: Compression,
) -> Release {
    // v1, v2, v3 carry security versions 1, 2, 3: the floor each confirmation raises.
    let security_version = u32::from(version.as_bytes()[0] - b'0');
    let image = image_bytes(
        len,
        version.len() as u64 * 31 + u64::from(version.as_bytes()[0]),
    );
    let path = dir.join(format!("{version}.img"));
    std::fs::write(&path, &image).expect("write image");
    let opts = CreateOptions {
        version: version.parse().expect("semver"),
        compatible: COMPATIBLE.into(),
        security_version,
        build_id: format!("powercut-{version}"),
        min_from_version: None,
        images: vec![("rootfs".into(), path)],
        compression,
        chunk_size: CHUNK,
        zstd_level: 1,
        xz_level: 6,
    };
    let out = dir.join(format!("{version}.bundle"));
    create_bundle(&opts, key, &out).expect("create bundle");
    let sha256 = Sha256::digest(&image).into();
    Release {
        version,
        image,
        sha256,
        bundle: std::fs::read(&out).expect("read bundle"),
    }
}

/// The fixture, built once per test binary.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::from_bytes(&[42; 32]);
        // Lengths differ and are not chunk multiples, so short last chunks and stale
        // tails of an older, longer image are both exercised.
        let releases = [
            build_release(
                dir.path(),
                &key,
                "1.0.0",
                100 * 1024 + 300,
                Compression::None,
            ),
            build_release(dir.path(), &key, "2.0.0", 90 * 1024 + 77, Compression::None),
            build_release(dir.path(), &key, "3.0.0", 110 * 1024 + 5, Compression::Zstd),
        ];
        Fixture {
            releases,
            keyring: Keyring::from_keys([key.verifying_key()]),
        }
    })
}

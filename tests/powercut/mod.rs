//! The simulated board of the power-cut campaign: slot A, slot B and a redundant U-Boot
//! environment on one [`PowerRail`], three signed releases, and the steps of an update
//! cycle (install, bootloader boot, confirm) run through the real engine and stores.
//!
//! Everything is in memory except the bundles, which `create_bundle` can only write to
//! a file: they are built once in a temporary directory and kept as bytes.
pub mod rail;

use std::io::Cursor;
use std::sync::OnceLock;

use bascule::bundle::{create_bundle, BundleReader, Compression, CreateOptions, Keyring};
use bascule::install::{self, InstallOptions, InstallTarget, NoProgress, SlotDevices};
use bascule::slot::{state, BootDecision, BootScheme, InstalledImage, RaucUboot};
use bascule_hal::env::uboot::{UbootEnv, UbootLayout};
use bascule_hal::{BlockDevice, EnvStore, EnvVars, HalError, MemBlock};
use bascule_partitions::SlotName;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

pub use rail::{PowerRail, RailBlock};

/// Size of each slot.
pub const SLOT_SIZE: usize = 256 << 10;
/// Uncompressed bytes per bundle chunk: one slot write each.
pub const CHUNK: u32 = 4096;
/// One U-Boot env copy; the second copy follows it.
pub const ENV_COPY: usize = 0x2000;
/// Boot attempts a pending slot gets.
pub const ATTEMPTS: u8 = 3;
pub const COMPATIBLE: &str = "bascule-powercut-board";
/// Device indices on the rail.
pub const SLOT_A: usize = 0;
pub const SLOT_B: usize = 1;
pub const ENV: usize = 2;
pub const DEVICE_NAMES: [&str; 3] = ["slot A", "slot B", "uboot env"];

/// The rail index of a slot.
pub fn slot_device(slot: SlotName) -> usize {
    match slot {
        SlotName::A => SLOT_A,
        SlotName::B => SLOT_B,
    }
}

/// The redundant env layout: copy 0 at 0, copy 1 right after it.
pub fn env_layout() -> UbootLayout {
    UbootLayout {
        offset: 0,
        size: ENV_COPY,
        redundant_offset: Some(ENV_COPY as u64),
    }
}

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
fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
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
    let image = image_bytes(
        len,
        version.len() as u64 * 31 + u64::from(version.as_bytes()[0]),
    );
    let path = dir.join(format!("{version}.img"));
    std::fs::write(&path, &image).expect("write image");
    let opts = CreateOptions {
        version: version.parse().expect("semver"),
        compatible: COMPATIBLE.into(),
        security_version: 1,
        build_id: format!("powercut-{version}"),
        images: vec![("rootfs".into(), path)],
        compression,
        chunk_size: CHUNK,
        zstd_level: 1,
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

/// The factory state: v1 raw-copied into A, garbage in B, and an env where A is good
/// and B is not bootable (as `bascule demo` provisions). Durable bytes per device.
pub fn factory_board() -> Vec<Vec<u8>> {
    let fx = fixture();
    let mut a = image_bytes(SLOT_SIZE, 7);
    a[..fx.releases[0].image.len()].copy_from_slice(&fx.releases[0].image);
    let b = image_bytes(SLOT_SIZE, 8);
    let v1 = InstalledImage {
        version: "1.0.0".into(),
        security_version: 1,
    };
    let pending = state::mark_pending(&RaucUboot, &EnvVars::new(), SlotName::A, &v1, ATTEMPTS);
    let good = state::confirm(&RaucUboot, &pending, SlotName::A, ATTEMPTS).unwrap_or(pending);
    let initial = state::begin_install(&RaucUboot, &good, SlotName::B);
    let mut env = UbootEnv::new(MemBlock::new("env", 2 * ENV_COPY), env_layout()).expect("layout");
    env.commit(&initial).expect("commit factory env");
    let env = env.into_inner().durable().to_vec();
    vec![a, b, env]
}

/// The slots of the board, as the install engine sees them.
struct RailSlots {
    rail: PowerRail,
}

impl SlotDevices for RailSlots {
    fn slot_size(&mut self, class: &str, _slot: SlotName) -> Result<Option<u64>, HalError> {
        Ok((class == "rootfs").then_some(SLOT_SIZE as u64))
    }

    fn open_slot(
        &mut self,
        class: &str,
        slot: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, HalError> {
        if class != "rootfs" {
            return Err(HalError::BadLayout {
                what: format!("slot class {class}"),
                reason: "unknown".into(),
            });
        }
        Ok(Box::new(self.rail.device(slot_device(slot))))
    }

    fn classes(&self) -> Vec<String> {
        vec!["rootfs".into()]
    }
}

/// The env store of the board.
pub fn env_store(rail: &PowerRail) -> Result<UbootEnv<RailBlock>, String> {
    UbootEnv::new(rail.device(ENV), env_layout()).map_err(|e| e.to_string())
}

/// Installs `release` with the real engine while `booted` runs.
pub fn install(rail: &PowerRail, release: &Release, booted: SlotName) -> Result<(), String> {
    let reader = BundleReader::open(Cursor::new(release.bundle.as_slice()), &fixture().keyring)
        .map_err(|e| format!("open bundle {}: {e}", release.version))?;
    let mut env = env_store(rail)?;
    let mut slots = RailSlots { rail: rail.clone() };
    let target = InstallTarget {
        env: &mut env,
        scheme: &RaucUboot,
        slots: &mut slots,
        compatible: COMPATIBLE,
        booted,
        attempts: ATTEMPTS,
        security_floor: 0,
        env_lock_dir: None,
    };
    install::install(reader, target, &InstallOptions::default(), &mut NoProgress)
        .map(|_| ())
        .map_err(|e| format!("install {}: {e}", release.version))
}

/// A power-on: the bootloader script decides and saves its env (`saveenv`).
pub fn boot(rail: &PowerRail) -> Result<BootDecision, String> {
    let mut env = env_store(rail)?;
    let mut vars = env
        .load()
        .map_err(|e| format!("bootloader env load: {e}"))?;
    let decision = RaucUboot.boot(&mut vars, ATTEMPTS);
    env.commit(&vars)
        .map_err(|e| format!("bootloader saveenv: {e}"))?;
    Ok(decision)
}

/// The health check of `slot` passed: bascule confirms it (`mark-good`).
pub fn confirm(rail: &PowerRail, slot: SlotName) -> Result<(), String> {
    let mut env = env_store(rail)?;
    let vars = env.load().map_err(|e| format!("confirm: env load: {e}"))?;
    if let Some(next) = state::confirm(&RaucUboot, &vars, slot, ATTEMPTS) {
        env.commit(&next)
            .map_err(|e| format!("confirm: env commit: {e}"))?;
    }
    Ok(())
}

/// The name of the env variable holding what bascule installed into `slot`.
pub fn version_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_VERSION")
}

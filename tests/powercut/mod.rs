//! The simulated board of the power-cut campaign: slot A, slot B and a boot
//! environment device on one [`PowerRail`], three signed releases, and the steps of an
//! update cycle (install, bootloader boot, confirm) run through the real engine and
//! stores. The environment is one of the [`EnvBackend`]s: a block device holding a
//! redundant U-Boot env or a native env (both with the RAUC U-Boot scheme), or GPT
//! attributes with a `bascule-env` partition (ChromeOS scheme); or a directory
//! holding a `grubenv` file (RAUC GRUB scheme), modelled by `MemFiles` on the rail.
//!
//! Everything is in memory except the bundles, which `create_bundle` can only write to
//! a file: they are built once in a temporary directory and kept as bytes.
pub mod rail;

use std::io::Cursor;
use std::sync::OnceLock;

use bascule::bundle::{create_bundle, BundleReader, Compression, CreateOptions, Keyring};
use bascule::install::{self, InstallOptions, InstallTarget, NoProgress, SlotDevices};
use bascule::slot::chromeos::ChromeosGpt;
use bascule::slot::{state, BootDecision, BootScheme, InstalledImage, RaucGrub, RaucUboot};
use bascule_hal::env::codec::crc32;
use bascule_hal::env::native::{NativeEnv, NativeLayout};
use bascule_hal::env::uboot::{UbootEnv, UbootLayout};
use bascule_hal::env::{EnvFiles, GrubEnv, MemFiles};
use bascule_hal::gpt::table::Table;
use bascule_hal::gpt::{GptAttrEnv, GptAttrLayout, PartitionRef, BASCULE_ENV_PARTITION};
use bascule_hal::{BlockDevice, EnvStore, HalError, MemBlock};
use bascule_partitions::SlotName;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

pub use rail::{Image, PowerRail};

/// Size of each slot.
pub const SLOT_SIZE: usize = 256 << 10;
/// Uncompressed bytes per bundle chunk: one slot write each.
pub const CHUNK: u32 = 4096;
/// One U-Boot or native env copy; the second copy follows it.
pub const ENV_COPY: usize = 0x2000;
/// Boot attempts a pending slot gets.
pub const ATTEMPTS: u8 = 3;
pub const COMPATIBLE: &str = "bascule-powercut-board";
/// Device indices on the rail.
pub const SLOT_A: usize = 0;
pub const SLOT_B: usize = 1;
/// The boot environment: a block device, or for [`EnvBackend::Grub`] the directory
/// holding `grubenv` (GRUB's `/boot/grub`).
pub const ENV: usize = 2;

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

/// The native env layout: copy 0 at 0, copy 1 right after it (same device size).
pub fn native_layout() -> NativeLayout {
    NativeLayout {
        offsets: [0, ENV_COPY as u64],
        size: ENV_COPY,
    }
}

/// Logical sector size of the GPT disk.
const GPT_SECTOR: usize = 512;
/// Sectors of the GPT disk (64 KiB): MBR, primary header, 32 sectors of entries,
/// partitions in LBAs 34..=94, backup entries in 95..=126, backup header at 127.
const GPT_SECTORS: u64 = 128;
/// 128 entries of 128 bytes, as `sgdisk` and gptman make them.
const GPT_ENTRIES: usize = 128;
const GPT_ENTRY_SIZE: usize = 128;
/// ChromeOS kernel partition type (FE3A2A5D-4F32-41A7-B725-ACCC3285A309), mixed-endian.
const CROS_KERNEL: [u8; 16] = [
    0x5d, 0x2a, 0x3a, 0xfe, 0x32, 0x4f, 0xa7, 0x41, 0xb7, 0x25, 0xac, 0xcc, 0x32, 0x85, 0xa3, 0x09,
];
/// Linux reserved (8DA63339-0007-60C0-C436-083AC8230908), for `bascule-env`.
const LINUX_RESERVED: [u8; 16] = [
    0x39, 0x33, 0xa6, 0x8d, 0x07, 0x00, 0xc0, 0x60, 0xc4, 0x36, 0x08, 0x3a, 0xc8, 0x23, 0x09, 0x08,
];
/// Legacy BIOS bootable, an attribute bit the store must keep.
const LEGACY_BOOTABLE: u64 = 1 << 2;

/// A blank GPT disk with a protective MBR: 1 `rootfs-a` and 2 `rootfs-b` (ChromeOS
/// kernels, all boot bits 0) and 3 `bascule-env` (16 KiB, never written). Built with
/// the hal's own table code: gptman is a dev-dependency of bascule-hal only, and the
/// root crate's tests cannot use it (hal/tests/gpt_*.rs cross-check this code against
/// gptman). The slot entries only carry the boot attributes here: the slots' bytes
/// are the rail's slot devices, as a separate disk per slot would be.
pub fn blank_gpt_disk() -> Vec<u8> {
    let ss = GPT_SECTOR as u64;
    let entry_sectors = (GPT_ENTRIES * GPT_ENTRY_SIZE) as u64 / ss;
    let last_lba = GPT_SECTORS - 1;
    let backup_entries = last_lba - entry_sectors;
    let (first_usable, last_usable) = (2 + entry_sectors, backup_entries - 1);
    let mut entries = vec![0u8; GPT_ENTRIES * GPT_ENTRY_SIZE];
    let parts: [(&[u8; 16], &str, u64, u64, u64); 3] = [
        (&CROS_KERNEL, "rootfs-a", 40, 47, LEGACY_BOOTABLE),
        (&CROS_KERNEL, "rootfs-b", 48, 55, 0),
        (&LINUX_RESERVED, BASCULE_ENV_PARTITION, 56, 87, 0),
    ];
    for (i, (ty, name, first, last, attrs)) in parts.into_iter().enumerate() {
        assert!(first_usable <= first && last <= last_usable);
        let e = &mut entries[i * GPT_ENTRY_SIZE..(i + 1) * GPT_ENTRY_SIZE];
        e[..16].copy_from_slice(ty);
        e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e[48..56].copy_from_slice(&attrs.to_le_bytes());
        for (k, unit) in name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let mut header = vec![0u8; 92];
    header[..8].copy_from_slice(b"EFI PART");
    header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    header[12..16].copy_from_slice(&92u32.to_le_bytes());
    header[40..48].copy_from_slice(&first_usable.to_le_bytes());
    header[48..56].copy_from_slice(&last_usable.to_le_bytes());
    header[56..72].copy_from_slice(&[0x42; 16]);
    header[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
    header[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
    header[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
    let table = Table::with_entries(header, entries.clone()).expect("GPT table");
    let mut disk = vec![0u8; GPT_SECTORS as usize * GPT_SECTOR];
    let mut put = |lba: u64, bytes: &[u8]| {
        let at = (lba * ss) as usize;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(1, &table.encode_header(GPT_SECTOR, 1, last_lba, 2));
    put(2, &entries);
    put(backup_entries, &entries);
    put(
        last_lba,
        &table.encode_header(GPT_SECTOR, last_lba, 1, backup_entries),
    );
    // Protective MBR: one 0xEE partition over the whole disk.
    let mut mbr = [0u8; GPT_SECTOR];
    mbr[446 + 4] = 0xee;
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&((GPT_SECTORS - 1) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    put(0, &mbr);
    disk
}

/// Slots A and B and `bascule-env`, by GPT name.
pub fn gpt_layout() -> GptAttrLayout {
    GptAttrLayout {
        slots: [("A", "rootfs-a"), ("B", "rootfs-b")]
            .into_iter()
            .map(|(s, p)| (s.to_string(), PartitionRef::Name(p.into())))
            .collect(),
        bascule_env: Some(PartitionRef::Name(BASCULE_ENV_PARTITION.into())),
    }
}

/// A boot environment backend of the board, with its boot scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvBackend {
    /// Redundant U-Boot env ([`env_layout`]), RAUC's U-Boot scheme.
    Uboot,
    /// bascule's native env ([`native_layout`]) on the same device, RAUC's U-Boot scheme.
    Native,
    /// ChromeOS GPT attributes with a `bascule-env` partition ([`blank_gpt_disk`]),
    /// the ChromeOS scheme.
    Gpt,
    /// A `grubenv` file replaced by rename ([`GrubEnv`] over the rail's `MemFiles`
    /// directory), RAUC's GRUB scheme.
    Grub,
}

impl EnvBackend {
    pub const ALL: [EnvBackend; 4] = [
        EnvBackend::Uboot,
        EnvBackend::Native,
        EnvBackend::Gpt,
        EnvBackend::Grub,
    ];

    /// The backend and its scheme, for messages.
    pub fn name(self) -> &'static str {
        match self {
            EnvBackend::Uboot => "uboot env (rauc-uboot)",
            EnvBackend::Native => "native env (rauc-uboot)",
            EnvBackend::Gpt => "gpt attributes + bascule-env (chromeos-gpt)",
            EnvBackend::Grub => "grubenv file (rauc-grub)",
        }
    }

    /// The names of the rail's devices, by index.
    pub fn device_names(self) -> [&'static str; 3] {
        let env = match self {
            EnvBackend::Uboot => "uboot env",
            EnvBackend::Native => "native env",
            EnvBackend::Gpt => "gpt disk",
            EnvBackend::Grub => "grub dir",
        };
        ["slot A", "slot B", env]
    }

    /// The boot scheme the bootloader (and bascule) use with this store.
    pub fn scheme(self) -> &'static dyn BootScheme {
        match self {
            EnvBackend::Uboot | EnvBackend::Native => &RaucUboot,
            EnvBackend::Gpt => &ChromeosGpt,
            EnvBackend::Grub => &RaucGrub,
        }
    }

    /// How many boots a freshly installed (pending) slot gets before the bootloader
    /// falls back. RAUC's U-Boot scheme and ChromeOS count down `attempts`; RAUC's
    /// GRUB scheme has no counter, only `<x>_TRY`: `RaucGrub::boot` boots a slot with
    /// `OK=1, TRY=0` after saving `TRY=1`, so an unconfirmed slot gets exactly one try
    /// whatever `attempts` says.
    pub fn pending_tries(self) -> u8 {
        match self {
            EnvBackend::Uboot | EnvBackend::Native | EnvBackend::Gpt => ATTEMPTS,
            EnvBackend::Grub => 1,
        }
    }

    /// Whether [`BootDecision::NoSlotResetCounters`] changes the environment so that
    /// the next boot can succeed. RAUC's U-Boot script resets every counter, RAUC's
    /// grub.cfg every `<x>_TRY` (`RaucGrub::boot`); the ChromeOS firmware enters
    /// recovery mode and changes nothing (`ChromeosGpt::boot`).
    pub fn no_slot_resets_counters(self) -> bool {
        !matches!(self, EnvBackend::Gpt)
    }

    /// Whether `slot`, in the boot order `order` read from `vars` right after a cut,
    /// can still be booted by the bootloader alone, with no further write by bascule.
    /// RAUC's U-Boot script gives every slot in `BOOT_ORDER` its tries back when none
    /// is left, and a ChromeOS slot in the order boots once the one before it fails:
    /// there every slot in the order can. RAUC's GRUB scheme keeps both slots in
    /// `ORDER` and marks a slot unbootable with `<x>_OK=0` (`RaucGrub::set_bad`); its
    /// reset clears only `<x>_TRY` (`RaucGrub::boot`), so a slot with `OK=0` never
    /// boots until bascule sets it primary or good again.
    pub fn can_boot_later(
        self,
        vars: &bascule_hal::EnvVars,
        order: &[SlotName],
        slot: SlotName,
    ) -> bool {
        order.contains(&slot)
            && match self {
                EnvBackend::Uboot | EnvBackend::Native | EnvBackend::Gpt => true,
                EnvBackend::Grub => vars.get(&format!("{slot}_OK")).map(|v| v.trim()) == Some("1"),
            }
    }

    /// The env device (or directory, empty) before anything was provisioned.
    fn blank_device(self) -> Image {
        match self {
            EnvBackend::Uboot | EnvBackend::Native => Image::Block(vec![0; 2 * ENV_COPY]),
            EnvBackend::Gpt => Image::Block(blank_gpt_disk()),
            EnvBackend::Grub => Image::Files(MemFiles::new()),
        }
    }

    /// The store over the env files `files` (GRUB only).
    fn open_files<F: EnvFiles + 'static>(self, files: F) -> Result<Box<dyn EnvStore>, String> {
        match self {
            EnvBackend::Grub => Ok(Box::new(GrubEnv::new(files))),
            _ => Err(format!("{} is not a file-based env", self.name())),
        }
    }

    /// The store over member `index` of `rail`.
    pub fn open_on(self, rail: &PowerRail, index: usize) -> Result<Box<dyn EnvStore>, String> {
        match self {
            EnvBackend::Grub => self.open_files(rail.files(index)),
            _ => self.open(rail.device(index)),
        }
    }

    /// The store over a rebooted board's env `image`: its durable bytes on a plain
    /// device, or its durable directory (a `MemFiles` after the cut, not armed).
    pub fn open_image(self, image: &Image) -> Result<Box<dyn EnvStore>, String> {
        match image {
            Image::Block(bytes) => self.open(MemBlock::from_bytes(
                self.device_names()[ENV],
                bytes.clone(),
            )),
            Image::Files(files) => self.open_files(files.clone()),
        }
    }

    /// The store over the env device `dev` (block-device backends only).
    pub fn open<D: BlockDevice + 'static>(self, dev: D) -> Result<Box<dyn EnvStore>, String> {
        let store: Box<dyn EnvStore> = match self {
            EnvBackend::Uboot => {
                Box::new(UbootEnv::new(dev, env_layout()).map_err(|e| e.to_string())?)
            }
            EnvBackend::Native => {
                Box::new(NativeEnv::new(dev, native_layout()).map_err(|e| e.to_string())?)
            }
            EnvBackend::Gpt => {
                Box::new(GptAttrEnv::new(dev, gpt_layout()).map_err(|e| e.to_string())?)
            }
            EnvBackend::Grub => return Err(format!("{} is not on a block device", self.name())),
        };
        Ok(store)
    }

    /// The factory env device: [`state::factory_state`] (what `bascule init-env`
    /// provisions) with v1 good on A and B unbootable, committed over the blank device
    /// (whose variables it keeps, such as a GPT's boot bits, when it has any). For
    /// GRUB, a directory holding only a durable `grubenv`.
    pub fn factory_env(self) -> Image {
        let rail = PowerRail::new(&[("env", self.blank_device())]);
        let mut env = self.open_on(&rail, 0).expect("open the blank env");
        let blank = env.load().unwrap_or_default();
        let v1 = InstalledImage {
            version: "1.0.0".into(),
            security_version: 1,
        };
        let factory = state::factory_state(self.scheme(), &blank, SlotName::A, Some(&v1), ATTEMPTS);
        env.commit(&factory).expect("commit factory env");
        rail.durable().swap_remove(0)
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

/// The factory state: v1 raw-copied into A, garbage in B, and an env where A is good
/// and B is not bootable ([`EnvBackend::factory_env`]). Durable image per member.
pub fn factory_board(backend: EnvBackend) -> Vec<Image> {
    let fx = fixture();
    let mut a = image_bytes(SLOT_SIZE, 7);
    a[..fx.releases[0].image.len()].copy_from_slice(&fx.releases[0].image);
    let b = image_bytes(SLOT_SIZE, 8);
    vec![Image::Block(a), Image::Block(b), backend.factory_env()]
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
pub fn env_store(rail: &PowerRail, backend: EnvBackend) -> Result<Box<dyn EnvStore>, String> {
    backend.open_on(rail, ENV)
}

/// Installs `release` with the real engine while `booted` runs.
pub fn install(
    rail: &PowerRail,
    backend: EnvBackend,
    release: &Release,
    booted: SlotName,
) -> Result<(), String> {
    let reader = BundleReader::open(Cursor::new(release.bundle.as_slice()), &fixture().keyring)
        .map_err(|e| format!("open bundle {}: {e}", release.version))?;
    let mut env = env_store(rail, backend)?;
    let mut slots = RailSlots { rail: rail.clone() };
    let target = InstallTarget {
        env: &mut *env,
        scheme: backend.scheme(),
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

/// A power-on: the bootloader decides and saves its env (`saveenv`, the vboot
/// firmware's GPT update, or for GRUB a `grub-editenv`-style rename: see below).
///
/// GRUB's own `save_env` rewrites `grubenv` in place through a blocklist, which the
/// rename model does not capture (documented as the limit in hal/src/env/grub.rs);
/// the bootloader's save here goes through `GrubEnv::commit` like bascule's own.
pub fn boot(rail: &PowerRail, backend: EnvBackend) -> Result<BootDecision, String> {
    let mut env = env_store(rail, backend)?;
    let mut vars = env
        .load()
        .map_err(|e| format!("bootloader env load: {e}"))?;
    let decision = backend.scheme().boot(&mut vars, ATTEMPTS);
    env.commit(&vars)
        .map_err(|e| format!("bootloader saveenv: {e}"))?;
    Ok(decision)
}

/// The health check of `slot` passed: bascule confirms it (`mark-good`).
pub fn confirm(rail: &PowerRail, backend: EnvBackend, slot: SlotName) -> Result<(), String> {
    let mut env = env_store(rail, backend)?;
    let vars = env.load().map_err(|e| format!("confirm: env load: {e}"))?;
    if let Some(next) = state::confirm(backend.scheme(), &vars, slot, ATTEMPTS) {
        env.commit(&next)
            .map_err(|e| format!("confirm: env commit: {e}"))?;
    }
    Ok(())
}

/// The name of the env variable holding what bascule installed into `slot`.
pub fn version_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_VERSION")
}

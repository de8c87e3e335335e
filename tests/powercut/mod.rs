//! The simulated board of the power-cut campaign: slot A, slot B and a boot
//! environment device on one [`PowerRail`], three signed releases, and the steps of an
//! update cycle (install, bootloader boot, confirm) run through the real engine and
//! stores. The environment is one of the [`EnvBackend`]s: a block device holding a
//! redundant U-Boot env or a native env (both with the RAUC U-Boot scheme), or GPT
//! attributes with a `bascule-env` partition (ChromeOS scheme); or a directory
//! holding a `grubenv` file (RAUC GRUB scheme), modelled by `MemFiles` on the rail.
//! A fourth member is the data slot's `state_dir` (a `MemFiles` directory) holding the
//! security floor file, which every confirmation raises after its env commit
//! ([`bascule::ops::confirm_and_raise_floor`]).
//!
//! Everything is in memory except the bundles, which `create_bundle` can only write to
//! a file: they are built once in a temporary directory and kept as bytes.
//!
//! The releases are in [`releases`], the GPT disk in [`gpt_disk`], the power rail in
//! [`rail`] with its cut points in [`cut_plans`]. The campaign itself is in
//! [`scenario`] (the update scenarios), [`campaign`] (cut-point enumeration and
//! replay), [`reboot`] (the checks after a cut) and [`planted`] (unsafe installers the
//! campaign must catch).
pub mod campaign;
pub mod cut_plans;
pub mod gpt_disk;
pub mod planted;
pub mod rail;
pub mod reboot;
pub mod releases;
pub mod scenario;

use std::io::Cursor;

use bascule::bundle::BundleReader;
use bascule::device::FLOOR_FILE;
use bascule::health::history::{History, Outcome, Record};
use bascule::install::{self, InstallOptions, InstallTarget, NoProgress, SlotDevices};
use bascule::ops::confirm_and_raise_floor;
use bascule::slot::chromeos::ChromeosGpt;
use bascule::slot::{state, BootDecision, BootScheme, InstalledImage, RaucGrub, RaucUboot};
use bascule_hal::env::native::{NativeEnv, NativeLayout};
use bascule_hal::env::uboot::{UbootEnv, UbootLayout};
use bascule_hal::env::{EnvFiles, GrubEnv, MemFiles};
use bascule_hal::floor::encode_floor;
use bascule_hal::gpt::GptAttrEnv;
use bascule_hal::{BlockDevice, EnvStore, HalError, MemBlock};
use bascule_hal::{FileFloor, SecurityFloorStore};
use bascule_partitions::SlotName;

pub use gpt_disk::{blank_gpt_disk, gpt_layout};
pub use rail::{Image, PowerRail};
pub use releases::{fixture, Release};

use releases::image_bytes;

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
/// `state_dir` on the data slot: the directory holding the security floor file.
pub const DATA: usize = 3;
/// The security floor of the factory state: v1's security version.
pub const FACTORY_FLOOR: u32 = 1;

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
    pub fn device_names(self) -> [&'static str; 4] {
        let env = match self {
            EnvBackend::Uboot => "uboot env",
            EnvBackend::Native => "native env",
            EnvBackend::Gpt => "gpt disk",
            EnvBackend::Grub => "grub dir",
        };
        ["slot A", "slot B", env, "data dir"]
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
                EnvBackend::Grub => vars.get_str(&format!("{slot}_OK")).map(str::trim) == Some("1"),
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

/// The factory state: v1 raw-copied into A, garbage in B, an env where A is good
/// and B is not bootable ([`EnvBackend::factory_env`]), and the data slot's
/// `state_dir` with the floor at v1's security version. Durable image per member.
pub fn factory_board(backend: EnvBackend) -> Vec<Image> {
    let fx = fixture();
    let mut a = image_bytes(SLOT_SIZE, 7);
    a[..fx.releases[0].image.len()].copy_from_slice(&fx.releases[0].image);
    let b = image_bytes(SLOT_SIZE, 8);
    let mut data = MemFiles::new();
    data.insert(FLOOR_FILE, encode_floor(FACTORY_FLOOR).as_bytes());
    vec![
        Image::Block(a),
        Image::Block(b),
        backend.factory_env(),
        Image::Files(data),
    ]
}

/// The security floor a board's durable `images` hold; an error when it is unreadable.
pub fn floor_of(images: &[Image]) -> Result<u32, String> {
    let Some(Image::Files(files)) = images.get(DATA) else {
        return Err("the board has no data slot directory".into());
    };
    FileFloor::new(files.clone(), FLOOR_FILE)
        .read()
        .map_err(|e| e.to_string())
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
    install_with(rail, backend, release, booted, false, &mut rail.files(DATA))
}

/// `install --no-activate` of `release` while `booted` runs: written and verified,
/// its record in the data slot's `state_dir` (`state_files`, on the rail), staged in
/// the env, unbootable.
pub fn install_no_activate(
    rail: &PowerRail,
    backend: EnvBackend,
    release: &Release,
    booted: SlotName,
    mut state_files: impl EnvFiles,
) -> Result<(), String> {
    install_with(rail, backend, release, booted, true, &mut state_files)
}

fn install_with(
    rail: &PowerRail,
    backend: EnvBackend,
    release: &Release,
    booted: SlotName,
    no_activate: bool,
    state_files: &mut dyn EnvFiles,
) -> Result<(), String> {
    let reader = BundleReader::open(Cursor::new(release.bundle.as_slice()), &fixture().keyring)
        .map_err(|e| format!("open bundle {}: {e}", release.version))?;
    let mut env = env_store(rail, backend)?;
    let mut slots = RailSlots { rail: rail.clone() };
    let target = engine_target(&mut *env, backend, &mut slots, booted, state_files);
    let opts = InstallOptions {
        no_activate,
        ..InstallOptions::default()
    };
    install::install(reader, target, &opts, &mut NoProgress)
        .map(|_| ())
        .map_err(|e| format!("install {}: {e}", release.version))
}

/// `bascule activate` while `booted` runs, with the real engine: the record in the
/// data slot's `state_dir`, the slot read back, one env commit.
pub fn activate(rail: &PowerRail, backend: EnvBackend, booted: SlotName) -> Result<(), String> {
    let mut env = env_store(rail, backend)?;
    let mut slots = RailSlots { rail: rail.clone() };
    let mut files = rail.files(DATA);
    let target = engine_target(&mut *env, backend, &mut slots, booted, &mut files);
    install::activate(target, &fixture().keyring)
        .map(|_| ())
        .map_err(|e| format!("activate: {e}"))
}

/// What the install engine and `activate` get on the board.
fn engine_target<'a>(
    env: &'a mut dyn EnvStore,
    backend: EnvBackend,
    slots: &'a mut RailSlots,
    booted: SlotName,
    state_files: &'a mut dyn EnvFiles,
) -> InstallTarget<'a> {
    InstallTarget {
        env,
        scheme: backend.scheme(),
        slots,
        compatible: COMPATIBLE,
        booted,
        attempts: ATTEMPTS,
        security_floor: 0,
        env_lock_dir: None,
        hooks: None,
        state_files: Some(state_files),
    }
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
    let decision = backend.scheme().boot(&mut vars);
    env.commit(&vars)
        .map_err(|e| format!("bootloader saveenv: {e}"))?;
    Ok(decision)
}

/// The health check of the booted `slot` passed: bascule confirms it, raises the
/// floor (`mark-good`, through the same library function), then records the pass in
/// the history on the data slot, as `bascule health` does.
pub fn confirm(rail: &PowerRail, backend: EnvBackend, slot: SlotName) -> Result<(), String> {
    let mut env = env_store(rail, backend)?;
    let mut floor = FileFloor::new(rail.files(DATA), FLOOR_FILE);
    confirm_and_raise_floor(&mut *env, &mut floor, backend.scheme(), slot, ATTEMPTS)
        .map_err(|e| format!("confirm: {e}"))?;
    record_probe(rail, slot, Outcome::Confirmed)
}

/// The record the health probe of `slot` leaves (the campaign's clock is fixed).
pub fn probe_record(slot: SlotName, outcome: Outcome) -> Record {
    let failed = outcome == Outcome::Failed;
    Record {
        time: 1_764_547_200,
        slot,
        version: None,
        manifest: None,
        outcome,
        stage: failed.then(|| "app".into()),
        check: failed.then(|| "selftest".into()),
        reason: failed.then(|| "sh exit status: 1".into()),
        output: failed.then(|| "selftest: FAIL".into()),
        boot_count: 1,
        action: failed.then(|| "reboot".into()),
    }
}

/// Appends the probe record of `slot` to the history in the data slot's directory,
/// through the rail (so its append and fsyncs are cut like every other write).
pub fn record_probe(rail: &PowerRail, slot: SlotName, outcome: Outcome) -> Result<(), String> {
    History::over(rail.files(DATA))
        .append(&probe_record(slot, outcome))
        .map_err(|e| format!("health history: {e}"))
}

/// The name of the env variable holding what bascule installed into `slot`.
pub fn version_var(slot: SlotName) -> String {
    format!("BASCULE_{slot}_VERSION")
}

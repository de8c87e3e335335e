//! Property test of the slot state machine under any sequence of device events, with
//! the real install engine.
//!
//! A model device: an env store in memory (a redundant U-Boot env for the RAUC U-Boot
//! scheme, a grubenv over in-memory files for the RAUC GRUB scheme, bascule's native
//! env for the ChromeOS GPT scheme's variables), two in-memory slots, and the slot
//! that runs. An install is `bascule::install::install` itself, fed a real signed
//! bundle; power cuts are faults of the env store or of the slot device that stop the
//! engine where the cut would. Confirm and mark-bad go through the same pure functions
//! the CLI uses, and boots through the bootloader model (`scheme.boot`).
//!
//! After every event, booting the device again and again:
//! - **safety**: it always reaches a slot (never "no slot" twice in a row: a brick),
//!   and only ever boots a slot whose bytes are exactly the image of the version the
//!   env records for it: never one being written, torn by a cut or failing its check;
//! - **liveness**: if no new image is ever confirmed (every trial fails), the device
//!   is back on a confirmed image within [`liveness_bound`] boots: the
//!   pending slot's tries, then the confirmed slot (re-armed when the install began);
//!   twice that, plus the counter reset, when the confirmed slot itself spent its
//!   tries unconfirmed afterwards (its own health failed too).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bascule::bundle::{create_bundle, BundleReader, Compression, CreateOptions, Keyring};
use bascule::install::{self, InstallOptions, InstallTarget, NoProgress, SlotDevices};
use bascule::slot::chromeos::ChromeosGpt;
use bascule::slot::{
    state, BootDecision, BootScheme, BootState, InstalledImage, RaucGrub, RaucUboot, SlotState,
};
use bascule_hal::env::uboot::UbootLayout;
use bascule_hal::env::{MemFiles, NativeLayout};
use bascule_hal::{
    BlockDevice, EnvStore, EnvVars, GrubEnv, HalError, MemBlock, NativeEnv, UbootEnv,
};
use bascule_partitions::SlotName;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const ATTEMPTS: u8 = 3;
/// Every scheme the model runs.
const SCHEMES: [&(dyn BootScheme + Sync); 3] = [&RaucUboot, &RaucGrub, &ChromeosGpt];
const COMPATIBLE: &str = "props-board";
const SLOT_SIZE: usize = 16 * 1024;
const CHUNK: u32 = 4096;

/// Boots within which the last confirmed image runs again when every trial fails.
fn liveness_bound(scheme: &dyn BootScheme) -> usize {
    let tries = if scheme.name() == "rauc-grub" {
        1
    } else {
        usize::from(ATTEMPTS)
    };
    2 * (tries + 1)
}

/// Where a power cut hits an install.
#[derive(Debug, Clone, Copy)]
enum CutStage {
    /// Before the "target unbootable" commit reached the medium.
    BeforeBegin,
    /// While the payload is being written.
    MidWrite,
    /// After the image was written and synced, before the "pending" commit.
    BeforePending,
    /// Right after the "pending" commit.
    AfterPending,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    InstallGood {
        force: bool,
    },
    /// An install whose payload fails verification (a bad chunk): the engine stops.
    InstallBad,
    Reboot,
    HealthPass,
    HealthFail,
    MarkBadOther,
    MarkBadBooted,
    PowerCutMidInstall(CutStage),
}

fn event() -> impl Strategy<Value = Event> {
    let stage = prop_oneof![
        Just(CutStage::BeforeBegin),
        Just(CutStage::MidWrite),
        Just(CutStage::BeforePending),
        Just(CutStage::AfterPending),
    ];
    prop_oneof![
        3 => any::<bool>().prop_map(|force| Event::InstallGood { force }),
        1 => Just(Event::InstallBad),
        4 => Just(Event::Reboot),
        2 => Just(Event::HealthPass),
        1 => Just(Event::HealthFail),
        1 => Just(Event::MarkBadOther),
        1 => Just(Event::MarkBadBooted),
        2 => stage.prop_map(Event::PowerCutMidInstall),
    ]
}

fn version(major: u32) -> String {
    format!("{major}.0.0")
}

/// The image of release `major`: 3-4 chunks of bytes unique to it.
fn image(major: u32) -> Vec<u8> {
    let len = 3 * CHUNK as usize + 100 * (major as usize % 10);
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(major * 7919) as u8)
        .collect()
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The signed bundle of release `major`, built once per test binary.
fn bundle(major: u32) -> Arc<Vec<u8>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Arc<Vec<u8>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().unwrap().get(&major) {
        return b.clone();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("rootfs.img");
    std::fs::write(&img, image(major)).expect("write image");
    let opts = CreateOptions {
        version: version(major).parse().expect("semver"),
        compatible: COMPATIBLE.into(),
        security_version: 1,
        build_id: "props".into(),
        min_from_version: None,
        images: vec![("rootfs".into(), img)],
        compression: Compression::None,
        chunk_size: CHUNK,
        zstd_level: 1,
        xz_level: 6,
    };
    let out = dir.path().join("b.bundle");
    create_bundle(&opts, &key(), &out).expect("create bundle");
    let bytes = Arc::new(std::fs::read(out).expect("read bundle"));
    cache.lock().unwrap().insert(major, bytes.clone());
    bytes
}

/// A slot in memory, shared between the engine's handle and the model.
#[derive(Clone)]
struct SharedSlot {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Writes fail (a power cut mid-write) after this many succeeded.
    writes_left: Arc<Mutex<Option<usize>>>,
}

impl BlockDevice for SharedSlot {
    fn len(&self) -> u64 {
        SLOT_SIZE as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        let bytes = self.bytes.lock().unwrap();
        buf.copy_from_slice(&bytes[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        if let Some(left) = self.writes_left.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(HalError::PowerCut);
            }
            *left -= 1;
        }
        let mut bytes = self.bytes.lock().unwrap();
        bytes[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), HalError> {
        Ok(())
    }
    fn name(&self) -> String {
        "mem-slot".into()
    }
}

struct Slots([SharedSlot; 2]);

impl SlotDevices for Slots {
    fn slot_size(&mut self, class: &str, _: SlotName) -> Result<Option<u64>, HalError> {
        Ok((class == "rootfs").then_some(SLOT_SIZE as u64))
    }
    fn open_slot(
        &mut self,
        _: &str,
        slot: SlotName,
    ) -> Result<Box<dyn BlockDevice + Send>, HalError> {
        Ok(Box::new(self.0[slot.index()].clone()))
    }
    fn classes(&self) -> Vec<String> {
        vec!["rootfs".into()]
    }
}

/// An env store whose commits fail (a power cut before the write landed) once
/// `commits_left` reaches 0.
struct CuttableEnv {
    inner: Box<dyn EnvStore + Send>,
    commits_left: Option<usize>,
}

impl EnvStore for CuttableEnv {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        self.inner.load()
    }
    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        if let Some(left) = self.commits_left.as_mut() {
            if *left == 0 {
                return Err(HalError::PowerCut);
            }
            *left -= 1;
        }
        self.inner.commit(vars)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn env_store(scheme: &dyn BootScheme) -> Box<dyn EnvStore + Send> {
    match scheme.name() {
        "rauc-grub" => Box::new(GrubEnv::new(MemFiles::new())),
        "rauc-uboot" => {
            let layout = UbootLayout {
                offset: 0,
                size: 0x1000,
                redundant_offset: Some(0x1000),
            };
            Box::new(UbootEnv::new(MemBlock::new("env", 0x2000), layout).expect("layout"))
        }
        _ => {
            let layout = NativeLayout {
                offsets: [0, 0x1000],
                size: 0x1000,
            };
            Box::new(NativeEnv::new(MemBlock::new("env", 0x2000), layout).expect("layout"))
        }
    }
}

/// The model device.
struct Device {
    scheme: &'static (dyn BootScheme + Sync),
    env: CuttableEnv,
    slots: [SharedSlot; 2],
    booted: SlotName,
    next_major: u32,
    /// Per slot, the image it holds that was confirmed by booting healthy (major).
    confirmed: [Option<u32>; 2],
    /// An install with `--force` overwrote the last confirmed image: if every slot
    /// then fails its trial, ChromeOS firmware has nothing left and enters recovery
    /// (the documented cost of that override), so "no slot" is not a brick there.
    forced_over_confirmed: bool,
    /// The firmware found no slot after such an override (ChromeOS recovery mode):
    /// the run ends there.
    in_recovery: bool,
}

impl Device {
    /// The factory state: v1 good on A, B not bootable and holding no image.
    fn factory(scheme: &'static (dyn BootScheme + Sync)) -> Device {
        let mut env = CuttableEnv {
            inner: env_store(scheme),
            commits_left: None,
        };
        let v1 = InstalledImage {
            version: version(1),
            security_version: 1,
        };
        let vars = state::factory_state(scheme, &EnvVars::new(), SlotName::A, Some(&v1), ATTEMPTS);
        env.commit(&vars).expect("factory commit");
        let slot = |bytes: Vec<u8>| SharedSlot {
            bytes: Arc::new(Mutex::new(bytes)),
            writes_left: Arc::new(Mutex::new(None)),
        };
        let mut a = image(1);
        a.resize(SLOT_SIZE, 0);
        Device {
            scheme,
            env,
            slots: [slot(a), slot(vec![0xee; SLOT_SIZE])],
            booted: SlotName::A,
            next_major: 2,
            confirmed: [Some(1), None],
            forced_over_confirmed: false,
            in_recovery: false,
        }
    }

    fn load(&mut self) -> EnvVars {
        self.env.load().expect("env loads")
    }

    fn commit(&mut self, vars: &EnvVars) {
        self.env.commit(vars).expect("env commit");
    }

    /// Runs the real engine on release `next_major` (damaged when `corrupt`), with
    /// the power cut `stop`; then reboots when the cut happened.
    fn install(
        &mut self,
        force: bool,
        corrupt: bool,
        stop: Option<CutStage>,
    ) -> Result<(), String> {
        let major = self.next_major;
        self.next_major += 1;
        let mut bytes = (*bundle(major)).clone();
        if corrupt {
            *bytes.last_mut().expect("payload") ^= 0x40;
        }
        let keyring = Keyring::from_keys([key().verifying_key()]);
        let reader = BundleReader::open(&bytes[..], &keyring).map_err(|e| e.to_string())?;
        let target = self.booted.other();
        self.env.commits_left = match stop {
            Some(CutStage::BeforeBegin) => Some(0),
            Some(CutStage::BeforePending) => Some(1),
            _ => None,
        };
        if let Some(CutStage::MidWrite) = stop {
            *self.slots[target.index()].writes_left.lock().unwrap() = Some(1);
        }
        let mut slots = Slots(self.slots.clone());
        let dev = InstallTarget {
            env: &mut self.env,
            scheme: self.scheme,
            slots: &mut slots,
            compatible: COMPATIBLE,
            booted: self.booted,
            attempts: ATTEMPTS,
            security_floor: 0,
            env_lock_dir: None,
            hooks: None,
            state_files: None,
        };
        let opts = InstallOptions {
            force,
            ..InstallOptions::default()
        };
        let result = install::install(reader, dev, &opts, &mut NoProgress);
        self.env.commits_left = None;
        *self.slots[target.index()].writes_left.lock().unwrap() = None;
        let wrote = match (&result, stop) {
            (Ok(_), _) => true,
            (Err(_), Some(CutStage::BeforeBegin)) | (Err(_), None) => {
                // Refused by the plan, or stopped by the bad chunk after the begin commit.
                corrupt
            }
            (Err(_), _) => true,
        };
        if wrote {
            self.confirmed[target.index()] = None;
            self.forced_over_confirmed |= self.confirmed == [None, None];
        }
        if stop.is_some() {
            return self.reboot();
        }
        Ok(())
    }

    /// A power-on: the bootloader decides and saves; after "no slot" it resets the
    /// board and decides again.
    fn reboot(&mut self) -> Result<(), String> {
        let mut vars = self.load();
        for _ in 0..2 {
            let decision = self.scheme.boot(&mut vars);
            self.commit(&vars);
            if let BootDecision::Boot(slot) = decision {
                self.booted = slot;
                return self.check_boot(slot, &vars).map(|_| ());
            }
        }
        if self.forced_over_confirmed {
            self.in_recovery = true;
            return Ok(());
        }
        Err("BRICK: no bootable slot even after the counter reset".into())
    }

    /// The slot holds exactly the image of the version the env records; returns it.
    fn check_boot(&self, slot: SlotName, vars: &EnvVars) -> Result<u32, String> {
        let recorded = vars.get_str(&format!("BASCULE_{slot}_VERSION"));
        let major = recorded
            .and_then(|v| v.strip_suffix(".0.0"))
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| {
                format!("bootloader boots slot {slot}, whose version is {recorded:?}")
            })?;
        let want = image(major);
        let bytes = self.slots[slot.index()].bytes.lock().unwrap();
        if bytes[..want.len()] != want[..] {
            return Err(format!(
                "bootloader boots slot {slot}, which does not hold the image of v{major}"
            ));
        }
        Ok(major)
    }

    fn apply(&mut self, event: Event) -> Result<(), String> {
        if self.in_recovery {
            return Ok(());
        }
        match event {
            Event::InstallGood { force } => self.install(force, false, None),
            Event::InstallBad => self.install(false, true, None),
            Event::PowerCutMidInstall(stage) => self.install(false, false, Some(stage)),
            Event::Reboot => self.reboot(),
            Event::HealthFail => Ok(()),
            Event::HealthPass => self.confirm_booted(),
            Event::MarkBadOther => self.mark_bad(self.booted.other()),
            Event::MarkBadBooted => self.mark_bad(self.booted),
        }
    }

    /// A passing health check confirms the booted slot, as `bascule mark-good` does:
    /// only when the bootloader then keeps booting it (not a slot marked bad).
    fn confirm_booted(&mut self) -> Result<(), String> {
        let vars = self.load();
        let next = state::confirm(self.scheme, &vars, self.booted, ATTEMPTS);
        let after = next.clone().unwrap_or(vars);
        let st = BootState::read(self.scheme, &after).map_err(|e| e.to_string())?;
        if st.slot(self.booted).state != SlotState::Good {
            return Ok(());
        }
        if let Some(next) = next {
            self.commit(&next);
        }
        self.confirmed[self.booted.index()] = Some(self.check_boot(self.booted, &after)?);
        self.forced_over_confirmed = false;
        Ok(())
    }

    /// `bascule mark-bad`: refused when it would leave nothing bootable.
    fn mark_bad(&mut self, slot: SlotName) -> Result<(), String> {
        let vars = self.load();
        let marked = state::mark_bad_keeping_one(self.scheme, &vars, slot, Some(self.booted));
        if let Ok(Some(next)) = marked {
            self.commit(&next);
            self.confirmed[slot.index()] = None;
        }
        Ok(())
    }

    /// Boots a copy of the env with no confirmation: safety at every boot, and
    /// liveness (the last confirmed image within the bound).
    fn check_boot_chain(&mut self) -> Result<(), String> {
        if self.in_recovery {
            return Ok(());
        }
        let mut vars = self.load();
        let bound = liveness_bound(self.scheme);
        let mut resets_in_a_row = 0;
        let mut back_on_confirmed = self.confirmed == [None, None];
        for n in 1..=bound + 2 {
            match self.scheme.boot(&mut vars) {
                BootDecision::NoSlotResetCounters => {
                    resets_in_a_row += 1;
                    if resets_in_a_row > 1 && self.forced_over_confirmed {
                        return Ok(()); // every slot unconfirmed and failed: see the field
                    }
                    if resets_in_a_row > 1 {
                        return Err(format!(
                            "BRICK at boot {n}: no bootable slot after the reset"
                        ));
                    }
                }
                BootDecision::Boot(slot) => {
                    resets_in_a_row = 0;
                    let major = self
                        .check_boot(slot, &vars)
                        .map_err(|e| format!("boot {n}: {e}"))?;
                    if self.confirmed[slot.index()] == Some(major) {
                        back_on_confirmed = true;
                    }
                }
            }
            if n == bound && !back_on_confirmed {
                return Err(format!(
                    "LIVENESS: not back on a confirmed image {:?} within {bound} boots",
                    self.confirmed
                ));
            }
        }
        Ok(())
    }
}

fn run(scheme: &'static (dyn BootScheme + Sync), events: &[Event]) -> Result<(), TestCaseError> {
    let mut dev = Device::factory(scheme);
    for (i, &event) in events.iter().enumerate() {
        let step = dev.apply(event).and_then(|()| dev.check_boot_chain());
        if let Err(why) = step {
            let env = dev.load();
            let msg = format!(
                "{}: event #{i} {event:?}: {why}; env {env:?}",
                scheme.name()
            );
            return Err(TestCaseError::fail(msg));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rauc_uboot_always_boots_a_verified_image(events in prop::collection::vec(event(), 0..30)) {
        run(&RaucUboot, &events)?;
    }

    #[test]
    fn rauc_grub_always_boots_a_verified_image(events in prop::collection::vec(event(), 0..30)) {
        run(&RaucGrub, &events)?;
    }

    #[test]
    fn chromeos_gpt_always_boots_a_verified_image(events in prop::collection::vec(event(), 0..30)) {
        run(&ChromeosGpt, &events)?;
    }
}

/// The model catches a slot that boots while it holds another image (guards the test).
#[test]
fn model_flags_a_bootable_unverified_slot() {
    let mut dev = Device::factory(&RaucUboot);
    let mut vars = dev.load();
    RaucUboot.set_primary(&mut vars, SlotName::B, ATTEMPTS);
    vars.insert("BASCULE_B_VERSION", version(2));
    dev.commit(&vars);
    let err = dev.check_boot_chain().unwrap_err();
    assert!(err.contains("does not hold the image of v2"), "{err}");
}

/// The model catches a device that keeps trying a failed image (guards liveness).
#[test]
fn model_flags_a_device_that_never_falls_back() {
    let mut dev = Device::factory(&RaucUboot);
    dev.apply(Event::InstallGood { force: false }).unwrap();
    let mut vars = dev.load();
    vars.insert("BOOT_B_LEFT", "9");
    dev.commit(&vars);
    let err = dev.check_boot_chain().unwrap_err();
    assert!(err.starts_with("LIVENESS"), "{err}");
}

/// `mark-bad` of the booted slot, then an install: refused by the engine before
/// anything is written (the brick of issue 15, defect 5).
#[test]
fn install_after_mark_bad_booted_is_refused() {
    for scheme in SCHEMES {
        let mut dev = Device::factory(scheme);
        for event in [
            Event::InstallGood { force: false },
            Event::Reboot,
            Event::HealthPass,
            Event::MarkBadBooted,
        ] {
            dev.apply(event).unwrap();
        }
        let before = dev.load();
        let st = BootState::read(scheme, &before).unwrap();
        assert!(
            !st.view.bootable(SlotName::B),
            "{}: B marked bad",
            scheme.name()
        );
        let a_before = dev.slots[0].bytes.lock().unwrap().clone();
        dev.apply(Event::InstallGood { force: true }).unwrap();
        assert_eq!(dev.load(), before, "{}: env untouched", scheme.name());
        assert!(
            *dev.slots[0].bytes.lock().unwrap() == a_before,
            "{}",
            scheme.name()
        );
    }
}

/// The model does real work: an update is installed, booted and confirmed, and an
/// unhealthy one rolls back, for every scheme.
#[test]
fn model_runs_an_update_and_a_rollback() {
    for scheme in SCHEMES {
        let mut dev = Device::factory(scheme);
        for event in [
            Event::InstallGood { force: false },
            Event::Reboot,
            Event::HealthPass,
        ] {
            dev.apply(event).unwrap();
        }
        assert_eq!(dev.confirmed, [Some(1), Some(2)], "{}", scheme.name());
        dev.apply(Event::InstallGood { force: false }).unwrap();
        let mut boots = Vec::new();
        while dev.booted != SlotName::B || boots.is_empty() {
            assert!(
                boots.len() < liveness_bound(scheme),
                "{}: {boots:?}",
                scheme.name()
            );
            dev.apply(Event::Reboot).unwrap();
            boots.push(dev.booted);
            dev.check_boot_chain().unwrap();
        }
        dev.apply(Event::HealthPass).unwrap();
        assert_eq!(boots.first(), Some(&SlotName::A), "{}", scheme.name());
        assert_eq!(
            boots.last(),
            Some(&SlotName::B),
            "{}: falls back to B",
            scheme.name()
        );
    }
}

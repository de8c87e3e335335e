//! Property test of the slot state machine under any sequence of device events.
//!
//! A model device: an env store in memory (a redundant U-Boot env for the RAUC U-Boot
//! scheme, a grubenv over in-memory files for the RAUC GRUB scheme), the content of
//! each slot as a small enum, and the slot that runs. Events go through the same pure
//! functions the engine and the CLI use (`plan_install`, `state::begin_install`,
//! `mark_pending`, `confirm`, `mark_bad`) and the bootloader model (`scheme.boot`),
//! each state change committed whole to the store.
//!
//! After every event, booting the device again and again with no confirmation (the
//! worst case: every new image fails its health check) must:
//! - always reach a slot (never "no slot" twice in a row: a brick);
//! - only ever boot a slot holding a complete, verified image, never one that is being
//!   written, was torn by a power cut or failed verification;
//! - boot a slot whose image is the version the env records for it.
use bascule::bundle::{ChunkEntry, Compression, ImageEntry, Manifest, FORMAT_VERSION};
use bascule::install::{plan_install, PlanInput};
use bascule::slot::{
    state, BootDecision, BootScheme, BootState, InstalledImage, RaucGrub, RaucUboot,
};
use bascule_hal::env::uboot::UbootLayout;
use bascule_hal::env::MemFiles;
use bascule_hal::{EnvStore, EnvVars, GrubEnv, MemBlock, UbootEnv};
use bascule_partitions::SlotName;
use proptest::prelude::*;

const ATTEMPTS: u8 = 3;
const COMPATIBLE: &str = "props-board";

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// A complete image of major version `n`, verified against its signed manifest.
    Image(u32),
    /// Being written, torn by a power cut, or failed verification.
    Unverified,
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
        2 => stage.prop_map(Event::PowerCutMidInstall),
    ]
}

/// The model device.
struct Device {
    scheme: &'static dyn BootScheme,
    env: Box<dyn EnvStore>,
    slots: [Content; 2],
    booted: SlotName,
    next_major: u32,
}

fn version(major: u32) -> String {
    format!("{major}.0.0")
}

fn manifest(major: u32) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        required_features: 0,
        version: version(major),
        compatible: COMPATIBLE.into(),
        security_version: 1,
        build_id: "props".into(),
        created_unix: 0,
        images: vec![ImageEntry {
            slot_class: "rootfs".into(),
            size: 4096,
            sha256: [0; 32],
            compression: Compression::None,
            chunk_size: 4096,
            chunks: vec![ChunkEntry {
                sha256: [0; 32],
                stored_len: 4096,
            }],
        }],
    }
}

impl Device {
    /// The factory state: v1 good on A, B not bootable and unverified.
    fn factory(scheme: &'static dyn BootScheme, grub: bool) -> Device {
        let mut env: Box<dyn EnvStore> = if grub {
            Box::new(GrubEnv::new(MemFiles::new()))
        } else {
            let layout = UbootLayout {
                offset: 0,
                size: 0x1000,
                redundant_offset: Some(0x1000),
            };
            Box::new(UbootEnv::new(MemBlock::new("env", 0x2000), layout).expect("layout"))
        };
        let v1 = InstalledImage {
            version: version(1),
            security_version: 1,
        };
        let pending = state::mark_pending(scheme, &EnvVars::new(), SlotName::A, &v1, ATTEMPTS);
        let good = state::confirm(scheme, &pending, SlotName::A, ATTEMPTS).unwrap_or(pending);
        env.commit(&state::begin_install(scheme, &good, SlotName::B))
            .expect("factory commit");
        Device {
            scheme,
            env,
            slots: [Content::Image(1), Content::Unverified],
            booted: SlotName::A,
            next_major: 2,
        }
    }

    fn load(&mut self) -> EnvVars {
        self.env.load().expect("env loads")
    }

    fn commit(&mut self, vars: &EnvVars) {
        self.env.commit(vars).expect("env commit");
    }

    /// The engine's planning step; `None` when it refuses.
    fn plan(&mut self, force: bool) -> Option<(SlotName, EnvVars, u32)> {
        let vars = self.load();
        let boot_state = BootState::read(self.scheme, &vars).expect("scheme reads env");
        let major = self.next_major;
        self.next_major += 1;
        let input = PlanInput {
            compatible: COMPATIBLE,
            booted: self.booted,
            requested_target: None,
            boot_state: &boot_state,
            security_floor: 0,
            allow_downgrade: false,
            force,
        };
        let size = |_: &str, _| Some(1 << 20);
        let plan = plan_install(&manifest(major), &input, &size, &["rootfs".to_string()]).ok()?;
        Some((plan.target, vars, major))
    }

    /// An install, stopped at `stop` (a power cut) or run to the end (`None`).
    fn install(
        &mut self,
        force: bool,
        corrupt: bool,
        stop: Option<CutStage>,
    ) -> Result<(), String> {
        let Some((target, vars, major)) = self.plan(force) else {
            return Ok(());
        };
        if matches!(stop, Some(CutStage::BeforeBegin)) {
            return self.reboot();
        }
        let vars = state::begin_install(self.scheme, &vars, target);
        self.commit(&vars);
        self.slots[target.index()] = Content::Unverified;
        if corrupt {
            return Ok(()); // a chunk hash mismatch: the engine stops here
        }
        if matches!(stop, Some(CutStage::MidWrite)) {
            return self.reboot();
        }
        self.slots[target.index()] = Content::Image(major);
        if matches!(stop, Some(CutStage::BeforePending)) {
            return self.reboot();
        }
        let image = InstalledImage {
            version: version(major),
            security_version: 1,
        };
        let pending = state::mark_pending(self.scheme, &vars, target, &image, ATTEMPTS);
        self.commit(&pending);
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
            let decision = self.scheme.boot(&mut vars, ATTEMPTS);
            self.commit(&vars);
            if let BootDecision::Boot(slot) = decision {
                self.booted = slot;
                return self.check_boot(slot, &vars);
            }
        }
        Err("BRICK: no bootable slot even after the counter reset".into())
    }

    fn check_boot(&self, slot: SlotName, vars: &EnvVars) -> Result<(), String> {
        let Content::Image(major) = self.slots[slot.index()] else {
            return Err(format!(
                "bootloader boots slot {slot}, which holds no verified image"
            ));
        };
        let recorded = vars.get_str(&format!("BASCULE_{slot}_VERSION"));
        if recorded != Some(version(major).as_str()) {
            return Err(format!(
                "slot {slot} holds v{major} but the env records {recorded:?}"
            ));
        }
        Ok(())
    }

    fn apply(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::InstallGood { force } => self.install(force, false, None),
            Event::InstallBad => self.install(false, true, None),
            Event::PowerCutMidInstall(stage) => self.install(false, false, Some(stage)),
            Event::Reboot => self.reboot(),
            Event::HealthFail => Ok(()),
            Event::HealthPass => {
                let vars = self.load();
                if let Some(next) = state::confirm(self.scheme, &vars, self.booted, ATTEMPTS) {
                    self.commit(&next);
                }
                Ok(())
            }
            Event::MarkBadOther => {
                let vars = self.load();
                if let Some(next) = state::mark_bad(self.scheme, &vars, self.booted.other()) {
                    self.commit(&next);
                }
                Ok(())
            }
        }
    }

    /// Boots a copy of the env with no confirmation until the counters have cycled.
    fn check_boot_chain(&mut self) -> Result<(), String> {
        let mut vars = self.load();
        let mut resets_in_a_row = 0;
        for n in 0..2 * usize::from(ATTEMPTS) + 3 {
            match self.scheme.boot(&mut vars, ATTEMPTS) {
                BootDecision::NoSlotResetCounters => {
                    resets_in_a_row += 1;
                    if resets_in_a_row > 1 {
                        return Err(format!(
                            "BRICK at boot {n}: no bootable slot after the counter reset"
                        ));
                    }
                }
                BootDecision::Boot(slot) => {
                    resets_in_a_row = 0;
                    self.check_boot(slot, &vars)
                        .map_err(|e| format!("boot {n}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

fn run(scheme: &'static dyn BootScheme, grub: bool, events: &[Event]) -> Result<(), TestCaseError> {
    let mut dev = Device::factory(scheme, grub);
    for (i, &event) in events.iter().enumerate() {
        let step = dev.apply(event).and_then(|()| dev.check_boot_chain());
        if let Err(why) = step {
            let env = dev.load();
            let msg = format!(
                "{}: event #{i} {event:?}: {why}; slots {:?}, env {env:?}",
                scheme.name(),
                dev.slots
            );
            return Err(TestCaseError::fail(msg));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn rauc_uboot_always_boots_a_verified_image(events in prop::collection::vec(event(), 0..30)) {
        run(&RaucUboot, false, &events)?;
    }

    #[test]
    fn rauc_grub_always_boots_a_verified_image(events in prop::collection::vec(event(), 0..30)) {
        run(&RaucGrub, true, &events)?;
    }
}

/// The model catches a slot that boots while unverified (guards the test itself).
#[test]
fn model_flags_a_bootable_unverified_slot() {
    let mut dev = Device::factory(&RaucUboot, false);
    let mut vars = dev.load();
    let image = InstalledImage {
        version: version(2),
        security_version: 1,
    };
    vars = state::mark_pending(&RaucUboot, &vars, SlotName::B, &image, ATTEMPTS);
    dev.commit(&vars);
    assert!(dev.check_boot_chain().is_err());
}

/// The model does real work: an update is installed, booted and confirmed, and an
/// unhealthy one rolls back, for both schemes.
#[test]
fn model_runs_an_update_and_a_rollback() {
    for (scheme, grub) in [
        (&RaucUboot as &'static dyn BootScheme, false),
        (&RaucGrub, true),
    ] {
        let mut dev = Device::factory(scheme, grub);
        for event in [
            Event::InstallGood { force: false },
            Event::Reboot,
            Event::HealthPass,
        ] {
            dev.apply(event).unwrap();
        }
        assert_eq!(
            (dev.booted, dev.slots[1]),
            (SlotName::B, Content::Image(2)),
            "{}",
            scheme.name()
        );
        dev.apply(Event::InstallGood { force: false }).unwrap();
        assert_eq!(dev.slots[0], Content::Image(3));
        let mut boots = Vec::new();
        for _ in 0..=ATTEMPTS {
            dev.apply(Event::Reboot).unwrap();
            boots.push(dev.booted);
            dev.check_boot_chain().unwrap();
        }
        assert_eq!(boots.first(), Some(&SlotName::A), "{}", scheme.name());
        assert_eq!(
            boots.last(),
            Some(&SlotName::B),
            "{}: falls back to B",
            scheme.name()
        );
    }
}

//! Planted unsafe installers: update steps with a known power-cut bug, which the
//! campaign must catch (tests/power_cut.rs checks that it reports them).
use bascule::device::FLOOR_FILE;
use bascule::health::history::Outcome;
use bascule::ops::confirm_and_raise_floor;
use bascule::slot::BootDecision;
use bascule::slot::{state, InstalledImage};
use bascule_hal::env::{EnvFiles, GrubCodec};
use bascule_hal::{BlockDevice, EnvStore, EnvVars, GrubEnv, HalError};
use bascule_hal::{FileFloor, SecurityFloorStore};
use bascule_partitions::SlotName;

use super::rail::RailFiles;
use super::{
    activate, boot, env_store, fixture, install, install_no_activate, record_probe, EnvBackend,
    PowerRail, ATTEMPTS, CHUNK, DATA, ENV, SLOT_A,
};

/// Scenario 1's first steps: v2 installed into B (while A runs), and B booted.
fn install_v2_and_boot_b(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    install(rail, backend, &fixture().releases[1], SlotName::A)?;
    if boot(rail, backend)? != BootDecision::Boot(SlotName::B) {
        return Err("bootloader did not boot B".into());
    }
    Ok(())
}

/// Scenario 1 (install v2 into B, boot, confirm) with a confirmation that raises the
/// floor before its env commit: a cut between the two leaves the floor at v2's
/// security version while v2 is still on trial.
pub fn confirm_raising_the_floor_first(
    rail: &PowerRail,
    backend: EnvBackend,
) -> Result<(), String> {
    install_v2_and_boot_b(rail, backend)?;
    let mut floor = FileFloor::new(rail.files(DATA), FLOOR_FILE);
    floor.raise(2).map_err(|e| e.to_string())?;
    let mut env = env_store(rail, backend)?;
    let vars = env.load().map_err(|e| e.to_string())?;
    if let Some(next) = state::confirm(backend.scheme(), &vars, SlotName::B, ATTEMPTS) {
        env.commit(&next).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Scenario 1 with the pass recorded in the health history before the confirmation:
/// a cut between the two leaves a record of a confirmation the env never made.
pub fn record_the_pass_before_confirming(
    rail: &PowerRail,
    backend: EnvBackend,
) -> Result<(), String> {
    install_v2_and_boot_b(rail, backend)?;
    record_probe(rail, SlotName::B, Outcome::Confirmed)?;
    let mut env = env_store(rail, backend)?;
    let mut floor = FileFloor::new(rail.files(DATA), FLOOR_FILE);
    confirm_and_raise_floor(
        &mut *env,
        &mut floor,
        backend.scheme(),
        SlotName::B,
        ATTEMPTS,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// An installer that writes the target before marking it unbootable: the campaign
/// must catch it (the stale "A is good" env boots a half-written A).
pub fn unsafe_update(rail: &PowerRail, backend: EnvBackend) -> Result<(), String> {
    let v3 = &fixture().releases[2];
    let mut slot = rail.device(SLOT_A);
    for (i, chunk) in v3.image.chunks(CHUNK as usize).enumerate() {
        slot.write_at((i * CHUNK as usize) as u64, chunk)
            .map_err(|e| e.to_string())?;
    }
    slot.sync().map_err(|e| e.to_string())?;
    let mut env = env_store(rail, backend)?;
    let vars = env.load().map_err(|e| e.to_string())?;
    let image = InstalledImage {
        version: v3.version.into(),
        security_version: 1,
    };
    // `state::mark_pending` needs the proof that `begin_install` ran; this planted bug
    // has none, so it makes the slot primary by hand, as a careless installer would.
    let mut next = vars;
    backend
        .scheme()
        .set_primary(&mut next, SlotName::A, ATTEMPTS);
    next.insert("BASCULE_PENDING", "A");
    next.insert("BASCULE_A_VERSION", image.version);
    env.commit(&next).map_err(|e| e.to_string())
}

/// A GRUB env store that renames `grubenv.new` over `grubenv` before fsyncing it.
struct RenameBeforeFsync(RailFiles);

impl EnvStore for RenameBeforeFsync {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        GrubEnv::new(self.0.clone()).load()
    }

    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        let block = GrubCodec::default()
            .encode(vars)
            .map_err(|e| e.into_hal("grubenv"))?;
        self.0.write("grubenv.new", &block)?;
        self.0.rename("grubenv.new", "grubenv")?;
        self.0.sync_file("grubenv")?;
        self.0.sync_dir()
    }

    fn describe(&self) -> String {
        "grubenv, renamed before fsync".into()
    }
}

/// Commits one change of a variable through [`RenameBeforeFsync`].
pub fn commit_renaming_before_fsync(rail: &PowerRail, _backend: EnvBackend) -> Result<(), String> {
    let mut env = RenameBeforeFsync(rail.files(ENV));
    let mut vars = env.load().map_err(|e| e.to_string())?;
    vars.insert("X", "1");
    env.commit(&vars).map_err(|e| e.to_string())
}

/// The data slot's directory with `fsync` of files and of the directory left out.
struct NoFsync(RailFiles);

impl EnvFiles for NoFsync {
    fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError> {
        self.0.read(name, max_len)
    }
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        self.0.write(name, bytes)
    }
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        self.0.append(name, bytes)
    }
    fn sync_file(&mut self, _name: &str) -> Result<(), HalError> {
        Ok(())
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError> {
        self.0.rename(from, to)
    }
    fn sync_dir(&mut self) -> Result<(), HalError> {
        Ok(())
    }
    fn path_of(&self, name: &str) -> String {
        self.0.path_of(name)
    }
}

/// Scenario 3 (install v2 into B `--no-activate`, activate, boot, confirm) with a
/// staged record written without fsync: a cut after the env names B staged leaves
/// no record for `activate`.
pub fn stage_without_syncing_the_record(
    rail: &PowerRail,
    backend: EnvBackend,
) -> Result<(), String> {
    let v2 = &fixture().releases[1];
    install_no_activate(rail, backend, v2, SlotName::A, NoFsync(rail.files(DATA)))?;
    activate(rail, backend, SlotName::A)?;
    if boot(rail, backend)? != BootDecision::Boot(SlotName::B) {
        return Err("bootloader did not boot B".into());
    }
    Ok(())
}

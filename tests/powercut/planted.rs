//! Planted unsafe installers: update steps with a known power-cut bug, which the
//! campaign must catch (tests/power_cut.rs checks that it reports them).
use bascule::slot::{state, InstalledImage};
use bascule_hal::env::{EnvFiles, GrubCodec};
use bascule_hal::{BlockDevice, EnvStore, EnvVars, GrubEnv, HalError};
use bascule_partitions::SlotName;

use super::rail::RailFiles;
use super::{env_store, fixture, EnvBackend, PowerRail, ATTEMPTS, CHUNK, ENV, SLOT_A};

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
    let next = state::mark_pending(backend.scheme(), &vars, SlotName::A, &image, ATTEMPTS);
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

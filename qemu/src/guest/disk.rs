//! Makes a fresh arm64 guest disk: the factory image with v1 in slot A, by
//! `bascule provision` from `qemu/layouts/arm64.toml` ([`super::factory`]). The
//! boot-scripts partition's content (the board script and the shipped `boot.cmd` as
//! `boot.scr`) is the layout's raw image `boot-scripts.bin`; the board's default env
//! (`u-boot-initial-env`) is kept in the first env, as on a real board.
use std::fs;
use std::path::Path;

use super::board::initial_env_text;
use super::factory::{provision_disk, Factory, FactoryError};

/// The layout's file name in `qemu/layouts/`.
pub const LAYOUT: &str = "arm64.toml";

/// What goes on the factory disk.
pub struct DiskInputs<'a> {
    /// The signed bundle of the factory release, for slot A.
    pub bundle: &'a Path,
    /// A directory holding the release key's `*.pub`.
    pub keyring: &'a Path,
    /// The `boot-scripts` partition's content (`super::board::scripts_partition`).
    pub scripts: &'a [u8],
    /// For temporary files.
    pub work: &'a Path,
}

/// Why the disk could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Factory(#[from] FactoryError),
}

/// Makes the factory disk at `out`.
pub fn build_disk(out: &Path, inputs: &DiskInputs) -> Result<(), DiskError> {
    let parts = inputs.work.join("parts");
    fs::create_dir_all(&parts).map_err(|source| DiskError::Io {
        what: format!("creating {}", parts.display()),
        source,
    })?;
    let scripts = parts.join("boot-scripts.bin");
    let defaults = parts.join("u-boot-initial-env");
    for (path, bytes) in [
        (&scripts, inputs.scripts),
        (&defaults, initial_env_text().as_bytes()),
    ] {
        fs::write(path, bytes).map_err(|source| DiskError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
    }
    provision_disk(
        out,
        &Factory {
            layout: LAYOUT,
            files: &[("boot-scripts.bin", &scripts)],
            bundle: inputs.bundle,
            keyring: inputs.keyring,
            defaults: Some(&defaults),
            work: inputs.work,
        },
    )?;
    Ok(())
}

//! The guests' error: one variant per kind of failure, wrapping the errors of the
//! parts (cache, cross build, rootfs, machine, factory disk, U-Boot board) and naming
//! the command, the file or the bundle for the rest.
use std::path::PathBuf;

use super::cache::CacheError;
use super::cross::CrossError;
use super::data_copy::DataCopyError;
use super::factory::FactoryError;
use super::machine::MachineError;
use super::rootfs::RootfsError;
use crate::tools::ToolError;
use crate::uboot::UbootError;

/// Why a guest could not be built, booted or read.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Cross(#[from] CrossError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Factory(#[from] FactoryError),
    #[error(transparent)]
    Uboot(#[from] UbootError),
    #[error(transparent)]
    DataSlot(#[from] DataCopyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("the shipped grub.cfg: {0}")]
    GrubCfg(String),
    #[error("the guest's init: {0}")]
    Init(String),
    #[error("bascule on the host, over {disk}: {message}")]
    Bascule { disk: PathBuf, message: String },
    #[error("making the bundle of {version}: {message}")]
    Bundle { version: String, message: String },
    #[error("this platform has no {0}")]
    Unsupported(String),
}

/// Maps an I/O error to [`GuestError::Io`] naming `what` was being done.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestError {
    let what = what.into();
    move |source| GuestError::Io { what, source }
}

/// Runs `cmd` to its end; its stdout, or [`GuestError::Failed`] with its stderr.
pub fn run(cmd: &mut std::process::Command) -> Result<Vec<u8>, GuestError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(io(format!(
        "running {command} (scripts/deps --test installs it)"
    )))?;
    if !out.status.success() {
        return Err(GuestError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

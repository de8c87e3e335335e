//! The x86_64 guest's error: one variant per kind of failure, wrapping the shared
//! parts' errors.
use std::path::PathBuf;

use crate::guest::cache::CacheError;
use crate::guest::cross::CrossError;
use crate::guest::machine::MachineError;
use crate::guest::rootfs::RootfsError;
use crate::tools::ToolError;

/// Why the x86_64 guest could not be built, booted or read.
#[derive(Debug, thiserror::Error)]
pub enum X86Error {
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
    Factory(#[from] crate::guest::factory::FactoryError),
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
    Cfg(String),
    #[error("{what} is {len} bytes, larger than its partition ({max} bytes)")]
    TooLarge { what: String, len: u64, max: u64 },
    #[error("bascule on the host, over {disk}: {message}")]
    Bascule { disk: PathBuf, message: String },
    #[error("making the bundle of {version}: {message}")]
    Bundle { version: String, message: String },
}

/// Maps an I/O error to [`X86Error::Io`] naming `what` was being done.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> X86Error {
    let what = what.into();
    move |source| X86Error::Io { what, source }
}

/// Runs `cmd` to its end; its stdout, or [`X86Error::Failed`] with its stderr.
pub fn run(cmd: &mut std::process::Command) -> Result<Vec<u8>, X86Error> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(io(format!(
        "running {command} (scripts/deps --test installs it)"
    )))?;
    if !out.status.success() {
        return Err(X86Error::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

//! The host's view of a guest disk image, read after QEMU stopped: U-Boot's own
//! `fw_printenv` over the env partition (a generated `fw_env.config`), and bascule's
//! `status` and `history` over the same image (slots and env as windows of the file;
//! the data slot's `bascule/` directory copied out with `debugfs rdump`).
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bascule::config::SystemConfig;
use bascule::device::Device;
use bascule::health::history::{History, Record};
use bascule::ops::{self, StatusReport};

use super::board::initial_env_text;
use super::config::{fw_env_config, host_system_toml};
use super::layout::DATA;
use crate::guest::data_copy::copy_state_dir;
use crate::tools::FW_PRINTENV;

/// Why the host could not read the image.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    #[error("{tool} failed on {disk}: {stderr}")]
    Failed {
        tool: &'static str,
        disk: PathBuf,
        stderr: String,
    },
    #[error("bascule on the host, over {disk}: {message}")]
    Bascule { disk: PathBuf, message: String },
    #[error(transparent)]
    DataSlot(#[from] crate::guest::data_copy::DataCopyError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HostError {
    let what = what.into();
    move |source| HostError::Io { what, source }
}

/// What the host reads from a guest disk.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    /// `fw_printenv`'s variables.
    pub fw_printenv: BTreeMap<String, String>,
    /// `bascule status` over the image (no booted slot).
    pub status: StatusReport,
    /// `bascule history` over the data slot's copy.
    pub history: Vec<Record>,
}

/// The host's files for one disk image.
pub struct HostView {
    disk: PathBuf,
    dir: PathBuf,
}

impl HostView {
    /// Writes the host's config, `fw_env.config`, default env and empty command
    /// line for `disk` into `work/host/`.
    pub fn new(disk: &Path, work: &Path) -> Result<HostView, HostError> {
        let dir = work.join("host");
        fs::create_dir_all(dir.join("bascule")).map_err(io("creating the host's state_dir"))?;
        let view = HostView {
            disk: disk.to_path_buf(),
            dir,
        };
        let files = [
            ("cmdline", String::new()),
            ("u-boot-initial-env", initial_env_text()),
            ("fw_env.config", fw_env_config(disk)),
            (
                "system.toml",
                host_system_toml(
                    disk,
                    &view.state_dir(),
                    &view.dir.join("cmdline"),
                    &view.dir.join("u-boot-initial-env"),
                ),
            ),
        ];
        for (name, text) in files {
            let path = view.dir.join(name);
            fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(view)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("bascule")
    }

    /// The `fw_env.config` over the image.
    pub fn fw_env_config(&self) -> PathBuf {
        self.dir.join("fw_env.config")
    }

    fn device(&self) -> Result<Device, HostError> {
        let err = |message: String| HostError::Bascule {
            disk: self.disk.clone(),
            message,
        };
        let config =
            SystemConfig::load(&self.dir.join("system.toml")).map_err(|e| err(e.to_string()))?;
        Device::open(config).map_err(|e| err(e.to_string()))
    }

    /// Reads the image: `fw_printenv`, `bascule status`, `bascule history`.
    pub fn snapshot(&self) -> Result<HostSnapshot, HostError> {
        let fw_printenv = self.fw_printenv()?;
        self.copy_state_dir()?;
        let mut dev = self.device()?;
        let status = ops::status(&mut dev).map_err(|e| HostError::Bascule {
            disk: self.disk.clone(),
            message: e.to_string(),
        })?;
        let history = History::new(&self.state_dir())
            .read()
            .map_err(|e| HostError::Bascule {
                disk: self.disk.clone(),
                message: e.to_string(),
            })?
            .records;
        Ok(HostSnapshot {
            fw_printenv,
            status,
            history,
        })
    }

    fn fw_printenv(&self) -> Result<BTreeMap<String, String>, HostError> {
        let out = Command::new(FW_PRINTENV.find()?)
            .arg("-c")
            .arg(self.fw_env_config())
            .output()
            .map_err(io("running fw_printenv"))?;
        if !out.status.success() {
            return Err(HostError::Failed {
                tool: "fw_printenv",
                disk: self.disk.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Replaces the host's `state_dir` with the data slot's `bascule/` directory,
    /// its journal replayed first ([`crate::guest::data_copy`]).
    fn copy_state_dir(&self) -> Result<(), HostError> {
        copy_state_dir(&self.disk, DATA.start, DATA.size, &self.dir)?;
        Ok(())
    }
}

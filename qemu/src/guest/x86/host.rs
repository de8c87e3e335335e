//! The host's view of an x86_64 guest disk image, read after QEMU stopped: the ESP's
//! `grubenv` and `grubenv.good` copied out with mtools (`mcopy -i disk@@offset`),
//! `grub-editenv list` over the copy, and bascule's `status` and `history` over the
//! image (slots as windows of the file, the env the copied grubenv, the data slot's
//! `bascule/` directory read by [`crate::guest::data_copy`]).
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bascule::config::SystemConfig;
use bascule::device::Device;
use bascule::health::history::{History, Record};
use bascule::ops::{self, StatusReport};

use super::config::host_system_toml;
use super::error::{io, run, X86Error};
use super::layout::{DATA, ESP, ESP_DIR};
use crate::guest::data_copy::copy_state_dir;

/// What the host reads from a guest disk.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    /// `grub-editenv grubenv list`.
    pub grubenv: BTreeMap<String, String>,
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
    /// Writes the host's config and an empty command line for `disk` into `work/host/`.
    pub fn new(disk: &Path, work: &Path) -> Result<HostView, X86Error> {
        let dir = work.join("host");
        for sub in ["bascule", "esp"] {
            fs::create_dir_all(dir.join(sub)).map_err(io("creating the host's directories"))?;
        }
        let view = HostView {
            disk: disk.to_path_buf(),
            dir,
        };
        let toml = host_system_toml(
            disk,
            &view.env_files().0,
            &view.state_dir(),
            &view.dir.join("cmdline"),
        );
        for (name, text) in [("cmdline", String::new()), ("system.toml", toml)] {
            let path = view.dir.join(name);
            fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(view)
    }

    /// The host's copies of `grubenv` and `grubenv.good`.
    pub fn env_files(&self) -> (PathBuf, PathBuf) {
        let esp = self.dir.join("esp");
        (esp.join("grubenv"), esp.join("grubenv.good"))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("bascule")
    }

    fn err(&self, message: String) -> X86Error {
        X86Error::Bascule {
            disk: self.disk.clone(),
            message,
        }
    }

    fn device(&self) -> Result<Device, X86Error> {
        let config = SystemConfig::load(&self.dir.join("system.toml"))
            .map_err(|e| self.err(e.to_string()))?;
        Device::open(config).map_err(|e| self.err(e.to_string()))
    }

    /// Reads the image: the env files, `grub-editenv list`, `bascule status`, history.
    pub fn snapshot(&self) -> Result<HostSnapshot, X86Error> {
        self.copy_env_out()?;
        let grubenv = self.grub_editenv_list()?;
        self.copy_state_dir()?;
        let mut dev = self.device()?;
        let status = ops::status(&mut dev).map_err(|e| self.err(e.to_string()))?;
        let history = History::new(&self.state_dir())
            .read()
            .map_err(|e| self.err(e.to_string()))?
            .records;
        Ok(HostSnapshot {
            grubenv,
            status,
            history,
        })
    }

    /// Copies `grubenv` and `grubenv.good` out of the image's ESP.
    fn copy_env_out(&self) -> Result<(), X86Error> {
        let (env, good) = self.env_files();
        for (file, name) in [(&env, "grubenv"), (&good, "grubenv.good")] {
            let _ = fs::remove_file(file);
            run(Command::new("mcopy")
                .arg("-i")
                .arg(format!("{}@@{}", self.disk.display(), ESP.start))
                .arg(format!("::/{ESP_DIR}/{name}"))
                .arg(file))?;
        }
        Ok(())
    }

    fn grub_editenv_list(&self) -> Result<BTreeMap<String, String>, X86Error> {
        let out = run(Command::new("grub-editenv")
            .arg(self.env_files().0)
            .arg("list"))?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Replaces the host's `state_dir` with the data slot's `bascule/` directory,
    /// its journal replayed first ([`crate::guest::data_copy`]).
    fn copy_state_dir(&self) -> Result<(), X86Error> {
        copy_state_dir(&self.disk, DATA.start, DATA.size, &self.dir)
            .map_err(|e| self.err(e.to_string()))?;
        Ok(())
    }
}

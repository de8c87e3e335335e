//! The host's view of a guest disk image, read after QEMU stopped: the bootloader's
//! env as its own tools read it, and bascule's `status` and `history` over the same
//! image (the slots as windows of the file, the data slot's `bascule/` directory read
//! by [`crate::guest::data_copy`]).
//!
//! The env: on arm64 U-Boot's `fw_printenv` over the env partition (a generated
//! `fw_env.config`), bascule reading the same window of the file; on x86_64 the ESP's
//! `grubenv` and `grubenv.good` copied out with mtools (`mcopy -i disk@@offset`) and
//! `grub-editenv list` over the copy, which bascule reads too.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bascule::config::SystemConfig;
use bascule::device::Device;
use bascule::health::history::{History, Record};
use bascule::ops::{self, StatusReport};

use super::board::initial_env_text;
use super::config::{fw_env_config, host_grub_env, host_system_toml, host_uboot_env};
use super::data_copy::copy_state_dir;
use super::error::{io, run, GuestError};
use super::platform::Platform;
use super::x86::layout::{ESP, ESP_DIR};
use crate::tools::FW_PRINTENV;

/// What the host reads from a guest disk.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    /// The bootloader's env as its tool lists it ([`Platform::env_tool`]).
    pub env: BTreeMap<String, String>,
    /// `bascule status` over the image (no booted slot).
    pub status: StatusReport,
    /// `bascule history` over the data slot's copy.
    pub history: Vec<Record>,
}

/// The host's files for one disk image.
pub struct HostView {
    platform: Platform,
    disk: PathBuf,
    dir: PathBuf,
}

impl HostView {
    /// Writes the host's config, an empty command line and the platform's env files
    /// (`fw_env.config` and the default env; the directory of the grubenv copies) for
    /// `disk` into `work/host/`.
    pub fn new(platform: Platform, disk: &Path, work: &Path) -> Result<HostView, GuestError> {
        let dir = work.join("host");
        let subs: &[&str] = match platform {
            Platform::Arm64 => &["bascule"],
            Platform::X86_64 => &["bascule", "esp"],
        };
        for sub in subs {
            fs::create_dir_all(dir.join(sub)).map_err(io("creating the host's directories"))?;
        }
        let view = HostView {
            platform,
            disk: disk.to_path_buf(),
            dir,
        };
        let mut files = vec![("cmdline", String::new())];
        let bootenv = match platform {
            Platform::Arm64 => {
                files.push(("u-boot-initial-env", initial_env_text()));
                files.push(("fw_env.config", fw_env_config(disk)));
                host_uboot_env(disk, &view.dir.join("u-boot-initial-env"))
            }
            Platform::X86_64 => host_grub_env(&view.grub_env_files()[0].0),
        };
        let (state, cmdline) = (view.state_dir(), view.dir.join("cmdline"));
        let toml = host_system_toml(platform, disk, &state, &cmdline, &bootenv);
        files.push(("system.toml", toml));
        for (name, text) in files {
            let path = view.dir.join(name);
            fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(view)
    }

    /// The host's copies of `grubenv` and `grubenv.good`, with their names on the ESP.
    fn grub_env_files(&self) -> [(PathBuf, &'static str); 2] {
        let esp = self.dir.join("esp");
        ["grubenv", "grubenv.good"].map(|name| (esp.join(name), name))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("bascule")
    }

    fn err(&self, message: String) -> GuestError {
        GuestError::Bascule {
            disk: self.disk.clone(),
            message,
        }
    }

    fn device(&self) -> Result<Device, GuestError> {
        let config = SystemConfig::load(&self.dir.join("system.toml"))
            .map_err(|e| self.err(e.to_string()))?;
        Device::open(config).map_err(|e| self.err(e.to_string()))
    }

    /// Reads the image: the env, `bascule status`, `bascule history`.
    pub fn snapshot(&self) -> Result<HostSnapshot, GuestError> {
        let env = self.read_env()?;
        let data = self.platform.data();
        copy_state_dir(&self.disk, data.start, data.size, &self.dir)?;
        let mut dev = self.device()?;
        let status = ops::status(&mut dev).map_err(|e| self.err(e.to_string()))?;
        let history = History::new(&self.state_dir())
            .read()
            .map_err(|e| self.err(e.to_string()))?
            .records;
        Ok(HostSnapshot {
            env,
            status,
            history,
        })
    }

    /// The env as the bootloader's tool lists it (see the module docs).
    fn read_env(&self) -> Result<BTreeMap<String, String>, GuestError> {
        let out = match self.platform {
            Platform::Arm64 => run(Command::new(FW_PRINTENV.find()?)
                .arg("-c")
                .arg(self.dir.join("fw_env.config")))?,
            Platform::X86_64 => {
                self.copy_grub_env_out()?;
                let [(grubenv, _), _] = self.grub_env_files();
                run(Command::new("grub-editenv").arg(grubenv).arg("list"))?
            }
        };
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// Copies `grubenv` and `grubenv.good` out of the image's ESP.
    fn copy_grub_env_out(&self) -> Result<(), GuestError> {
        for (file, name) in self.grub_env_files() {
            let _ = fs::remove_file(&file);
            run(Command::new("mcopy")
                .arg("-i")
                .arg(format!("{}@@{}", self.disk.display(), ESP.start))
                .arg(format!("::/{ESP_DIR}/{name}"))
                .arg(&file))?;
        }
        Ok(())
    }
}

//! The device configuration, `system.toml`: what the device is (compatible), whom it
//! trusts (keyring), where its boot state lives (bootenv), how it learns which slot
//! runs (kernel command line) and where its slots are.
//!
//! Relative paths are resolved against the directory of the config file. Unknown keys
//! are errors, so a typo never silently falls back to a default.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bascule_partitions::{AbPair, Layout, LayoutError, SlotSpec};
use serde::Deserialize;

/// Where the config is read from when no `--config` or `BASCULE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bascule/system.toml";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `system.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    compatible: String,
    keyring: PathBuf,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    boot: BootConfig,
    bootenv: BootEnvConfig,
    slots: BTreeMap<String, AbPair>,
    #[serde(default)]
    data: Option<SlotSpec>,
}

fn default_bascule_env() -> String {
    "bascule-env".into()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/bascule")
}

/// How the booted slot is found and how many tries a new slot gets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// File holding the kernel command line.
    pub cmdline: PathBuf,
    /// Command-line keys naming the booted slot.
    pub cmdline_keys: Vec<String>,
    /// Boot attempts a newly installed slot gets before the bootloader falls back.
    pub attempts: u8,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            cmdline: PathBuf::from("/proc/cmdline"),
            cmdline_keys: vec!["bascule.slot".into(), "rauc.slot".into()],
            attempts: 3,
        }
    }
}

/// Where the bootloader environment lives and which scheme its script uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum BootEnvConfig {
    /// U-Boot environment (RAUC's `BOOT_ORDER` / `BOOT_x_LEFT` scheme).
    Uboot {
        path: PathBuf,
        #[serde(default)]
        offset: u64,
        size: u64,
        /// Offset of the second copy for a redundant environment.
        #[serde(default)]
        redundant_offset: Option<u64>,
        /// Accept a single-copy environment, which a power cut during a write can
        /// corrupt (only for boards whose U-Boot has no redundant environment).
        #[serde(default)]
        allow_single_copy: bool,
        /// The board's default environment (`u-boot-initial-env`, `name=value`
        /// lines): what `init-env` writes besides bascule's variables when the
        /// stored env is blank (or corrupt, with `--force`).
        #[serde(default)]
        defaults: Option<PathBuf>,
    },
    /// GRUB environment block file (RAUC's `ORDER` / `x_OK` / `x_TRY` scheme).
    Grub { path: PathBuf },
    /// ChromeOS-style priority/tries/successful bits in the GPT partition entries of
    /// `disk`; bascule's own variables in the `bascule_env` partition.
    Gpt {
        disk: PathBuf,
        /// GPT partition names of slots A and B.
        slot_a: String,
        slot_b: String,
        #[serde(default = "default_bascule_env")]
        bascule_env: String,
    },
    /// bascule's native two-copy environment (RAUC U-Boot variable names).
    Native {
        path: PathBuf,
        #[serde(default)]
        offset: u64,
        size: u64,
        second_offset: u64,
    },
}

impl BootEnvConfig {
    fn resolve(&mut self, base: &Path) {
        if let BootEnvConfig::Uboot {
            defaults: Some(defaults),
            ..
        } = self
        {
            *defaults = base.join(&*defaults);
        }
        match self {
            BootEnvConfig::Uboot { path, .. }
            | BootEnvConfig::Grub { path }
            | BootEnvConfig::Native { path, .. }
            | BootEnvConfig::Gpt { disk: path, .. } => *path = base.join(&*path),
        }
    }
}

/// A loaded, resolved, checked configuration.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    /// Where it was read from.
    pub path: PathBuf,
    pub compatible: String,
    pub keyring: PathBuf,
    pub state_dir: PathBuf,
    pub boot: BootConfig,
    pub bootenv: BootEnvConfig,
    pub layout: Layout,
}

impl SystemConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<SystemConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<SystemConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let layout = Layout {
            slots: raw.slots,
            data: raw.data,
        }
        .resolve(base)
        .map_err(|source| ConfigError::Layout {
            path: path.to_path_buf(),
            source,
        })?;
        let mut bootenv = raw.bootenv;
        bootenv.resolve(base);
        let mut boot = raw.boot;
        boot.cmdline = base.join(&boot.cmdline);
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        };
        if raw.compatible.trim().is_empty() {
            return Err(invalid("compatible must not be empty"));
        }
        if boot.attempts == 0 || boot.attempts > 9 {
            return Err(invalid(
                "boot.attempts must be 1 to 9 (one decimal digit, as boot scripts expect)",
            ));
        }
        if let BootEnvConfig::Uboot {
            redundant_offset: None,
            allow_single_copy: false,
            ..
        } = bootenv
        {
            return Err(invalid(
                "a single-copy U-Boot environment can be corrupted by a power cut during a write: \
                 set bootenv.redundant_offset (U-Boot's CONFIG_ENV_OFFSET_REDUND), or, if the board's \
                 U-Boot has only one copy, bootenv.allow_single_copy = true",
            ));
        }
        if boot.cmdline_keys.is_empty() {
            return Err(invalid("boot.cmdline_keys must name at least one key"));
        }
        Ok(SystemConfig {
            path: path.to_path_buf(),
            compatible: raw.compatible,
            keyring: base.join(raw.keyring),
            state_dir: base.join(raw.state_dir),
            boot,
            bootenv,
            layout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        compatible = "acme-gw"
        keyring = "keys"
        state_dir = "state"
        [boot]
        cmdline = "cmdline"
        [bootenv]
        backend = "uboot"
        path = "uboot.env"
        size = 16384
        redundant_offset = 16384
        [slots.rootfs.A]
        device = "disk.img"
        size = 4096
        [slots.rootfs.B]
        device = "disk.img"
        offset = 4096
        size = 4096
    "#;

    #[test]
    fn sample_resolves_paths_against_its_directory() {
        let cfg = SystemConfig::parse(SAMPLE, Path::new("/dev-root/system.toml")).unwrap();
        assert_eq!(cfg.keyring, Path::new("/dev-root/keys"));
        assert_eq!(cfg.boot.cmdline, Path::new("/dev-root/cmdline"));
        assert_eq!(cfg.boot.attempts, 3);
        assert!(matches!(
            cfg.bootenv,
            BootEnvConfig::Uboot {
                redundant_offset: Some(16384),
                ..
            }
        ));
        let BootEnvConfig::Uboot { path, defaults, .. } = &cfg.bootenv else {
            unreachable!()
        };
        assert_eq!(path, Path::new("/dev-root/uboot.env"));
        assert_eq!(defaults, &None);
        let text = SAMPLE.replace(
            "size = 16384",
            "size = 16384\ndefaults = \"u-boot-initial-env\"",
        );
        let cfg = SystemConfig::parse(&text, Path::new("/dev-root/system.toml")).unwrap();
        let BootEnvConfig::Uboot { defaults, .. } = &cfg.bootenv else {
            unreachable!()
        };
        assert_eq!(
            defaults.as_deref(),
            Some(Path::new("/dev-root/u-boot-initial-env"))
        );
    }

    #[test]
    fn absolute_paths_stay_absolute() {
        let text = SAMPLE.replace("cmdline = \"cmdline\"", "cmdline = \"/proc/cmdline\"");
        let cfg = SystemConfig::parse(&text, Path::new("/x/system.toml")).unwrap();
        assert_eq!(cfg.boot.cmdline, Path::new("/proc/cmdline"));
    }

    #[test]
    fn typo_is_an_error_naming_the_key() {
        let text = SAMPLE.replace("state_dir", "statedir");
        let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("statedir"), "{err}");
    }

    #[test]
    fn unknown_backend_is_an_error() {
        let text = SAMPLE.replace("backend = \"uboot\"", "backend = \"barebox\"");
        let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("barebox"), "{err}");
    }

    #[test]
    fn single_copy_uboot_env_needs_an_explicit_opt_in() {
        let single = SAMPLE.replace("redundant_offset = 16384", "");
        let err = SystemConfig::parse(&single, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("allow_single_copy"), "{err}");
        let allowed = single.replace("size = 16384", "size = 16384\nallow_single_copy = true");
        assert!(SystemConfig::parse(&allowed, Path::new("s.toml")).is_ok());
    }

    #[test]
    fn attempts_out_of_range_is_an_error() {
        let text = SAMPLE.replace("cmdline = \"cmdline\"", "cmdline = \"c\"\nattempts = 12");
        let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("attempts"), "{err}");
    }
}

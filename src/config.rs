//! The device configuration, `system.toml`: what the device is (compatible), whom it
//! trusts (keyring), where its boot state lives (bootenv), how it learns which slot
//! runs (kernel command line), where its slots are, and where the state both slots
//! share lives (the data slot, `[data]`, holding `state_dir`), and the health probe
//! (`[health]`, see [`crate::health::config`]), and the hooks (`[hooks]`, see
//! [`crate::hooks`]).
//!
//! Relative paths are resolved against the directory of the config file. Unknown keys
//! are errors, so a typo never silently falls back to a default.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bascule_partitions::{AbPair, Layout, LayoutError, SlotSpec};
use serde::Deserialize;

use crate::health::config::{HealthConfig, RawHealth};
use crate::hooks::{HooksConfig, RawHooks};
use crate::source::HttpConfig;

/// Where the config is read from when no `--config` or `BASCULE_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bascule/system.toml";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// Not TOML, or not the keys and types `system.toml` has. The first line names the
    /// problem and where it is; the offending line follows.
    #[error("config {path}: {problem}{place}")]
    Parse {
        path: PathBuf,
        problem: String,
        place: TextPlace,
    },
    #[error("config {path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Where in the config text a parse error is: line, column and the line itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPlace(Option<(usize, usize, String)>);

impl TextPlace {
    /// The place of byte `span.start` in `text` (nothing if the parser gave no span).
    fn of(text: &str, span: Option<std::ops::Range<usize>>) -> TextPlace {
        TextPlace(span.map(|span| {
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_no = text[..start].matches('\n').count() + 1;
            let column = text[line_start..start].chars().count() + 1;
            let line = text[line_start..].lines().next().unwrap_or("").to_string();
            (line_no, column, line)
        }))
    }
}

impl std::fmt::Display for TextPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((line_no, column, line)) = &self.0 else {
            return Ok(());
        };
        let caret = " ".repeat(column - 1);
        write!(
            f,
            " at line {line_no}, column {column}\n    {line}\n    {caret}^"
        )
    }
}

/// The TOML parser's message in the config's own words, on one line.
fn toml_problem(message: &str) -> String {
    message
        .trim()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace('\n', "; ")
}

/// `system.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    compatible: String,
    keyring: PathBuf,
    #[serde(default)]
    state_dir: Option<PathBuf>,
    #[serde(default)]
    boot: BootConfig,
    #[serde(default)]
    http: HttpConfig,
    bootenv: BootEnvConfig,
    slots: BTreeMap<String, AbPair>,
    #[serde(default)]
    data: Option<DataSlot>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    hooks: RawHooks,
}

/// The data slot: a filesystem kept across updates, mounted before bascule runs at
/// boot (by fstab or a systemd mount unit), that both root slots see. bascule keeps
/// its state there (`state_dir`: the security floor, locks), so what one slot
/// records the other reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataSlot {
    /// The block device (partition) holding the data filesystem.
    pub device: PathBuf,
    /// Where that filesystem is mounted.
    pub mount: PathBuf,
}

/// `state_dir` when `[data]` is set: this directory under the data slot's mount point.
pub const DATA_STATE_SUBDIR: &str = "bascule";

fn default_bascule_env() -> String {
    "bascule-env".into()
}

/// `state_dir` when neither it nor `[data]` is set. On a device whose root slots
/// are block devices this lies on the booted root and is refused when the device is
/// opened (see [`crate::state_dir`]); it serves file-backed test devices.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/bascule";

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
    /// Where bascule keeps the state both slots share (security floor, locks).
    pub state_dir: PathBuf,
    /// The data slot, when the config names one.
    pub data: Option<DataSlot>,
    pub boot: BootConfig,
    /// Timeouts of HTTP(S) bundle sources.
    pub http: HttpConfig,
    pub bootenv: BootEnvConfig,
    pub layout: Layout,
    /// The health probe (`[health]`; no stages when absent).
    pub health: HealthConfig,
    /// The commands run around an install and a confirmation (`[hooks]`).
    pub hooks: HooksConfig,
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
            problem: toml_problem(e.message()),
            place: TextPlace::of(text, e.span()),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let data = raw.data.map(|d| DataSlot {
            device: base.join(d.device),
            mount: base.join(d.mount),
        });
        let layout = Layout {
            slots: raw.slots,
            data: data.as_ref().map(|d| SlotSpec {
                device: d.device.clone(),
                offset: 0,
                size: None,
            }),
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
        let state_dir = state_dir(raw.state_dir.map(|d| base.join(d)), data.as_ref())
            .map_err(|message| invalid(&message))?;
        if raw.http.connect_timeout_secs == 0 || raw.http.read_timeout_secs == 0 {
            return Err(invalid(
                "http.connect_timeout_secs and http.read_timeout_secs must be at least 1 (seconds)",
            ));
        }
        let health = raw.health.check().map_err(|message| invalid(&message))?;
        let hooks = raw.hooks.check().map_err(|message| invalid(&message))?;
        Ok(SystemConfig {
            path: path.to_path_buf(),
            compatible: raw.compatible,
            keyring: base.join(raw.keyring),
            state_dir,
            data,
            boot,
            http: raw.http,
            bootenv,
            layout,
            health,
            hooks,
        })
    }
}

/// `state_dir` as written, or its default: under the data slot's mount point when
/// there is one. With a data slot, a `state_dir` outside its mount point is refused.
fn state_dir(written: Option<PathBuf>, data: Option<&DataSlot>) -> Result<PathBuf, String> {
    let Some(data) = data else {
        return Ok(written.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)));
    };
    let Some(dir) = written else {
        return Ok(data.mount.join(DATA_STATE_SUBDIR));
    };
    if !dir.starts_with(&data.mount) || dir.components().any(|c| c.as_os_str() == "..") {
        return Err(format!(
            "state_dir {} is not under the data slot's mount point {} ([data] mount): the \
             state both slots share must live on the data slot",
            dir.display(),
            data.mount.display()
        ));
    }
    Ok(dir)
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
    fn parse_error_names_the_problem_and_its_line_first() {
        let text = format!("{SAMPLE}\n[http]\ncolour = \"red\"\n");
        let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
        let message = err.to_string();
        let first = message.lines().next().unwrap();
        let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
        assert!(
            first.starts_with("config s.toml: unknown key `colour`")
                && first.ends_with(&format!("at line {line}, column 1")),
            "{message}"
        );
        assert_eq!(message.lines().nth(1), Some("    colour = \"red\""));
    }

    #[test]
    fn http_timeouts_default_and_can_be_set() {
        let cfg = SystemConfig::parse(SAMPLE, Path::new("s.toml")).unwrap();
        assert_eq!(cfg.http, HttpConfig::default());
        let text = format!("{SAMPLE}\n[http]\nconnect_timeout_secs = 5\nread_timeout_secs = 7\n");
        let cfg = SystemConfig::parse(&text, Path::new("s.toml")).unwrap();
        assert_eq!(
            (cfg.http.connect_timeout_secs, cfg.http.read_timeout_secs),
            (5, 7)
        );
        let zero = format!("{SAMPLE}\n[http]\nread_timeout_secs = 0\n");
        let err = SystemConfig::parse(&zero, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("read_timeout_secs"), "{err}");
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
    fn state_dir_defaults_under_the_data_mount() {
        let text = SAMPLE.replace("state_dir = \"state\"\n", "")
            + "[data]\ndevice = \"/dev/mmcblk0p4\"\nmount = \"/data\"\n";
        let cfg = SystemConfig::parse(&text, Path::new("/x/system.toml")).unwrap();
        assert_eq!(cfg.state_dir, Path::new("/data/bascule"));
        let data = cfg.data.expect("data slot");
        assert_eq!(
            (data.device.as_path(), data.mount.as_path()),
            (Path::new("/dev/mmcblk0p4"), Path::new("/data"))
        );
        let without = SAMPLE.replace("state_dir = \"state\"\n", "");
        let cfg = SystemConfig::parse(&without, Path::new("/x/system.toml")).unwrap();
        assert_eq!(cfg.state_dir, Path::new(DEFAULT_STATE_DIR));
    }

    #[test]
    fn state_dir_outside_the_data_mount_is_refused() {
        let data = "[data]\ndevice = \"/dev/mmcblk0p4\"\nmount = \"/data\"\n";
        for dir in ["/var/lib/bascule", "/data/../var/lib/bascule", "/database"] {
            let text = SAMPLE.replace("\"state\"", &format!("{dir:?}")) + data;
            let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
            assert!(
                err.to_string().contains("not under the data slot"),
                "{dir}: {err}"
            );
        }
        let inside = SAMPLE.replace("\"state\"", "\"/data/x/bascule\"") + data;
        let cfg = SystemConfig::parse(&inside, Path::new("s.toml")).unwrap();
        assert_eq!(cfg.state_dir, Path::new("/data/x/bascule"));
    }

    #[test]
    fn data_slot_needs_a_mount_point_and_may_not_overlap_a_root_slot() {
        let no_mount = format!("{SAMPLE}[data]\ndevice = \"/dev/mmcblk0p4\"\n");
        let err = SystemConfig::parse(&no_mount, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("mount"), "{err}");
        let overlap = format!("{SAMPLE}[data]\ndevice = \"disk.img\"\nmount = \"/data\"\n");
        let err = SystemConfig::parse(&overlap, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn attempts_out_of_range_is_an_error() {
        let text = SAMPLE.replace("cmdline = \"cmdline\"", "cmdline = \"c\"\nattempts = 12");
        let err = SystemConfig::parse(&text, Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("attempts"), "{err}");
    }
}

//! Hooks: the operator's commands that bascule runs at three points, configured in
//! `[hooks]` of `system.toml`.
//!
//! - `pre_install` runs after the bundle is checked and the install planned, before
//!   anything is written (the target is not yet marked unbootable): when it fails the
//!   install stops and nothing changed;
//! - `post_install` runs after every image is written, verified and synced, before the
//!   target is marked pending: when it fails the target stays unbootable;
//! - `post_commit` runs after a confirmation committed a release (the booted slot went
//!   from pending to good, by `mark-good` or `health`): when it fails the
//!   confirmation stands and the failure is recorded in the health history.
//!
//! Each runs through [`crate::command`] (own process group, killed at `timeout_secs`),
//! with the environment of [`HookEnv`]; its output is logged line by line. Not run
//! by `install --dry-run`.
use std::time::Duration;

use bascule_partitions::{Layout, SlotName, SlotSpec};
use serde::Deserialize;

use crate::command;

/// `timeout_secs` when not set.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// `[hooks]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    #[serde(default)]
    pre_install: Option<Vec<String>>,
    #[serde(default)]
    post_install: Option<Vec<String>>,
    #[serde(default)]
    post_commit: Option<Vec<String>>,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

impl RawHooks {
    /// Checks the hooks: each names a command; the timeout is at least a second.
    pub fn check(self) -> Result<HooksConfig, String> {
        for (hook, argv) in [
            (Hook::PreInstall, &self.pre_install),
            (Hook::PostInstall, &self.post_install),
            (Hook::PostCommit, &self.post_commit),
        ] {
            if argv
                .as_ref()
                .is_some_and(|a| a.is_empty() || a[0].is_empty())
            {
                return Err(format!(
                    "{} must name a command (a list: program, then its arguments)",
                    hook.key()
                ));
            }
        }
        let secs = self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if secs == 0 {
            return Err("hooks.timeout_secs must be at least 1 (seconds)".into());
        }
        Ok(HooksConfig {
            pre_install: self.pre_install,
            post_install: self.post_install,
            post_commit: self.post_commit,
            timeout: Duration::from_secs(secs),
        })
    }
}

/// The checked `[hooks]`: the command of each hook, if any, and their timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    pub pre_install: Option<Vec<String>>,
    pub post_install: Option<Vec<String>>,
    pub post_commit: Option<Vec<String>>,
    pub timeout: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            pre_install: None,
            post_install: None,
            post_commit: None,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

/// The three points a hook runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreInstall,
    PostInstall,
    PostCommit,
}

impl Hook {
    /// Its key in `system.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Hook::PreInstall => "hooks.pre_install",
            Hook::PostInstall => "hooks.post_install",
            Hook::PostCommit => "hooks.post_commit",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::PreInstall => "pre-install",
            Hook::PostInstall => "post-install",
            Hook::PostCommit => "post-commit",
        })
    }
}

/// A hook that exited non-zero, timed out or could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {hook} hook ({key}) failed: {reason}", key = hook.key())]
pub struct HookFailed {
    pub hook: Hook,
    /// The exit status, the timeout, or why it could not run.
    pub reason: String,
    /// What it printed.
    pub output: String,
}

/// What a hook is told, as `BASCULE_*` environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnv {
    /// The slot being installed, or the slot confirmed (post-commit).
    pub target: SlotName,
    pub booted: SlotName,
    /// The version installed or confirmed, if known.
    pub version: Option<String>,
    /// The slot classes of the bundle's images, in bundle order (empty for
    /// `post-commit`, which is given the layout's first class). The first one's
    /// device is `BASCULE_TARGET_DEVICE`; each one's is `BASCULE_TARGET_DEVICE_<CLASS>`.
    pub classes: Vec<String>,
}

impl HookEnv {
    /// The variables, with the target's device (and its window) from `layout`.
    pub fn vars(&self, hook: Hook, layout: &Layout) -> Vec<(String, String)> {
        let mut vars = vec![
            ("BASCULE_HOOK", hook.to_string()),
            ("BASCULE_TARGET_SLOT", self.target.to_string()),
            ("BASCULE_BOOTED_SLOT", self.booted.to_string()),
        ];
        if let Some(version) = &self.version {
            vars.push(("BASCULE_VERSION", version.clone()));
        }
        let mut vars: Vec<(String, String)> =
            vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let classes: Vec<&String> = match self.classes.is_empty() {
            true => layout.slots.keys().take(1).collect(),
            false => self.classes.iter().collect(),
        };
        let known: Vec<(&String, &SlotSpec)> = classes
            .into_iter()
            .filter_map(|c| layout.slots.get(c).map(|pair| (c, pair.get(self.target))))
            .collect();
        if let Some((class, spec)) = known.first() {
            vars.push(("BASCULE_TARGET_CLASS".into(), class.to_string()));
            vars.extend(device_vars(spec, ""));
        }
        if !self.classes.is_empty() {
            let names: Vec<&str> = known.iter().map(|(c, _)| c.as_str()).collect();
            vars.push(("BASCULE_TARGET_CLASSES".into(), names.join(" ")));
            for (class, spec) in &known {
                vars.extend(device_vars(spec, &format!("_{}", env_suffix(class))));
            }
        }
        vars
    }
}

/// `BASCULE_TARGET_DEVICE{suffix}`, and its window when the slot is one.
fn device_vars(spec: &SlotSpec, suffix: &str) -> Vec<(String, String)> {
    let mut vars = vec![(
        format!("BASCULE_TARGET_DEVICE{suffix}"),
        spec.device.display().to_string(),
    )];
    if let Some(size) = spec.size {
        vars.push((
            format!("BASCULE_TARGET_OFFSET{suffix}"),
            spec.offset.to_string(),
        ));
        vars.push((format!("BASCULE_TARGET_SIZE{suffix}"), size.to_string()));
    }
    vars
}

/// A slot class name as a variable-name suffix: upper case, every character other than
/// an ASCII letter or digit as `_` (`app-data` → `APP_DATA`).
fn env_suffix(class: &str) -> String {
    class
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() {
            true => c.to_ascii_uppercase(),
            false => '_',
        })
        .collect()
}

impl HooksConfig {
    /// The command of `hook`, if configured.
    pub fn argv(&self, hook: Hook) -> Option<&[String]> {
        match hook {
            Hook::PreInstall => self.pre_install.as_deref(),
            Hook::PostInstall => self.post_install.as_deref(),
            Hook::PostCommit => self.post_commit.as_deref(),
        }
    }

    /// Runs `hook`, if configured, with `env`; logs what it printed.
    pub fn run(&self, hook: Hook, env: &[(String, String)]) -> Result<(), HookFailed> {
        let Some(argv) = self.argv(hook) else {
            return Ok(());
        };
        log::info!("hook {hook}: running {}", argv.join(" "));
        match command::run(argv, env, self.timeout) {
            Ok(output) => {
                output.lines().for_each(|l| log::info!("hook {hook}: {l}"));
                log::info!("hook {hook}: succeeded");
                Ok(())
            }
            Err(failed) => {
                failed
                    .output
                    .lines()
                    .for_each(|l| log::warn!("hook {hook}: {l}"));
                log::warn!("hook {hook}: failed: {}", failed.reason);
                Err(HookFailed {
                    hook,
                    reason: failed.reason,
                    output: failed.output,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bascule_partitions::AbPair;

    use super::*;

    fn parse(text: &str) -> Result<HooksConfig, String> {
        toml::from_str::<RawHooks>(text)
            .map_err(|e| e.to_string())
            .and_then(RawHooks::check)
    }

    #[test]
    fn hooks_parse_and_default_timeout() {
        let cfg = parse("pre_install = [\"/bin/check\", \"x\"]\ntimeout_secs = 5").unwrap();
        assert_eq!(
            cfg.argv(Hook::PreInstall),
            Some(&["/bin/check".to_string(), "x".into()][..])
        );
        assert_eq!(cfg.argv(Hook::PostCommit), None);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(parse("").unwrap(), HooksConfig::default());
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("\n[hooks]").expect("README shows [hooks]");
        let end = start + readme[start..].find("```").expect("the block ends");
        let table: toml::Table = toml::from_str(&readme[start..end]).unwrap();
        let raw: RawHooks = table["hooks"].clone().try_into().unwrap();
        let cfg = raw.check().unwrap();
        assert_eq!(cfg.argv(Hook::PostInstall).map(<[String]>::len), Some(2));
        assert!(cfg.argv(Hook::PreInstall).is_some() && cfg.argv(Hook::PostCommit).is_some());
        assert_eq!(cfg.timeout, Duration::from_secs(60));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(parse("post_install = []")
            .unwrap_err()
            .contains("hooks.post_install"));
        assert!(parse("timeout_secs = 0")
            .unwrap_err()
            .contains("hooks.timeout_secs"));
        assert!(parse("pre_instal = [\"x\"]")
            .unwrap_err()
            .contains("pre_instal"));
    }

    #[test]
    fn a_failure_names_the_hook_and_carries_its_output() {
        let cfg = parse("post_commit = [\"sh\", \"-c\", \"echo $BASCULE_HOOK; exit 4\"]").unwrap();
        let env = [("BASCULE_HOOK".to_string(), "post-commit".to_string())];
        let err = cfg.run(Hook::PostCommit, &env).unwrap_err();
        assert_eq!(err.output, "post-commit\n");
        assert_eq!(
            err.to_string(),
            "the post-commit hook (hooks.post_commit) failed: sh exit status: 4"
        );
        assert_eq!(cfg.run(Hook::PreInstall, &env), Ok(()));
    }

    fn spec(device: &str, size: Option<u64>) -> SlotSpec {
        SlotSpec {
            device: device.into(),
            offset: 0,
            size,
        }
    }

    #[test]
    fn every_image_class_gets_its_device() {
        let mut layout = Layout {
            slots: Default::default(),
            data: None,
        };
        for (class, a, b) in [
            ("rootfs", "/dev/a1", "/dev/b1"),
            ("app-data", "/dev/a2", "/dev/b2"),
        ] {
            let pair = AbPair {
                a: spec(a, None),
                b: spec(b, (class == "app-data").then_some(4096)),
            };
            layout.slots.insert(class.into(), pair);
        }
        let env = HookEnv {
            target: SlotName::B,
            booted: SlotName::A,
            version: None,
            classes: vec!["rootfs".into(), "app-data".into()],
        };
        let vars = env.vars(Hook::PostInstall, &layout);
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("BASCULE_TARGET_CLASS"), Some("rootfs"));
        assert_eq!(get("BASCULE_TARGET_DEVICE"), Some("/dev/b1"));
        assert_eq!(get("BASCULE_TARGET_CLASSES"), Some("rootfs app-data"));
        assert_eq!(get("BASCULE_TARGET_DEVICE_ROOTFS"), Some("/dev/b1"));
        assert_eq!(get("BASCULE_TARGET_DEVICE_APP_DATA"), Some("/dev/b2"));
        assert_eq!(get("BASCULE_TARGET_SIZE_APP_DATA"), Some("4096"));
        assert_eq!(get("BASCULE_TARGET_SIZE"), None, "rootfs.B is no window");
    }
}

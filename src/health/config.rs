//! The `[health]` section of `system.toml`: the probe's deadline, what a failure does,
//! the reboot command, and the ordered stages of checks.
//!
//! ```toml
//! [health]
//! deadline_secs = 120
//! on_failure = "reboot"            # or "mark-bad", "stay"
//! reboot_command = ["systemctl", "reboot"]
//! [[health.stage]]
//! name = "boot"
//! [[health.stage.check]]
//! unit_active = "sshd.service"
//! [[health.stage.check]]
//! command = ["/usr/bin/app-selftest"]
//! timeout_secs = 30
//! retry = true
//! ```
//!
//! A check names exactly one kind: `command`, `unit_active`, `tcp_port`, `http_get`
//! or `file_exists`. Unknown keys are errors, as everywhere in `system.toml`.
use std::time::Duration;

use serde::Deserialize;

/// What the probe does when a check fails or the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Run the reboot command: the bootloader spends a try of the slot.
    #[default]
    Reboot,
    /// Mark the booted slot bad (only if the other slot is confirmed), then reboot.
    MarkBad,
    /// Record the failure and exit non-zero; the slot stays unconfirmed.
    Stay,
}

/// `[health]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(default = "default_deadline")]
    deadline_secs: u64,
    #[serde(default)]
    on_failure: OnFailure,
    #[serde(default = "default_reboot")]
    reboot_command: Vec<String>,
    #[serde(default, rename = "stage")]
    stages: Vec<RawStage>,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            deadline_secs: default_deadline(),
            on_failure: OnFailure::default(),
            reboot_command: default_reboot(),
            stages: Vec::new(),
        }
    }
}

fn default_deadline() -> u64 {
    300
}

fn default_reboot() -> Vec<String> {
    vec!["systemctl".into(), "reboot".into()]
}

/// A check's timeout when `timeout_secs` is not set.
pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 10;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    #[serde(default, rename = "check")]
    checks: Vec<RawCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    unit_active: Option<String>,
    #[serde(default)]
    tcp_port: Option<String>,
    #[serde(default)]
    http_get: Option<String>,
    #[serde(default)]
    file_exists: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    retry: bool,
}

/// The probe, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// For the whole probe, retries included.
    pub deadline: Duration,
    pub on_failure: OnFailure,
    pub reboot_command: Vec<String>,
    pub stages: Vec<Stage>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        RawHealth::default()
            .check()
            .expect("the default [health] is valid")
    }
}

/// An ordered group of checks; a stage runs only after the one before passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub checks: Vec<Check>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `name`, or the kind and its argument (`tcp_port 127.0.0.1:22`).
    pub name: String,
    pub kind: CheckKind,
    pub timeout: Duration,
    /// Run it again (about once a second) until it passes or the deadline passes.
    pub retry: bool,
}

/// What a check tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Passes when the command exits 0 within the timeout.
    Command(Vec<String>),
    /// Passes when `systemctl is-active UNIT` exits 0.
    UnitActive(String),
    /// Passes when a TCP connection to `host:port` is accepted.
    TcpPort(String),
    /// Passes when a GET of the URL answers 2xx.
    HttpGet(String),
    /// Passes when the path exists.
    FileExists(String),
}

impl RawHealth {
    /// Checks the section; the message names the offending key.
    pub fn check(self) -> Result<HealthConfig, String> {
        if self.deadline_secs == 0 {
            return Err("health.deadline_secs must be at least 1 (seconds)".into());
        }
        if self.reboot_command.first().is_none_or(|p| p.is_empty()) {
            return Err("health.reboot_command must name a program".into());
        }
        let mut stages = Vec::new();
        for (i, stage) in self.stages.into_iter().enumerate() {
            if stage.name.trim().is_empty() {
                return Err(format!("health.stage[{i}].name must not be empty"));
            }
            if stages.iter().any(|s: &Stage| s.name == stage.name) {
                return Err(format!(
                    "health.stage[{i}].name {:?} names two stages",
                    stage.name
                ));
            }
            let checks = stage
                .checks
                .into_iter()
                .enumerate()
                .map(|(j, c)| c.check(&format!("health.stage[{i}].check[{j}]")))
                .collect::<Result<_, _>>()?;
            stages.push(Stage {
                name: stage.name,
                checks,
            });
        }
        Ok(HealthConfig {
            deadline: Duration::from_secs(self.deadline_secs),
            on_failure: self.on_failure,
            reboot_command: self.reboot_command,
            stages,
        })
    }
}

impl RawCheck {
    fn check(self, at: &str) -> Result<Check, String> {
        let mut kinds = Vec::new();
        if let Some(argv) = self.command {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(format!("{at}.command must name a program"));
            }
            kinds.push(("command", CheckKind::Command(argv)));
        }
        let text_kinds = [
            (
                "unit_active",
                self.unit_active,
                CheckKind::UnitActive as fn(_) -> _,
            ),
            ("tcp_port", self.tcp_port, CheckKind::TcpPort),
            ("http_get", self.http_get, CheckKind::HttpGet),
            ("file_exists", self.file_exists, CheckKind::FileExists),
        ];
        for (key, value, make) in text_kinds {
            if let Some(value) = value {
                if value.trim().is_empty() {
                    return Err(format!("{at}.{key} must not be empty"));
                }
                kinds.push((key, make(value)));
            }
        }
        let (key, kind) = match kinds.len() {
            1 => kinds.remove(0),
            0 => {
                return Err(format!(
                    "{at} names no check: set one of command, unit_active, tcp_port, \
                     http_get, file_exists"
                ))
            }
            _ => {
                let keys: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "{at} names {} checks ({}): one check per [[health.stage.check]]",
                    keys.len(),
                    keys.join(", ")
                ));
            }
        };
        if let Some(url) = match &kind {
            CheckKind::HttpGet(url) => Some(url),
            _ => None,
        } {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(format!(
                    "{at}.http_get {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        let timeout_secs = self.timeout_secs.unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS);
        if timeout_secs == 0 {
            return Err(format!("{at}.timeout_secs must be at least 1 (seconds)"));
        }
        let name = self.name.unwrap_or_else(|| describe(key, &kind));
        Ok(Check {
            name,
            kind,
            timeout: Duration::from_secs(timeout_secs),
            retry: self.retry,
        })
    }
}

/// The default name of a check: its key and argument.
fn describe(key: &str, kind: &CheckKind) -> String {
    let arg = match kind {
        CheckKind::Command(argv) => argv.join(" "),
        CheckKind::UnitActive(s)
        | CheckKind::TcpPort(s)
        | CheckKind::HttpGet(s)
        | CheckKind::FileExists(s) => s.clone(),
    };
    format!("{key} {arg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HealthConfig, String> {
        let raw: RawHealth = toml::from_str(text).map_err(|e| e.message().to_string())?;
        raw.check()
    }

    #[test]
    fn stages_and_checks_parse_in_order_with_defaults() {
        let cfg = parse(
            r#"
            deadline_secs = 60
            on_failure = "mark-bad"
            [[stage]]
            name = "boot"
            [[stage.check]]
            unit_active = "sshd.service"
            [[stage.check]]
            name = "selftest"
            command = ["/bin/true"]
            timeout_secs = 3
            retry = true
            [[stage]]
            name = "app"
            [[stage.check]]
            http_get = "http://127.0.0.1:8080/health"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.deadline, Duration::from_secs(60));
        assert_eq!(cfg.on_failure, OnFailure::MarkBad);
        assert_eq!(cfg.reboot_command, ["systemctl", "reboot"]);
        let names: Vec<_> = cfg.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["boot", "app"]);
        let boot = &cfg.stages[0].checks;
        assert_eq!(boot[0].name, "unit_active sshd.service");
        assert_eq!(
            boot[0].timeout,
            Duration::from_secs(DEFAULT_CHECK_TIMEOUT_SECS)
        );
        assert!(!boot[0].retry);
        assert_eq!(boot[1].name, "selftest");
        assert_eq!(boot[1].kind, CheckKind::Command(vec!["/bin/true".into()]));
        assert!(boot[1].retry);
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("\n[health]").expect("README shows [health]");
        let end = start + readme[start..].find("```").expect("the block ends");
        let table: toml::Table = toml::from_str(&readme[start..end]).unwrap();
        let raw: RawHealth = table["health"].clone().try_into().unwrap();
        let cfg = raw.check().unwrap();
        assert_eq!(cfg.stages.len(), 2);
        assert_eq!(cfg.stages[1].checks[1].name, "selftest");
        assert!(cfg.stages[1].checks[0].retry);
    }

    #[test]
    fn bad_checks_are_errors_naming_the_key() {
        let cases = [
            ("[[stage]]\nname = \"b\"\n[[stage.check]]\nretry = true\n", "names no check"),
            (
                "[[stage]]\nname = \"b\"\n[[stage.check]]\ntcp_port = \"x:1\"\nfile_exists = \"/x\"\n",
                "tcp_port, file_exists",
            ),
            ("[[stage]]\nname = \"b\"\n[[stage.check]]\ncommand = []\n", "check[0].command"),
            ("[[stage]]\nname = \"b\"\n[[stage.check]]\nfile_exist = \"/x\"\n", "file_exist"),
            ("[[stage]]\nname = \"b\"\n[[stage.check]]\nhttp_get = \"ftp://x\"\n", "http_get"),
            ("deadline_secs = 0\n", "deadline_secs"),
            ("reboot_command = []\n", "reboot_command"),
            ("on_failure = \"explode\"\n", "explode"),
            ("[[stage]]\nname = \"b\"\n[[stage]]\nname = \"b\"\n", "names two stages"),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

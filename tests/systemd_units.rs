//! The shipped systemd units (`systemd/`): `systemd-analyze verify` accepts them with
//! no warning, and they are wired as systemd-bless-boot's scheme needs: the probe
//! before `boot-complete.target` and required by it, the confirmation after it and
//! requiring it.
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 2] = ["bascule-health.service", "bascule-confirm.service"];

fn unit_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `key=value` lines of `text` (comments and sections left out).
fn settings(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.contains('=') && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn units_pass_systemd_analyze_verify_without_a_warning() {
    if !tool::require("systemd-analyze", "systemd") {
        return;
    }
    // verify checks that ExecStart's program exists: point it at the built binary.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in UNITS {
        let text = unit_text(name).replace("/usr/bin/bascule", env!("CARGO_BIN_EXE_bascule"));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn the_probe_gates_boot_complete_and_the_confirmation_follows_it() {
    let health = settings(&unit_text("bascule-health.service"));
    for line in [
        "Before=boot-complete.target",
        "RequiredBy=boot-complete.target",
        "Type=oneshot",
        "ExecStart=/usr/bin/bascule health --no-confirm",
    ] {
        assert!(health.iter().any(|l| l == line), "health unit lacks {line}");
    }
    let confirm = settings(&unit_text("bascule-confirm.service"));
    for line in [
        "After=boot-complete.target",
        "Requires=boot-complete.target",
        "ExecStart=/usr/bin/bascule mark-good",
    ] {
        assert!(
            confirm.iter().any(|l| l == line),
            "confirm unit lacks {line}"
        );
    }
}

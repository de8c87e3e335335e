//! Env values are bytes (issue 15, defect 4), through the CLI against the real
//! U-Boot tools: a value `fw_setenv` writes with a Latin-1 byte does not stop
//! `bascule status`, survives every bascule commit byte for byte, and on a redundant
//! env bascule reads the same (newer) copy as `fw_printenv`. `fw_printenv` and
//! `fw_setenv` (libubootenv-tool, in `scripts/deps`) must be installed: the tests
//! fail without them.
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Command;

use common::{BundleOpts, Fixture, ENV_SIZE};

/// A vendor note as a board vendor might leave it: Latin-1 "café 25°C".
const NOTE: &[u8] = b"caf\xe9 25\xb0C";
const IMAGE_LEN: usize = (256 << 10) + 99;

/// Writes `fw_env.config` for the fixture's env: `copies` copies of `ENV_SIZE`.
fn fw_env_config(fx: &Fixture, copies: u64) -> PathBuf {
    let env = fx.path("uboot.env");
    let text: String = (0..copies)
        .map(|i| format!("{} {:#x} {ENV_SIZE:#x}\n", env.display(), i * ENV_SIZE))
        .collect();
    let path = fx.path("fw_env.config");
    std::fs::write(&path, text).expect("write fw_env.config");
    path
}

/// Runs a libubootenv tool; panics (never skips) when it is missing or fails.
fn fw(tool: &str, config: &PathBuf, args: &[&OsStr]) -> Vec<u8> {
    let out = Command::new(tool)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (package libubootenv-tool) cannot run: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The value of `name` in `fw_printenv` output, as bytes.
fn printenv_value(out: &[u8], name: &str) -> Option<Vec<u8>> {
    let prefix = format!("{name}=");
    out.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(prefix.as_bytes()))
        .map(<[u8]>::to_vec)
}

/// Turns the fixture's redundant env into a single copy holding the same variables.
fn make_single_copy(fx: &Fixture) {
    let vars = fx.env();
    let config = std::fs::read_to_string(fx.config()).expect("read config");
    let redundant = format!("redundant_offset = {ENV_SIZE}");
    assert!(config.contains(&redundant), "{config}");
    let single = config.replace(&redundant, "allow_single_copy = true");
    std::fs::write(fx.config(), single).expect("write config");
    std::fs::write(fx.path("uboot.env"), vec![0u8; 2 * ENV_SIZE as usize]).expect("zero env");
    fx.commit_env(&vars);
}

#[test]
fn single_copy_latin1_value_reads_and_survives_an_install() {
    let fx = Fixture::new();
    make_single_copy(&fx);
    let fw_config = fw_env_config(&fx, 1);
    fw(
        "fw_setenv",
        &fw_config,
        &[OsStr::new("vendor_note"), OsStr::from_bytes(NOTE)],
    );

    let st = fx.status_json();
    assert_eq!(st["booted"], "A", "{st}");
    assert_eq!(st["env"]["vendor_note"]["hex"], common::hex(NOTE), "{st}");

    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 7), &BundleOpts::default());
    fx.install(&bundle, &[]).ok();
    let out = fw("fw_printenv", &fw_config, &[]);
    assert_eq!(printenv_value(&out, "vendor_note").as_deref(), Some(NOTE));
    assert_eq!(
        printenv_value(&out, "BOOT_ORDER").as_deref(),
        Some(&b"B A"[..])
    );
    assert_eq!(fx.env()["vendor_note"].as_bytes(), NOTE);
}

#[test]
fn redundant_env_reads_the_newer_copy_when_it_holds_latin1() {
    let fx = Fixture::new();
    let fw_config = fw_env_config(&fx, 2);
    // One fw_setenv write: the newer copy makes B primary and carries the note; the
    // older copy still says A.
    let script = fx.path("vars.txt");
    let mut text = b"BOOT_ORDER=B A\nBOOT_B_LEFT=3\nvendor_note=".to_vec();
    text.extend_from_slice(NOTE);
    text.push(b'\n');
    std::fs::write(&script, text).expect("write script");
    fw(
        "fw_setenv",
        &fw_config,
        &[OsStr::new("-s"), script.as_os_str()],
    );
    let out = fw("fw_printenv", &fw_config, &[]);
    assert_eq!(
        printenv_value(&out, "BOOT_ORDER").as_deref(),
        Some(&b"B A"[..])
    );

    let st = fx.status_json();
    assert_eq!(st["boot_order"], serde_json::json!(["B", "A"]), "{st}");
    assert_eq!(st["env"]["vendor_note"]["hex"], common::hex(NOTE), "{st}");

    fx.run(&["mark-bad", "B"]).ok();
    let out = fw("fw_printenv", &fw_config, &[]);
    assert_eq!(printenv_value(&out, "vendor_note").as_deref(), Some(NOTE));
    assert_eq!(
        printenv_value(&out, "BOOT_ORDER").as_deref(),
        Some(&b"A"[..])
    );
}

/// `status --json` shows a non-UTF-8 value as `{"hex": ...}` and a non-UTF-8 name
/// with `\xNN` escapes (JSON keys are strings); UTF-8 ones as plain strings.
#[test]
fn json_shows_bytes_that_are_not_utf8_as_hex() {
    let mut vars = bascule_hal::EnvVars::new();
    vars.insert("BOOT_ORDER", "A B");
    vars.insert("note", NOTE);
    vars.insert(&b"n\xe9"[..], "x");
    let json = serde_json::to_value(&vars).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({
            "BOOT_ORDER": "A B",
            "note": {"hex": common::hex(NOTE)},
            "n\\xe9": "x",
        })
    );
    let back: bascule_hal::EnvVars = serde_json::from_value(json).expect("deserialize");
    let mut expected = vars.clone();
    expected.remove(&b"n\xe9"[..]);
    expected.insert(&b"n\\xe9"[..], "x");
    assert_eq!(
        back, expected,
        "hex values read back; escaped names stay text"
    );
}

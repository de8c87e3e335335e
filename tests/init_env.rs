//! `init-env` on a blank, a corrupt and a valid U-Boot env through the CLI (issue 15,
//! defect 1), read back with the real `fw_printenv` (libubootenv-tool, in
//! `scripts/deps`; the tests fail without it). A blank env needs the board's default
//! env, or U-Boot finds no `bootcmd`; a corrupt env is rewritten only with `--force`;
//! a valid env keeps every variable.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Fixture, ENV_SIZE};

const BOOTCMD: &str = "load mmc 0:1 ${scriptaddr} boot.scr; source ${scriptaddr}";

/// Writes the board's default env (`u-boot-initial-env`) and returns its path.
fn initial_env(fx: &Fixture) -> PathBuf {
    let path = fx.path("u-boot-initial-env");
    let text = format!("# made by make u-boot-initial-env\nbootcmd={BOOTCMD}\nbootdelay=2\n");
    std::fs::write(&path, text).expect("write initial env");
    path
}

/// Fills both env copies with `byte` (an erased env).
fn erase_env(fx: &Fixture, byte: u8) {
    std::fs::write(fx.path("uboot.env"), vec![byte; 2 * ENV_SIZE as usize]).expect("erase env");
}

/// Damages the data of both copies of the fixture's valid env: not blank, no good CRC.
fn corrupt_env(fx: &Fixture) {
    let path = fx.path("uboot.env");
    let mut bytes = std::fs::read(&path).expect("read env");
    for copy in 0..2 {
        bytes[copy * ENV_SIZE as usize + 5] ^= 0x55;
    }
    std::fs::write(&path, bytes).expect("write env");
}

fn env_bytes(fx: &Fixture) -> Vec<u8> {
    std::fs::read(fx.path("uboot.env")).expect("read env")
}

/// `fw_printenv` of the fixture's redundant env, as text lines.
fn printenv(fx: &Fixture) -> Vec<String> {
    let config = fx.path("fw_env.config");
    let env = fx.path("uboot.env");
    let text = format!(
        "{0} 0x0 {ENV_SIZE:#x}\n{0} {ENV_SIZE:#x} {ENV_SIZE:#x}\n",
        env.display()
    );
    std::fs::write(&config, text).expect("write fw_env.config");
    let out = Command::new("fw_printenv")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("fw_printenv (package libubootenv-tool) must be installed");
    assert!(
        out.status.success(),
        "fw_printenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn assert_has(lines: &[String], want: &str) {
    assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:#?}");
}

#[test]
fn blank_env_without_defaults_is_refused_and_untouched() {
    for byte in [0xff, 0x00] {
        let fx = Fixture::new();
        erase_env(&fx, byte);
        fx.run(&["init-env", "--good", "A"])
            .fails_with(&["blank", "--defaults", "bootcmd"]);
        fx.run(&["init-env", "--good", "A", "--force"])
            .fails_with(&["blank", "--defaults"]);
        assert_eq!(env_bytes(&fx), vec![byte; 2 * ENV_SIZE as usize]);
    }
}

#[test]
fn blank_env_with_defaults_gets_bootcmd_and_bascule_vars() {
    let fx = Fixture::new();
    erase_env(&fx, 0xff);
    let defaults = initial_env(&fx);
    let defaults = defaults.to_str().unwrap();
    fx.run(&[
        "init-env",
        "--good",
        "A",
        "--version",
        "1.0.0",
        "--defaults",
        defaults,
    ])
    .ok();
    let lines = printenv(&fx);
    assert_has(&lines, &format!("bootcmd={BOOTCMD}"));
    assert_has(&lines, "bootdelay=2");
    assert_has(&lines, "BOOT_ORDER=A");
    assert_has(&lines, "BOOT_A_LEFT=3");
    assert_has(&lines, "BASCULE_A_VERSION=1.0.0");
    assert_eq!(fx.status_json()["slots"][0]["state"], "good");
}

#[test]
fn blank_env_takes_defaults_from_the_config() {
    let fx = Fixture::new();
    erase_env(&fx, 0x00);
    initial_env(&fx);
    let config = std::fs::read_to_string(fx.config()).expect("read config");
    let config = config.replace(
        "[bootenv]\n",
        "[bootenv]\ndefaults = \"u-boot-initial-env\"\n",
    );
    std::fs::write(fx.config(), config).expect("write config");
    fx.run(&["init-env", "--good", "A"]).ok();
    assert_has(&printenv(&fx), &format!("bootcmd={BOOTCMD}"));
}

#[test]
fn defaults_without_bootcmd_are_refused() {
    let fx = Fixture::new();
    erase_env(&fx, 0xff);
    let path = fx.path("u-boot-initial-env");
    std::fs::write(&path, "bootdelay=2\n").expect("write initial env");
    fx.run(&[
        "init-env",
        "--good",
        "A",
        "--defaults",
        path.to_str().unwrap(),
    ])
    .fails_with(&["bootcmd"]);
    assert_eq!(env_bytes(&fx), vec![0xff; 2 * ENV_SIZE as usize]);
}

#[test]
fn corrupt_env_is_rewritten_only_with_force_and_defaults() {
    let fx = Fixture::new();
    corrupt_env(&fx);
    let before = env_bytes(&fx);
    let defaults = initial_env(&fx);
    let defaults = defaults.to_str().unwrap();
    fx.run(&["init-env", "--good", "A", "--defaults", defaults])
        .fails_with(&["no valid copy", "--force"]);
    fx.run(&["init-env", "--good", "A", "--force"])
        .fails_with(&["corrupt", "--defaults"]);
    assert_eq!(env_bytes(&fx), before, "a refused init-env wrote the env");
    fx.run(&["init-env", "--good", "A", "--force", "--defaults", defaults])
        .ok();
    let lines = printenv(&fx);
    assert_has(&lines, &format!("bootcmd={BOOTCMD}"));
    assert_has(&lines, "BOOT_ORDER=A");
}

#[test]
fn valid_env_keeps_every_variable_and_ignores_defaults() {
    let fx = Fixture::new();
    let mut vars = fx.env();
    vars.insert("bootcmd", "run vendor_boot");
    vars.insert("ethaddr", "02:00:00:00:00:01");
    fx.commit_env(&vars);
    let defaults = initial_env(&fx);
    let defaults = defaults.to_str().unwrap();
    let before = env_bytes(&fx);
    fx.run(&["init-env", "--good", "A", "--defaults", defaults])
        .fails_with(&["already holds a boot state", "--force"]);
    assert_eq!(env_bytes(&fx), before);
    fx.run(&["init-env", "--good", "A", "--force", "--defaults", defaults])
        .ok();
    let lines = printenv(&fx);
    assert_has(&lines, "bootcmd=run vendor_boot");
    assert_has(&lines, "ethaddr=02:00:00:00:00:01");
    assert_has(&lines, "BOOT_ORDER=A");
    assert!(
        !lines.iter().any(|l| l.starts_with("bootdelay=")),
        "{lines:#?}"
    );
}

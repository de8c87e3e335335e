//! The same update cycle through the CLI on every boot-environment backend: the
//! commands and `status` work unchanged whichever backend `system.toml` names, and
//! the real bootloader tools read what bascule wrote (a missing tool fails the test,
//! see `tool`).
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::BOARD_SLOT as SLOT;

use common::{bascule_at as bascule, board_bundle as bundle, ok_stdout as ok, status_at as status};

fn slot_state(status: &serde_json::Value, slot: usize) -> String {
    status["slots"][slot]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Writes a device with `bootenv` (a TOML table body) and returns its config path.
fn device(dir: &Path, bootenv: &str) -> PathBuf {
    std::fs::File::create(dir.join("disk.img"))
        .unwrap()
        .set_len(2 * SLOT)
        .unwrap();
    device_with_slots(dir, bootenv, 0, SLOT)
}

/// Like [`device`], with slot A at `a` and slot B at `b` of `disk.img` (made by the caller).
fn device_with_slots(dir: &Path, bootenv: &str, a: u64, b: u64) -> PathBuf {
    std::fs::write(dir.join("cmdline"), "quiet bascule.slot=A\n").unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let config = dir.join("system.toml");
    let text = format!(
        "compatible = \"board\"\nkeyring = \"keys\"\nstate_dir = \"state\"\n[boot]\ncmdline = \"cmdline\"\n\
         [bootenv]\n{bootenv}\n[slots.rootfs.A]\ndevice = \"disk.img\"\noffset = {a}\nsize = {SLOT}\n\
         [slots.rootfs.B]\ndevice = \"disk.img\"\noffset = {b}\nsize = {SLOT}\n"
    );
    std::fs::write(&config, text).unwrap();
    let key = dir.join("release");
    ok(bascule(
        &config,
        &["keygen", "--out", key.to_str().unwrap()],
    ));
    std::fs::copy(dir.join("release.pub"), dir.join("keys/release.pub")).unwrap();
    config
}

/// init-env → install → simulate-boot → mark-good, checking status at each step.
fn update_cycle(dir: &Path, config: &Path) {
    ok(bascule(
        config,
        &["init-env", "--good", "A", "--version", "1.0.0"],
    ));
    let st = status(config);
    assert_eq!(st["booted"], "A");
    assert_eq!(slot_state(&st, 0), "good");
    assert_eq!(slot_state(&st, 1), "bad");

    let b = bundle(dir, config, "2.0.0");
    ok(bascule(
        config,
        &["install", b.to_str().unwrap(), "--progress", "none"],
    ));
    let st = status(config);
    assert_eq!(slot_state(&st, 1), "pending", "{st}");
    assert_eq!(st["slots"][1]["version"], "2.0.0");

    assert!(ok(bascule(config, &["simulate-boot"])).contains("booting slot B"));
    assert_eq!(status(config)["booted"], "B");
    ok(bascule(config, &["mark-good"]));
    let st = status(config);
    assert_eq!(slot_state(&st, 1), "good", "{st}");
    assert_eq!(slot_state(&st, 0), "good", "{st}");
    assert!(ok(bascule(config, &["mark-good"])).contains("nothing written"));
}

#[test]
fn uboot_redundant_cycle_and_fw_printenv_agrees() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("uboot.env"))
        .unwrap()
        .set_len(0x8000)
        .unwrap();
    // A blank env: init-env writes the board's default env with bascule's variables.
    std::fs::write(
        dir.path().join("u-boot-initial-env"),
        "bootcmd=run bascule_boot\nbootdelay=2\n",
    )
    .unwrap();
    let config = device(
        dir.path(),
        "backend = \"uboot\"\npath = \"uboot.env\"\nsize = 0x4000\nredundant_offset = 0x4000\n\
         defaults = \"u-boot-initial-env\"",
    );
    update_cycle(dir.path(), &config);
    if !tool::require("fw_printenv", "libubootenv-tool") {
        return;
    }
    let env = dir.path().join("uboot.env");
    let fw_config = dir.path().join("fw_env.config");
    std::fs::write(
        &fw_config,
        format!("{0} 0x0 0x4000\n{0} 0x4000 0x4000\n", env.display()),
    )
    .unwrap();
    let out = Command::new("fw_printenv")
        .arg("-c")
        .arg(&fw_config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BOOT_ORDER=B A"), "{text}");
    assert!(text.contains("BOOT_B_LEFT=3"), "{text}");
    assert!(text.contains("BASCULE_B_VERSION=2.0.0"), "{text}");
    assert!(text.contains("bootcmd=run bascule_boot"), "{text}");
}

#[test]
fn grub_cycle_and_grub_editenv_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let config = device(dir.path(), "backend = \"grub\"\npath = \"grubenv\"");
    update_cycle(dir.path(), &config);
    if !tool::require("grub-editenv", "grub-common") {
        return;
    }
    let out = Command::new("grub-editenv")
        .arg(dir.path().join("grubenv"))
        .arg("list")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ORDER=B A"), "{text}");
    assert!(
        text.contains("B_OK=1") && text.contains("B_TRY=0"),
        "{text}"
    );
}

#[test]
fn native_cycle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("native.env"))
        .unwrap()
        .set_len(0x2000)
        .unwrap();
    let config = device(
        dir.path(),
        "backend = \"native\"\npath = \"native.env\"\nsize = 0x1000\nsecond_offset = 0x1000",
    );
    update_cycle(dir.path(), &config);
}

#[test]
fn init_env_refuses_to_replace_a_valid_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = device(dir.path(), "backend = \"grub\"\npath = \"grubenv\"");
    ok(bascule(&config, &["init-env", "--good", "A"]));
    let out = bascule(&config, &["init-env", "--good", "B"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a boot state"));
    assert_eq!(status(&config)["slots"][0]["state"], "good");
}

#[test]
fn gpt_chromeos_cycle_and_cgpt_agrees() {
    if !tool::require("sgdisk", "gdisk") || !tool::require("cgpt", "cgpt") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(5 * SLOT)
        .unwrap();
    let made = Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+1M",
            "-c",
            "1:rootfs-a",
            "-n",
            "2:4096:+1M",
            "-c",
            "2:rootfs-b",
        ])
        .args(["-n", "3:6144:+64K", "-c", "3:bascule-env", "-t", "3:8301"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "sgdisk: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let bootenv =
        "backend = \"gpt\"\ndisk = \"disk.img\"\nslot_a = \"rootfs-a\"\nslot_b = \"rootfs-b\"";
    let config = device_with_slots(dir.path(), bootenv, 2048 * 512, 4096 * 512);
    update_cycle(dir.path(), &config);
    let verify = Command::new("sgdisk")
        .arg("-v")
        .arg(&disk)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains("No problems found"), "{text}");
    let out = Command::new("cgpt")
        .args(["show", "-i", "2", "-S"])
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "B marked successful"
    );
}

/// A GRUB env value with a Latin-1 byte, set by `grub-editenv`, reads and survives
/// bascule's commits byte for byte (issue 15, defect 4). Needs `grub-editenv`.
#[test]
fn grub_latin1_value_survives_commits_byte_exact() {
    use std::os::unix::ffi::OsStrExt;
    const NOTE: &[u8] = b"note=caf\xe9 25\xb0C";
    let dir = tempfile::tempdir().unwrap();
    let config = device(dir.path(), "backend = \"grub\"\npath = \"grubenv\"");
    ok(bascule(&config, &["init-env", "--good", "A"]));
    let grubenv = dir.path().join("grubenv");
    let editenv = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("grub-editenv")
            .arg(&grubenv)
            .args(args)
            .output()
            .expect("grub-editenv (package grub-common) must be installed");
        assert!(out.status.success(), "grub-editenv {args:?} failed");
        out.stdout
    };
    editenv(&["set".as_ref(), std::ffi::OsStr::from_bytes(NOTE)]);
    let st = status(&config);
    assert_eq!(st["env"]["note"]["hex"], "636166e9203235b043", "{st}");
    assert!(ok(bascule(&config, &["simulate-boot"])).contains("booting slot A"));
    assert!(!ok(bascule(&config, &["mark-good"])).contains("nothing written"));
    let listed = editenv(&["list".as_ref()]);
    assert!(
        listed.split(|&b| b == b'\n').any(|line| line == NOTE),
        "{}",
        String::from_utf8_lossy(&listed)
    );
}

/// On GRUB the boot logic is the script, not the env: `init-env` on an erased grubenv
/// writes bascule's variables without a default env, refuses `--defaults` (a U-Boot
/// file), and a corrupt grubenv needs `--force` (issue 15, defect 1).
#[test]
fn grub_init_env_on_blank_and_corrupt_envs() {
    let dir = tempfile::tempdir().unwrap();
    let config = device(dir.path(), "backend = \"grub\"\npath = \"grubenv\"");
    let grubenv = dir.path().join("grubenv");
    std::fs::write(&grubenv, [0u8; 1024]).unwrap();
    let out = bascule(&config, &["init-env", "--good", "A", "--defaults", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("U-Boot backend"));
    ok(bascule(&config, &["init-env", "--good", "A"]));
    assert_eq!(slot_state(&status(&config), 0), "good");

    std::fs::write(&grubenv, b"# GRUB Environment Block\nORDER=A B").unwrap();
    let out = bascule(&config, &["init-env", "--good", "A"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    ok(bascule(&config, &["init-env", "--good", "A", "--force"]));
    assert_eq!(slot_state(&status(&config), 0), "good");
}

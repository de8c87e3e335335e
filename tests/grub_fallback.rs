//! Defect 2 through the CLI: bascule keeps `grubenv.good` (confirmed slots only) beside
//! `grubenv`; when `grubenv` is empty, corrupt or missing, `status` says that GRUB boots
//! the confirmed slot from the fallback, and the next commit (`mark-good`) rewrites it.
//! The real GRUB side is in `qemu/tests/grub_differential.rs`.
mod common;

use std::path::{Path, PathBuf};

use bascule_hal::env::GrubCodec;
use bascule_hal::EnvVars;

use common::BOARD_SLOT as SLOT;

use common::{bascule_at as bascule, board_bundle, ok_stdout as ok, status_at as status};

/// A file-backed GRUB device, slot A booted and confirmed with version 1.0.0.
fn grub_device(dir: &Path) -> PathBuf {
    std::fs::File::create(dir.join("disk.img"))
        .unwrap()
        .set_len(2 * SLOT)
        .unwrap();
    std::fs::write(dir.join("cmdline"), "quiet bascule.slot=A\n").unwrap();
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let config = dir.join("system.toml");
    let text = format!(
        "compatible = \"board\"\nkeyring = \"keys\"\nstate_dir = \"state\"\n[boot]\ncmdline = \"cmdline\"\n\
         [bootenv]\nbackend = \"grub\"\npath = \"grubenv\"\n[slots.rootfs.A]\ndevice = \"disk.img\"\n\
         offset = 0\nsize = {SLOT}\n[slots.rootfs.B]\ndevice = \"disk.img\"\noffset = {SLOT}\nsize = {SLOT}\n"
    );
    std::fs::write(&config, text).unwrap();
    let key = dir.join("release");
    ok(bascule(
        &config,
        &["keygen", "--out", key.to_str().unwrap()],
    ));
    std::fs::copy(dir.join("release.pub"), dir.join("keys/release.pub")).unwrap();
    ok(bascule(
        &config,
        &["init-env", "--good", "A", "--version", "1.0.0"],
    ));
    config
}

/// Builds a bundle of version `version` and installs it into the inactive slot.
fn install(dir: &Path, config: &Path, version: &str) {
    let out = board_bundle(dir, config, version);
    ok(bascule(
        config,
        &["install", out.to_str().unwrap(), "--progress", "none"],
    ));
}

fn fallback(dir: &Path) -> EnvVars {
    let bytes = std::fs::read(dir.join("grubenv.good")).expect("grubenv.good exists");
    GrubCodec::decode(&bytes).expect("grubenv.good decodes")
}

fn assert_names_only(fb: &EnvVars, order: &str) {
    assert_eq!(fb["ORDER"], order, "{fb:?}");
    for slot in ["A", "B"] {
        let want = if order.contains(slot) { "1" } else { "0" };
        assert_eq!(fb[&format!("{slot}_OK")], want, "{slot}: {fb:?}");
        assert_eq!(fb[&format!("{slot}_TRY")], "0", "{slot}: {fb:?}");
    }
}

/// Makes the grubenv at the path unreadable.
type BreakEnv = fn(&Path);

#[test]
fn unreadable_grubenv_status_explains_and_mark_good_repairs() {
    let breakers: [(&str, BreakEnv); 3] = [
        ("empty", |p| std::fs::write(p, b"").unwrap()),
        ("corrupt", |p| {
            std::fs::write(p, b"# GRUB Env\0\0garbage").unwrap()
        }),
        ("missing", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (what, break_env) in breakers {
        let dir = tempfile::tempdir().unwrap();
        let config = grub_device(dir.path());
        install(dir.path(), &config, "2.0.0");
        break_env(&dir.path().join("grubenv"));

        let text = ok(bascule(&config, &["status"]));
        assert!(
            text.contains("main GRUB env is unreadable"),
            "{what}: {text}"
        );
        assert!(
            text.contains("GRUB boots slot A from grubenv.good"),
            "{what}: {text}"
        );
        assert!(text.contains("rewrites it"), "{what}: {text}");
        let st = status(&config);
        assert_eq!(st["slots"][0]["state"], "good", "{what}: {st}");
        assert_eq!(
            st["slots"][1]["state"], "bad",
            "{what}: the pending B is not offered"
        );

        let out = ok(bascule(&config, &["mark-good"]));
        assert!(out.contains("marked"), "{what}: {out}");
        let st = status(&config);
        assert!(st["bootenv_warning"].is_null(), "{what}: {st}");
        let main = GrubCodec::decode(&std::fs::read(dir.path().join("grubenv")).unwrap());
        let main = main.unwrap_or_else(|e| panic!("{what}: grubenv not repaired: {e}"));
        assert_eq!(main["A_OK"], "1", "{what}");
        assert_eq!(main["BASCULE_A_VERSION"], "1.0.0", "{what}");
        assert_names_only(&fallback(dir.path()), "A");
    }
}

#[test]
fn fallback_never_names_a_pending_slot_through_an_update_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let config = grub_device(dir.path());
    assert_names_only(&fallback(dir.path()), "A");
    install(dir.path(), &config, "2.0.0");
    assert_names_only(&fallback(dir.path()), "A");
    assert!(ok(bascule(&config, &["simulate-boot"])).contains("booting slot B"));
    assert_names_only(&fallback(dir.path()), "A");
    ok(bascule(&config, &["mark-good"]));
    let fb = fallback(dir.path());
    assert_names_only(&fb, "B A");
    assert_eq!(fb["BASCULE_B_VERSION"], "2.0.0");
    // The next install targets A: from its first write on, only B is in the fallback.
    install(dir.path(), &config, "3.0.0");
    assert_names_only(&fallback(dir.path()), "B");
    let st = status(&config);
    assert_eq!(st["slots"][0]["state"], "pending", "{st}");
}

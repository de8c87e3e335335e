//! The bad-input matrix beyond damaged bundles: what the system around the updater can
//! get wrong. A revoked signing key, a read-only or full target filesystem, a broken
//! config, a corrupt boot environment. Each test checks the exit code, that stderr
//! names the problem, and that nothing was lost (the booted slot is byte-identical, the
//! target is never left pending). A SIGTERM mid-install is in `interrupted.rs`.
//!
//! The filesystem tests mount a tmpfs and need root; without it they fail (see `tool`).
mod common;
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

use std::path::{Path, PathBuf};
use std::process::Command;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture, Run, ATTEMPTS, SLOT_SIZE};

const IMAGE_LEN: usize = (512 << 10) + 333;

fn pending_fresh() -> SlotState {
    SlotState::Pending {
        tries_left: ATTEMPTS,
    }
}

// ---------------------------------------------------------------------------------
// 1. Revoked key
// ---------------------------------------------------------------------------------

#[test]
fn bundle_signed_by_a_revoked_key_is_refused_and_rotation_works() {
    let fx = Fixture::new();
    // Rotation: a second trusted key, and the first one revoked (its .pub stays in
    // the trusted directory too, as a device that has not dropped it yet would have).
    let next = fx.path("signing/next");
    fx.keygen(&next);
    std::fs::copy(next.with_extension("pub"), fx.path("keyring/next.pub")).unwrap();
    std::fs::create_dir(fx.path("keyring/revoked")).unwrap();
    std::fs::copy(
        fx.path("signing/release.pub"),
        fx.path("keyring/revoked/release.pub"),
    )
    .unwrap();
    assert!(fx.path("keyring/release.pub").exists());

    let old = fx.bundle(&fx.image(IMAGE_LEN, 101), &BundleOpts::default());
    let before = fx.snapshot();
    fx.install(&old, &[])
        .fails_with(&["signature check failed", "revoked"]);
    fx.install(&old, &["--force", "--allow-downgrade"])
        .fails_with(&["revoked"]);
    fx.assert_nothing_lost(&before, SlotName::B);
    fx.assert_untouched(&before);
    // `bundle info` against the device keyring says so too.
    let keyring = fx.path("keyring").display().to_string();
    fx.run(&[
        "bundle",
        "info",
        "--keyring",
        &keyring,
        &old.display().to_string(),
    ])
    .fails_with(&["revoked"]);

    // A bundle signed by the new key installs.
    let image = fx.image(IMAGE_LEN, 102);
    let new = fx.bundle(
        &image,
        &BundleOpts::default().key(&next.with_extension("key")),
    );
    fx.install(&new, &[]).ok();
    assert_eq!(fx.slot_state(SlotName::B), pending_fresh());
    assert!(fx.slot_holds(SlotName::B, &image));
    assert!(fx.slot_bytes(SlotName::A) == before.slots[0]);
}

// ---------------------------------------------------------------------------------
// 2 and 3. Read-only and full target filesystems (tmpfs, root only)
// ---------------------------------------------------------------------------------

/// A tmpfs mounted for one test; unmounted on drop (also when the test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount(8) syntax) on `dir`. When that is not possible
    /// (not root, no mount(8), no tmpfs) the test fails, or with
    /// `BASCULE_ALLOW_MISSING_TOOLS=1` is skipped loudly (`None`).
    fn mount(dir: &Path, size: &str, test: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                tool::skip_or_fail(&format!(
                    "{test}: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                tool::skip_or_fail(&format!("{test}: cannot run mount(8) (util-linux): {e}"));
                None
            }
        }
    }

    fn remount_ro(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Points slot B at `dev` (relative to the fixture), A staying on disk.img.
fn target_b_on(fx: &Fixture, dev: &str) {
    std::fs::write(fx.config(), fx.system_toml("disk.img", dev)).unwrap();
}

/// A sparse device file big enough for slot B at offset SLOT_SIZE.
fn sparse_device(path: &Path) {
    let f = std::fs::File::create(path).expect("create device file");
    f.set_len(2 * SLOT_SIZE).expect("set_len");
}

#[test]
fn read_only_target_filesystem_is_a_clear_error() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 111), &BundleOpts::default());
    let Some(mnt) = Tmpfs::mount(&fx.path("ro"), "16m", "read_only_target") else {
        return;
    };
    sparse_device(&fx.path("ro/b.img"));
    assert!(mnt.remount_ro(), "mount -o remount,ro failed");
    assert!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(fx.path("ro/b.img"))
            .is_err(),
        "the remount did not make the file read-only"
    );
    target_b_on(&fx, "ro/b.img");
    let before = fx.snapshot();
    let run = fx.install(&bundle, &[]).fails_with(&["b.img", "read-only"]);
    eprintln!("read-only target: {}", run.stderr.trim());
    assert!(
        run.stderr.contains("slot B") || run.stderr.contains("rootfs.B"),
        "stderr does not name the slot:\n{}",
        run.stderr
    );
    fx.assert_nothing_lost(&before, SlotName::B);
    assert!(fx.slot_bytes(SlotName::B) == before.slots[1]);
    drop(mnt);
}

#[test]
fn full_target_filesystem_fails_cleanly_and_a_later_install_works() {
    let fx = Fixture::new();
    // ~3 MiB of random bytes: incompressible, three times what the tmpfs holds.
    let image = fx.image((3 << 20) + 4321, 121);
    let bundle = fx.bundle(&image, &BundleOpts::default());
    let Some(mnt) = Tmpfs::mount(&fx.path("full"), "1m", "full_target") else {
        return;
    };
    sparse_device(&fx.path("full/b.img"));
    target_b_on(&fx, "full/b.img");
    let before = fx.snapshot();
    let run = fx.install(&bundle, &[]).fails_with(&["no space left"]);
    eprintln!("full target: {}", run.stderr.trim());
    assert!(
        run.stderr.contains("slot B") || run.stderr.contains("b.img"),
        "stderr does not name the slot or its device:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("pipeline stopped"),
        "the reported error is not the cause:\n{}",
        run.stderr
    );
    fx.assert_nothing_lost(&before, SlotName::B);
    assert!(
        matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }),
        "target not left bad: {:?}",
        fx.env()
    );
    // Back to a slot with room: the same bundle installs (the lock was released).
    target_b_on(&fx, "disk.img");
    fx.install(&bundle, &[]).ok();
    assert_eq!(fx.slot_state(SlotName::B), pending_fresh());
    assert!(fx.slot_holds(SlotName::B, &image));
    assert!(fx.slot_bytes(SlotName::A) == before.slots[0]);
    drop(mnt);
}

// ---------------------------------------------------------------------------------
// 4. Config errors through the CLI
// ---------------------------------------------------------------------------------

/// Runs `status` and `install BUNDLE` with `config` and expects both to fail naming
/// every one of `needles`, writing nothing.
fn config_refused(fx: &Fixture, config: &Path, bundle: &Path, needles: &[&str]) {
    let before = fx.snapshot();
    let bundle = bundle.display().to_string();
    for args in [
        &["status"][..],
        &["install", &bundle, "--progress", "none"][..],
    ] {
        let out = fx
            .cmd(args)
            .env("BASCULE_CONFIG", config)
            .output()
            .expect("spawn bascule");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("{args:?}: {}", run.stderr.trim());
        run.fails_with(needles);
    }
    fx.assert_untouched(&before);
}

/// Writes `text` as `name` next to system.toml and returns its path.
fn write_config(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    let path = fx.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_errors_name_the_key_the_file_or_the_slots() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 141), &BundleOpts::default());
    let good = fx.system_toml("disk.img", "disk.img");

    // A typo'd key at top level and in a table.
    let typo = write_config(&fx, "typo.toml", &good.replace("state_dir", "statedir"));
    config_refused(&fx, &typo, &bundle, &["typo.toml", "statedir"]);
    let typo = write_config(&fx, "typo2.toml", &good.replace("attempts", "atempts"));
    config_refused(&fx, &typo, &bundle, &["typo2.toml", "atempts"]);

    // An unknown bootenv backend.
    let backend = write_config(
        &fx,
        "backend.toml",
        &good.replace(r#"backend = "uboot""#, r#"backend = "ubooot""#),
    );
    config_refused(&fx, &backend, &bundle, &["backend.toml", "ubooot"]);

    // Overlapping slots: B starts in the middle of A.
    let half = SLOT_SIZE / 2;
    let overlap = good.replace(
        &format!("offset = {SLOT_SIZE}\n"),
        &format!("offset = {half}\n"),
    );
    assert_ne!(overlap, good);
    let overlap = write_config(&fx, "overlap.toml", &overlap);
    config_refused(
        &fx,
        &overlap,
        &bundle,
        &["overlap.toml", "overlaps", "rootfs.A", "rootfs.B"],
    );

    // No config file at all.
    let missing = fx.path("nowhere/system.toml");
    config_refused(
        &fx,
        &missing,
        &bundle,
        &["nowhere/system.toml", "cannot read config"],
    );

    // The good config still works: nothing above broke the device.
    fx.install(&bundle, &[]).ok();
}

// ---------------------------------------------------------------------------------
// 5. Corrupt boot environment
// ---------------------------------------------------------------------------------

#[test]
fn corrupt_redundant_env_fails_naming_the_file_and_crc() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 151), &BundleOpts::default());
    let env_path = fx.path("uboot.env");
    let copy = |n: usize| n * common::ENV_SIZE as usize;
    // Provisioning wrote one copy; a second commit writes the other, so that both
    // copies hold a valid environment before they are damaged.
    fx.commit_env(&fx.env());
    let mut env = std::fs::read(&env_path).unwrap();
    for n in 0..2 {
        assert_ne!(env[copy(n)..copy(n) + 4], [0; 4], "copy {n} never written");
    }
    // Flip a byte in the variable area (past the CRC and flag bytes) of one copy: the
    // other still serves.
    env[copy(0) + 8] ^= 0x20;
    std::fs::write(&env_path, &env).unwrap();
    fx.run(&["status"]).ok();
    // Then of both.
    env[copy(1) + 8] ^= 0x20;
    std::fs::write(&env_path, &env).unwrap();
    let slots = [fx.slot_bytes(SlotName::A), fx.slot_bytes(SlotName::B)];

    let run = fx.run(&["status"]).fails_with(&["uboot.env", "crc"]);
    eprintln!("corrupt env: {}", run.stderr.trim());
    fx.run(&["status", "--json"])
        .fails_with(&["uboot.env", "crc"]);
    fx.install(&bundle, &[]).fails_with(&["uboot.env", "crc"]);
    fx.install(&bundle, &["--force"])
        .fails_with(&["uboot.env", "crc"]);
    fx.run(&["mark-good"]).fails_with(&["uboot.env", "crc"]);

    assert!(fx.slot_bytes(SlotName::A) == slots[0], "slot A was written");
    assert!(fx.slot_bytes(SlotName::B) == slots[1], "slot B was written");
    assert!(
        std::fs::read(&env_path).unwrap() == env,
        "the corrupt environment was rewritten"
    );
}

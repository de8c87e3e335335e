//! `install --no-activate` then `bascule activate` through the CLI on the file-backed
//! U-Boot device: the slot is written and verified but stays unbootable (status shows
//! it staged), and `activate` marks it pending without writing it; `activate` refuses,
//! leaving the environment as it was, a slot that changed after it was written, a
//! missing record, a slot installed over or revived, another booted slot, a keyring
//! that no longer trusts the bundle's key, a security floor raised above it and an
//! install cancelled by `mark-bad`; a failed `post-install` leaves the slot bad and no
//! staged record.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bascule::slot::{BootScheme, RaucUboot, SlotState};
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture};

const IMAGE_LEN: usize = (96 << 10) + 7;
const RECORD: &str = "state/staged-install";

/// A fixture with a v2 image staged into B by `install --no-activate` while A runs.
fn staged() -> (Fixture, PathBuf) {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 21);
    let bundle = fx.bundle(&image, &BundleOpts::default().version("2.0.0").secver(2));
    let before = fx.snapshot();
    let run = fx.install(&bundle, &["--no-activate"]).ok();
    assert!(run.stdout.contains("stays unbootable"), "{}", run.stdout);
    assert!(fx.slot_holds(SlotName::B, &image), "slot B not written");
    assert_eq!(
        fx.slot_bytes(SlotName::A),
        before.slots[0],
        "booted slot written"
    );
    assert!(fx.path(RECORD).exists(), "no staged record");
    (fx, image)
}

/// The environment file before `activate`: a refusal must leave it byte for byte.
fn refused(fx: &Fixture, needles: &[&str]) {
    let env = std::fs::read(fx.path("uboot.env")).unwrap();
    fx.run(&["activate"]).fails_with(needles);
    assert_eq!(
        std::fs::read(fx.path("uboot.env")).unwrap(),
        env,
        "a refused activate wrote the environment"
    );
}

#[test]
fn no_activate_stages_the_slot_and_activate_makes_it_pending() {
    let (fx, _image) = staged();
    assert!(matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }));
    let status = fx.status_json();
    assert_eq!(status["slots"][1]["staged"], true, "{status}");
    assert_eq!(status["slots"][0]["staged"], false, "{status}");
    let text = fx.run(&["status"]).ok().stdout;
    assert!(text.contains("staged:      slot B"), "{text}");
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::A, "a staged slot booted");

    let run = fx.run(&["activate"]).ok();
    assert!(
        run.stdout.contains("activated 2.0.0 in slot B"),
        "{}",
        run.stdout
    );
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    assert_eq!(fx.status_json()["slots"][1]["staged"], false);
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B, "the next boot did not try B");
    fx.run(&["mark-good"]).ok();
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    // Once activated, the record no longer matches a staged slot.
    fx.set_cmdline("bascule.slot=A\n");
    refused(&fx, &["activate refused", "slot B is not staged"]);
}

#[test]
fn activate_refuses_a_slot_that_changed_after_it_was_written() {
    let (fx, _image) = staged();
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.path("disk.img"))
        .unwrap();
    let at = fx.slot_size + 70_000;
    let mut byte = [0u8];
    disk.seek(SeekFrom::Start(at)).unwrap();
    disk.read_exact(&mut byte).unwrap();
    disk.seek(SeekFrom::Start(at)).unwrap();
    disk.write_all(&[byte[0] ^ 0x01]).unwrap();
    drop(disk);
    refused(
        &fx,
        &[
            "slot rootfs.B no longer holds the staged release",
            "image 0 chunk 1 (offset 65536): SHA-256 does not match",
            "install the bundle again",
        ],
    );
    assert!(matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }));
}

#[test]
fn activate_refuses_without_a_record() {
    let fx = Fixture::new();
    refused(&fx, &["nothing to activate", "staged-install"]);
    let (fx, _image) = staged();
    std::fs::remove_file(fx.path(RECORD)).unwrap();
    refused(&fx, &["nothing to activate", "--no-activate first"]);
}

#[test]
fn activate_refuses_a_slot_installed_over() {
    let (fx, _image) = staged();
    let v3 = fx.bundle(
        &fx.image(IMAGE_LEN, 22),
        &BundleOpts::default().version("3.0.0"),
    );
    fx.install(&v3, &[]).ok();
    refused(&fx, &["slot B is not staged", "installed over"]);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

#[test]
fn activate_refuses_a_revived_slot() {
    let (fx, _image) = staged();
    let mut vars = fx.env();
    RaucUboot.set_primary(&mut vars, SlotName::B, 3);
    fx.commit_env(&vars);
    refused(&fx, &["slot B was staged but is now", "made it bootable"]);
}

#[test]
fn activate_refuses_when_another_slot_runs() {
    let (fx, _image) = staged();
    fx.set_cmdline("console=ttyS0 bascule.slot=B\n");
    refused(&fx, &["written while slot A ran, but slot B runs now"]);
}

#[test]
fn activate_refuses_when_the_keyring_no_longer_trusts_the_key() {
    let (fx, _image) = staged();
    fx.keygen(&fx.path("signing/other"));
    std::fs::remove_file(fx.path("keyring/release.pub")).unwrap();
    std::fs::copy(fx.path("signing/other.pub"), fx.path("keyring/other.pub")).unwrap();
    refused(
        &fx,
        &[
            "no longer verifies with this device's keyring",
            "not in the keyring",
        ],
    );
}

#[test]
fn activate_refuses_a_release_now_below_the_security_floor() {
    let (fx, _image) = staged();
    std::fs::write(fx.path("state/security-floor"), "5\n").unwrap();
    refused(
        &fx,
        &["activate refused", "below this device's security floor 5"],
    );
}

#[test]
fn a_failed_post_install_hook_with_no_activate_leaves_the_slot_bad_and_no_record() {
    let fx = Fixture::new();
    let hook = fx.path("post.sh");
    std::fs::write(&hook, "#!/bin/sh\necho 'migration failed'; exit 3\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "{}\n[hooks]\npost_install = [{:?}]\n",
        fx.system_toml("disk.img", "disk.img"),
        hook.display().to_string()
    );
    std::fs::write(fx.config(), config).unwrap();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 23),
        &BundleOpts::default().version("2.0.0"),
    );
    fx.install(&bundle, &["--no-activate"]).fails_with(&[
        "slot B was written and verified, but it stays unbootable",
        "exit status: 3",
    ]);
    assert!(matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }));
    assert!(!fx.path(RECORD).exists(), "a record of a failed install");
    assert_eq!(fx.env().get_str("BASCULE_STAGED"), None);
    refused(&fx, &["nothing to activate"]);
}

#[test]
fn mark_bad_cancels_a_staged_install() {
    let (fx, _image) = staged();
    let run = fx.run(&["mark-bad", "B"]).ok();
    assert!(run.stdout.contains('B'), "{}", run.stdout);
    assert_eq!(fx.status_json()["slots"][1]["staged"], false);
    refused(&fx, &["slot B is not staged"]);
}

//! Every way an install must be refused: damaged or truncated bundles, the wrong key,
//! hardware or version, a booted or missing target. Each test checks the exit code,
//! that stderr names the problem, and that nothing was lost (the booted slot is
//! byte-identical, the target is never left pending). A second install at once and
//! interrupted installs are in `interrupted.rs`; mark-good and mark-bad in
//! `slot_commands.rs`.
mod common;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{payload_offset, BundleOpts, Fixture, HEADER_LEN, SIG_BLOCK_END};

const IMAGE_LEN: usize = (512 << 10) + 777;

/// A fixture and the bytes of a valid bundle (16 KiB chunks) of a random image for it.
fn setup(compress: &'static str) -> (Fixture, Vec<u8>) {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 21);
    let bundle = fx.bundle(
        &image,
        &BundleOpts::default()
            .compress(compress)
            .chunk_size(16 << 10),
    );
    let bytes = std::fs::read(bundle).unwrap();
    (fx, bytes)
}

/// Installs `bytes` and expects a refusal naming all of `needles`; then checks that
/// nothing was lost.
fn refused(fx: &Fixture, name: &str, bytes: &[u8], needles: &[&str]) -> common::Run {
    let before = fx.snapshot();
    let path = fx.write_bundle(name, bytes);
    let run = fx.install(&path, &[]).fails_with(needles);
    fx.assert_nothing_lost(&before, SlotName::B);
    run
}

/// Like [`refused`], and also nothing at all was written (refused before any write).
fn refused_untouched(fx: &Fixture, name: &str, bytes: &[u8], needles: &[&str]) {
    let before = fx.snapshot();
    let path = fx.write_bundle(name, bytes);
    fx.install(&path, &[]).fails_with(needles);
    fx.assert_nothing_lost(&before, SlotName::B);
    fx.assert_untouched(&before);
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= mask;
    out
}

#[test]
fn flipped_payload_bit_is_refused_and_target_left_bad() {
    for compress in ["zstd", "xz", "none"] {
        let (fx, bytes) = setup(compress);
        let payload = payload_offset(&bytes);
        for at in [
            payload,
            payload + (bytes.len() - payload) / 2,
            bytes.len() - 1,
        ] {
            let bad = flipped(&bytes, at, 0x10);
            let run = refused(&fx, "payload.bundle", &bad, &["chunk"]);
            let err = run.stderr.to_lowercase();
            assert!(
                err.contains("sha-256") || err.contains("decompress"),
                "{compress} @{at}: {}",
                run.stderr
            );
            assert!(
                matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }),
                "{compress} @{at}: target not marked bad"
            );
        }
    }
}

/// Every `--verify` mode (the default one pass, and `full` with its second,
/// whole-image pass) refuses a flipped payload bit before the slot is marked pending,
/// naming the chunk, and still installs a good bundle.
#[test]
fn every_verify_mode_refuses_a_flipped_payload_bit() {
    for (compress, mode) in [
        ("zstd", "chunks"),
        ("none", "chunks"),
        ("zstd", "full"),
        ("none", "full"),
    ] {
        let (fx, bytes) = setup(compress);
        let payload = payload_offset(&bytes);
        let bad = flipped(&bytes, payload + (bytes.len() - payload) / 2, 0x01);
        let before = fx.snapshot();
        let path = fx.write_bundle("payload.bundle", &bad);
        let run = fx
            .install(&path, &["--verify", mode])
            .fails_with(&["chunk"]);
        fx.assert_nothing_lost(&before, SlotName::B);
        assert!(run.stderr.to_lowercase().contains("sha-256") || run.stderr.contains("decompress"));
        let good = fx.write_bundle("good.bundle", &bytes);
        fx.install(&good, &["--verify", mode]).ok();
        assert!(
            matches!(fx.slot_state(SlotName::B), SlotState::Pending { .. }),
            "{compress}, --verify {mode}"
        );
    }
}

#[test]
fn flipped_manifest_bit_fails_the_signature() {
    let (fx, bytes) = setup("zstd");
    let len = common::manifest_len(&bytes);
    for at in [
        SIG_BLOCK_END,
        SIG_BLOCK_END + len / 2,
        SIG_BLOCK_END + len - 1,
    ] {
        refused_untouched(
            &fx,
            "manifest.bundle",
            &flipped(&bytes, at, 0x01),
            &["signature check failed", "modified"],
        );
    }
}

#[test]
fn flipped_signature_bit_fails_the_signature() {
    let (fx, bytes) = setup("zstd");
    for at in [HEADER_LEN + 8, HEADER_LEN + 40, SIG_BLOCK_END - 1] {
        refused_untouched(
            &fx,
            "sig.bundle",
            &flipped(&bytes, at, 0x80),
            &["signature check failed", "modified"],
        );
    }
    // The key id is part of the signature block: a flipped bit names an unknown key.
    refused_untouched(
        &fx,
        "keyid.bundle",
        &flipped(&bytes, HEADER_LEN, 0x01),
        &["not in the keyring"],
    );
}

#[test]
fn flipped_header_bit_is_refused_naming_the_field() {
    let (fx, bytes) = setup("zstd");
    for at in 0..HEADER_LEN {
        let expected: &[&str] = match at {
            0..=7 => &["magic"],
            8 | 9 => &["format version"],
            10 | 11 => &["features"],
            // manifest_len: a wrong length reads the wrong bytes as manifest.
            12..=14 => &["signature check failed"],
            15 => &["manifest length", "exceeds the limit"],
            16 | 17 => &["signature block length"],
            _ => &["reserved", &format!("offset {at}")],
        };
        refused_untouched(&fx, "header.bundle", &flipped(&bytes, at, 0x01), expected);
    }
}

#[test]
fn truncated_bundle_is_refused_at_every_section_boundary() {
    let (fx, bytes) = setup("zstd");
    let payload = payload_offset(&bytes);
    let cases: [(usize, &str); 7] = [
        (0, "truncated in the header"),
        (HEADER_LEN / 2, "truncated in the header"),
        (HEADER_LEN, "truncated in the signature block"),
        (SIG_BLOCK_END, "truncated in the manifest"),
        (payload - 1, "truncated in the manifest"),
        (payload, "truncated in the payload"),
        (
            payload + (bytes.len() - payload) / 2,
            "truncated in the payload",
        ),
    ];
    for (len, needle) in cases {
        let run = refused(&fx, "truncated.bundle", &bytes[..len], &[needle]);
        if len < payload {
            assert_eq!(
                fx.slot_state(SlotName::B),
                SlotState::Bad {
                    reason: bascule::slot::BadReason::NotInBootOrder
                },
                "{}",
                run.stderr
            );
        }
    }
    // Mid-payload truncation starts writing: the target must be left bad.
    assert!(matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }));
    refused(
        &fx,
        "short-by-one.bundle",
        &bytes[..bytes.len() - 1],
        &["truncated in the payload"],
    );
}

#[test]
fn trailing_data_is_refused_and_target_not_pending() {
    let (fx, mut bytes) = setup("none");
    bytes.push(0);
    refused(
        &fx,
        "trailing.bundle",
        &bytes,
        &["data after the end of the payload"],
    );
}

#[test]
fn bundle_signed_by_an_unknown_key_is_refused() {
    let fx = Fixture::new();
    let other = fx.path("signing/other");
    fx.keygen(&other);
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 22),
        &BundleOpts::default().key(&other.with_extension("key")),
    );
    let bytes = std::fs::read(&bundle).unwrap();
    refused_untouched(
        &fx,
        "other-key.bundle",
        &bytes,
        &["signature check failed", "not in the keyring"],
    );
    // bundle info with the device keyring refuses too; without it, says not checked.
    let keyring = fx.path("keyring").display().to_string();
    fx.run(&[
        "bundle",
        "info",
        "--keyring",
        &keyring,
        &bundle.display().to_string(),
    ])
    .fails_with(&["not in the keyring"]);
    let info = fx
        .run(&["bundle", "info", &bundle.display().to_string()])
        .ok();
    assert!(info.stdout.contains("NOT checked"), "{}", info.stdout);
}

#[test]
fn wrong_compatible_is_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 23),
        &BundleOpts::default().compatible("some-other-board"),
    );
    refused_untouched(
        &fx,
        "compat.bundle",
        &std::fs::read(bundle).unwrap(),
        &["compatible", "some-other-board"],
    );
}

#[test]
fn downgrade_is_refused_unless_allowed() {
    let fx = Fixture::new();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 24),
        &BundleOpts::default().version("0.9.0"),
    );
    refused_untouched(
        &fx,
        "old.bundle",
        &std::fs::read(&bundle).unwrap(),
        &["downgrade", "0.9.0", "1.0.0"],
    );
    fx.install(&bundle, &["--allow-downgrade"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn security_version_below_the_floor_is_refused_even_with_allow_downgrade() {
    let fx = Fixture::new();
    fx.install_boot_confirm(
        IMAGE_LEN,
        25,
        &BundleOpts::default().version("2.0.0").secver(2),
    );
    assert_eq!(
        fx.status_json()["security_floor"],
        2,
        "mark-good did not raise the floor"
    );
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 26),
        &BundleOpts::default().version("3.0.0").secver(1),
    );
    let before = fx.snapshot();
    for extra in [&[][..], &["--allow-downgrade"][..]] {
        fx.install(&bundle, extra)
            .fails_with(&["security version 1", "security floor 2"]);
        fx.assert_nothing_lost(&before, SlotName::A);
        fx.assert_untouched(&before);
    }
    // At the floor is fine.
    let ok = fx.bundle(
        &fx.image(IMAGE_LEN, 27),
        &BundleOpts::default().version("3.0.0").secver(2),
    );
    fx.install(&ok, &[]).ok();
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn image_larger_than_the_slot_is_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(
        &fx.image(common::SLOT_SIZE as usize + 1, 28),
        &BundleOpts::default(),
    );
    refused_untouched(
        &fx,
        "big.bundle",
        &std::fs::read(bundle).unwrap(),
        &["holds only", &common::SLOT_SIZE.to_string()],
    );
}

#[test]
fn image_exactly_the_slot_size_installs() {
    let fx = Fixture::new();
    let image = fx.image(common::SLOT_SIZE as usize, 40);
    let bundle = fx.bundle(&image, &BundleOpts::default().compress("none"));
    fx.install(&bundle, &[]).ok();
    assert!(fx.slot_bytes(SlotName::B) == std::fs::read(&image).unwrap());
}

#[test]
fn installing_into_the_booted_slot_is_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 29), &BundleOpts::default());
    let before = fx.snapshot();
    fx.install(&bundle, &["--slot", "A"])
        .fails_with(&["booted slot"]);
    fx.install(&bundle, &["--slot", "A", "--force"])
        .fails_with(&["booted slot"]);
    fx.assert_untouched(&before);
    // Naming the other slot explicitly works.
    fx.install(&bundle, &["--slot", "B"]).ok();
}

/// Slots on their own devices: a command line whose `root=` is the target's device
/// while it names the other slot as booted is a contradiction, and is refused.
#[test]
fn root_device_of_the_target_on_the_cmdline_is_refused() {
    let fx = Fixture::new();
    for name in ["a.img", "b.img"] {
        let f = std::fs::File::create(fx.path(name)).unwrap();
        f.set_len(2 * common::SLOT_SIZE).unwrap();
    }
    std::fs::write(fx.config(), fx.system_toml("a.img", "b.img")).unwrap();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 30), &BundleOpts::default());
    let b_dev = fx.path("b.img").display().to_string();
    fx.set_cmdline(&format!("console=ttyS0 root={b_dev} bascule.slot=A\n"));
    let before = fx.snapshot();
    let run = fx
        .install(&bundle, &[])
        .fails_with(&["root=", "slot rootfs.B"]);
    assert!(run.stderr.contains(&b_dev), "{}", run.stderr);
    fx.assert_untouched(&before);
    // root= naming the booted slot's device is consistent: the install goes ahead.
    let a_dev = fx.path("a.img").display().to_string();
    fx.set_cmdline(&format!("console=ttyS0 root={a_dev} bascule.slot=A\n"));
    fx.install(&bundle, &[]).ok();
}

#[test]
fn no_booted_slot_on_the_cmdline_is_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 30), &BundleOpts::default());
    let before = fx.snapshot();
    fx.set_cmdline("console=ttyS0 root=/dev/mmcblk0p2\n");
    fx.install(&bundle, &[])
        .fails_with(&["names no booted slot"]);
    fx.install(&bundle, &["--slot", "B"])
        .fails_with(&["names no booted slot"]);
    fx.set_cmdline("console=ttyS0 bascule.slot=A rauc.slot=B\n");
    fx.install(&bundle, &[])
        .fails_with(&["two different booted slots"]);
    fx.set_cmdline("console=ttyS0 bascule.slot=A\n");
    fx.assert_untouched(&before);
}

#[test]
fn install_while_the_booted_slot_is_pending_needs_force() {
    let fx = Fixture::new();
    let first = fx.bundle(
        &fx.image(IMAGE_LEN, 31),
        &BundleOpts::default().version("2.0.0"),
    );
    fx.install(&first, &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    let second = fx.bundle(
        &fx.image(IMAGE_LEN, 32),
        &BundleOpts::default().version("3.0.0"),
    );
    let before = fx.snapshot();
    fx.install(&second, &[])
        .fails_with(&["still pending", "--force"]);
    fx.assert_untouched(&before);
    fx.install(&second, &["--force"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
    assert!(
        fx.slot_bytes(SlotName::B) == before.slots[1],
        "booted slot B was modified"
    );
}

#[test]
fn missing_target_device_is_refused() {
    let fx = Fixture::new();
    std::fs::write(fx.config(), fx.system_toml("disk.img", "missing-b.img")).unwrap();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 33), &BundleOpts::default());
    let before = fx.snapshot();
    fx.install(&bundle, &[]).fails_with(&["missing-b.img"]);
    fx.assert_nothing_lost(&before, SlotName::B);
    assert!(
        !fx.path("missing-b.img").exists(),
        "install created the missing target device"
    );
}

#[test]
fn missing_bundle_file_is_a_clear_error() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    fx.install(&fx.path("bundles/nope.bundle"), &[])
        .fails_with(&["cannot open bundle", "nope.bundle"]);
    fx.assert_untouched(&before);
}

#[test]
fn empty_or_broken_keyring_is_refused_naming_it() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 42), &BundleOpts::default());
    let before = fx.snapshot();
    let public = fx.path("keyring/release.pub");
    let saved = std::fs::read(&public).unwrap();
    std::fs::remove_file(&public).unwrap();
    fx.install(&bundle, &[])
        .fails_with(&["no public keys", "keyring"]);
    std::fs::write(&public, b"not a key\n").unwrap();
    fx.install(&bundle, &[]).fails_with(&["release.pub"]);
    fx.assert_untouched(&before);
    std::fs::write(&public, saved).unwrap();
    fx.install(&bundle, &[]).ok();
}

#[test]
fn empty_image_never_makes_a_slot_pending() {
    let fx = Fixture::new();
    let image = fx.path("images/empty.img");
    std::fs::write(&image, b"").unwrap();
    let key = fx.key.display().to_string();
    let out = fx.path("bundles/empty.bundle");
    let create = fx.run(&[
        "bundle",
        "create",
        "--key",
        &key,
        "--version",
        "2.0.0",
        "--compatible",
        common::COMPATIBLE,
        "--image",
        &format!("rootfs={}", image.display()),
        "--out",
        &out.display().to_string(),
    ]);
    if create.code != 0 {
        create.fails_with(&["empty"]);
        return;
    }
    let before = fx.snapshot();
    fx.install(&out, &[]).fails_with(&["empty"]);
    fx.assert_nothing_lost(&before, SlotName::B);
}

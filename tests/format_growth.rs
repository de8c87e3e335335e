//! How the bundle format grows, through the CLI: a bundle from the future (a
//! required-feature bit or a format version this bascule does not know, signed with the
//! device's own key) is refused by `install` and `bundle info`, naming what is lacking,
//! with nothing written; and the first feature-gated field, `min_from_version`, is
//! written by `bundle create`, shown by `bundle info` and enforced by `install`, whose
//! refusal names the version to install first.
mod common;

use bascule::bundle::{Manifest, FEATURE_MIN_FROM_VERSION};
use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture, SIG_BLOCK_END};

const IMAGE_LEN: usize = 300_000;

/// A fixture and the bytes of a valid bundle made with `opts`.
fn setup(opts: &BundleOpts) -> (Fixture, Vec<u8>) {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 7);
    let bytes = std::fs::read(fx.bundle(&image, opts)).unwrap();
    (fx, bytes)
}

fn manifest_of(bundle: &[u8]) -> Manifest {
    let len = common::manifest_len(bundle);
    Manifest::decode(&bundle[SIG_BLOCK_END..SIG_BLOCK_END + len]).unwrap()
}

fn features_of(bundle: &[u8]) -> u16 {
    u16::from_le_bytes([bundle[10], bundle[11]])
}

/// `install` and `bundle info` (with and without the keyring) refuse `bytes`, naming
/// all of `needles`, exit non-zero, and write nothing.
fn refused_everywhere(fx: &Fixture, bytes: &[u8], needles: &[&str]) {
    let before = fx.snapshot();
    let path = fx.write_bundle("future.bundle", bytes);
    let path_text = path.display().to_string();
    let keyring = fx.path("keyring").display().to_string();
    fx.install(&path, &[]).fails_with(needles);
    fx.install(&path, &["--force", "--allow-downgrade"])
        .fails_with(needles);
    fx.run(&["bundle", "info", &path_text]).fails_with(needles);
    fx.run(&["bundle", "info", "--keyring", &keyring, &path_text])
        .fails_with(needles);
    fx.assert_nothing_lost(&before, SlotName::B);
    fx.assert_untouched(&before);
}

/// The re-signing itself is sound: the same manifest re-signed installs. So the
/// refusals below come from what the bundles say, not from a broken signature.
#[test]
fn a_resigned_bundle_of_today_installs() {
    let (fx, bytes) = setup(&BundleOpts::default());
    let manifest = manifest_of(&bytes).encode();
    let again = fx.resigned(&bytes, 1, 0, &manifest);
    let path = fx.write_bundle("again.bundle", &again);
    fx.install(&path, &[]).ok();
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

/// A bundle from the future: a required-feature bit (5) this bascule does not know,
/// with the field it gates appended to the signed manifest.
#[test]
fn an_unknown_required_feature_bit_is_refused_by_number() {
    let (fx, bytes) = setup(&BundleOpts::default());
    let mut manifest = manifest_of(&bytes);
    manifest.required_features = 1 << 5;
    let mut encoded = manifest.encode();
    encoded.extend_from_slice(b"\x0bfuture data");
    let future = fx.resigned(&bytes, 1, 1 << 5, &encoded);
    let version = bascule::bundle::READER_VERSION;
    refused_everywhere(
        &fx,
        &future,
        &[
            "required feature bit 5 (0x0020)",
            &format!("this bascule ({version}) does not know"),
            "it knows `xz` (bit 0), `min-from-version` (bit 1)",
            "install a newer bascule first",
        ],
    );
}

/// Known bits beside unknown ones: only the unknown are named, each by number.
#[test]
fn only_the_unknown_bits_are_named() {
    let (fx, bytes) = setup(&BundleOpts::default().compress("xz"));
    let mut manifest = manifest_of(&bytes);
    manifest.required_features |= (1 << 9) | (1 << 15);
    let future = fx.resigned(&bytes, 1, manifest.required_features, &manifest.encode());
    refused_everywhere(&fx, &future, &["required feature bits 9, 15 (0x8200)"]);
}

/// A bundle from the future: format version 2.
#[test]
fn a_newer_format_version_is_refused_by_number() {
    let (fx, bytes) = setup(&BundleOpts::default());
    let mut manifest = manifest_of(&bytes);
    manifest.format = 2;
    let future = fx.resigned(&bytes, 2, 0, &manifest.encode());
    refused_everywhere(
        &fx,
        &future,
        &[
            "bundle format version 2 is not supported",
            "reads version 1 only",
        ],
    );
}

#[test]
fn bundle_create_sets_the_min_from_version_bit_exactly_when_the_field_is_given() {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 8);
    let plain = std::fs::read(fx.bundle(&image, &BundleOpts::default())).unwrap();
    assert_eq!(features_of(&plain), 0);
    assert_eq!(manifest_of(&plain).min_from_version, None);
    let opts = BundleOpts::default().version("3.0.0").min_from("2.0.0");
    let gated = std::fs::read(fx.bundle(&image, &opts)).unwrap();
    assert_eq!(features_of(&gated), FEATURE_MIN_FROM_VERSION);
    assert_eq!(
        manifest_of(&gated).min_from_version.as_deref(),
        Some("2.0.0")
    );
    let xz = std::fs::read(fx.bundle(&image, &opts.clone().compress("xz"))).unwrap();
    assert_eq!(features_of(&xz), FEATURE_MIN_FROM_VERSION | 1);
}

#[test]
fn bundle_create_refuses_a_min_from_version_newer_than_the_release() {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 9);
    let out = fx.path("bundles/bad.bundle");
    let opts = BundleOpts::default().version("2.0.0").min_from("2.1.0");
    let output = fx.bundle_cmd(&image, &opts, &out).output().unwrap();
    common::Run::from_output(output)
        .fails_with(&["min_from_version 2.1.0 is newer than the bundle's version 2.0.0"]);
    assert!(!out.exists(), "a refused bundle was written");
}

#[test]
fn bundle_info_shows_min_from_version_and_the_features() {
    let (fx, bytes) = setup(&BundleOpts::default().version("3.0.0").min_from("2.0.0"));
    let path = fx.write_bundle("gated.bundle", &bytes);
    let path = path.display().to_string();
    let text = fx.run(&["bundle", "info", &path]).ok().stdout;
    assert!(
        text.contains("upgrades from:    2.0.0 or newer (min_from_version)"),
        "{text}"
    );
    assert!(
        text.contains("features needed:  `min-from-version` (bit 1)"),
        "{text}"
    );
    let json = fx.run(&["bundle", "info", "--json", &path]).ok().stdout;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["min_from_version"], "2.0.0");
    assert_eq!(doc["required_features"], 2);

    let (fx, bytes) = setup(&BundleOpts::default());
    let path = fx
        .write_bundle("plain.bundle", &bytes)
        .display()
        .to_string();
    let text = fx.run(&["bundle", "info", &path]).ok().stdout;
    assert!(text.contains("upgrades from:    any version"), "{text}");
    assert!(text.contains("features needed:  none"), "{text}");
    let json = fx.run(&["bundle", "info", "--json", &path]).ok().stdout;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(doc["min_from_version"].is_null(), "{json}");
}

/// The device runs 1.0.0; bundle 3.0.0 needs 2.0.0 first: refused, naming 2.0.0,
/// nothing written, even with --force. After 2.0.0 is installed and confirmed, 3.0.0
/// installs.
#[test]
fn min_from_version_is_enforced_and_names_the_version_needed_first() {
    let (fx, bytes) = setup(&BundleOpts::default().version("3.0.0").min_from("2.0.0"));
    let path = fx.write_bundle("3.0.0.bundle", &bytes);
    let needles = [
        "bundle 3.0.0 upgrades only from 2.0.0 or newer; this device runs 1.0.0: \
         install 2.0.0 (or newer) first",
    ];
    for extra in [&[][..], &["--force"], &["--allow-downgrade"]] {
        let before = fx.snapshot();
        fx.install(&path, extra).fails_with(&needles);
        fx.assert_untouched(&before);
    }
    fx.install_boot_confirm(IMAGE_LEN, 10, &BundleOpts::default().version("2.0.0"));
    fx.install(&path, &[]).ok();
    assert!(matches!(
        fx.slot_state(SlotName::A),
        SlotState::Pending { .. }
    ));
    assert!(fx.slot_holds(
        SlotName::A,
        &fx.path(&format!("images/image-7-{IMAGE_LEN}.img"))
    ));
}

/// No version recorded for the booted slot: a bundle with `min_from_version` is
/// refused (nothing shows the device went through the version it needs), unless the
/// operator vouches with --force.
#[test]
fn an_unknown_running_version_is_refused_unless_forced() {
    let (fx, bytes) = setup(&BundleOpts::default().version("3.0.0").min_from("2.0.0"));
    let mut env = fx.env();
    assert!(env.remove("BASCULE_A_VERSION").is_some());
    fx.commit_env(&env);
    let path = fx.write_bundle("3.0.0.bundle", &bytes);
    let before = fx.snapshot();
    fx.install(&path, &[]).fails_with(&[
        "running version of slot A is unknown (none recorded)",
        "install 2.0.0 (or newer) first, or pass --force",
    ]);
    fx.assert_untouched(&before);
    fx.install(&path, &["--force"]).ok();
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

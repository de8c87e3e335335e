//! The happy path through the CLI: keygen → bundle create → bundle info → install →
//! status → simulate-boot → mark-good, for each compression; dry runs, stdin and JSON
//! progress.
mod common;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture};

/// Not a multiple of the 64 KiB chunk size, so the last chunk is short.
const IMAGE_LEN: usize = (1 << 20) + 12_345;

fn roundtrip(compress: &'static str) {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 7);
    let bundle = fx.bundle(&image, &BundleOpts::default().compress(compress));
    let a_before = fx.slot_bytes(SlotName::A);

    let info = fx
        .run(&["bundle", "info", &bundle.display().to_string()])
        .ok();
    assert!(info.stdout.contains("NOT checked"), "{}", info.stdout);
    assert!(
        info.stdout.contains("version:          2.0.0"),
        "{}",
        info.stdout
    );
    assert!(
        info.stdout.contains(&format!("compression {compress}")),
        "{}",
        info.stdout
    );
    let keyring = fx.path("keyring").display().to_string();
    let info = fx
        .run(&[
            "bundle",
            "info",
            "--keyring",
            &keyring,
            &bundle.display().to_string(),
        ])
        .ok();
    assert!(
        info.stdout.contains("signature:        verified"),
        "{}",
        info.stdout
    );
    let info = fx
        .run(&[
            "bundle",
            "info",
            "--keyring",
            &keyring,
            "--json",
            &bundle.display().to_string(),
        ])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&info.stdout).expect("info --json");
    assert_eq!(doc["signature"], "verified");
    assert_eq!(doc["images"][0]["size"], IMAGE_LEN as u64);
    assert_eq!(
        doc["images"][0]["chunks"],
        IMAGE_LEN.div_ceil(64 << 10) as u64
    );
    assert_eq!(
        doc["images"][0]["sha256"],
        common::sha256_hex(&std::fs::read(&image).unwrap())
    );

    let run = fx.install(&bundle, &[]).ok();
    assert!(run.stdout.contains("slot B is pending"), "{}", run.stdout);
    let written = fx.slot_bytes(SlotName::B);
    assert!(
        written[..IMAGE_LEN] == std::fs::read(&image).unwrap()[..],
        "slot B does not hold the image"
    );
    assert!(
        fx.slot_bytes(SlotName::A) == a_before,
        "booted slot A was modified"
    );

    let status = fx.status_json();
    assert_eq!(status["booted"], "A");
    assert_eq!(status["slots"][1]["state"], "pending");
    assert_eq!(status["slots"][1]["tries_left"], common::ATTEMPTS as u64);
    assert_eq!(status["slots"][1]["version"], "2.0.0");
    assert_eq!(status["slots"][1]["primary"], true);
    assert_eq!(status["slots"][0]["state"], "good");

    let boot = fx.run(&["simulate-boot"]).ok();
    assert!(boot.stdout.contains("booting slot B"), "{}", boot.stdout);
    assert_eq!(fx.booted(), SlotName::B);
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS - 1
        }
    );

    let good = fx.run(&["mark-good"]).ok();
    assert!(
        good.stdout.contains("slot B marked good"),
        "{}",
        good.stdout
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    assert!(fx.boot_state().pending.is_empty());

    let env_file = std::fs::read(fx.path("uboot.env")).unwrap();
    let again = fx.run(&["mark-good"]).ok();
    assert!(again.stdout.contains("already good"), "{}", again.stdout);
    assert!(
        std::fs::read(fx.path("uboot.env")).unwrap() == env_file,
        "second mark-good wrote the env"
    );
}

#[test]
fn zstd_bundle_installs_boots_and_confirms() {
    roundtrip("zstd");
}

#[test]
fn xz_bundle_installs_boots_and_confirms() {
    roundtrip("xz");
}

#[test]
fn uncompressed_bundle_installs_boots_and_confirms() {
    roundtrip("none");
}

#[test]
fn dry_run_writes_nothing() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 8), &BundleOpts::default());
    let before = fx.snapshot();
    let run = fx.install(&bundle, &["--dry-run"]).ok();
    assert!(run.stdout.contains("dry run"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing written"), "{}", run.stdout);
    fx.assert_untouched(&before);
}

#[test]
fn dry_run_still_verifies_the_payload() {
    let fx = Fixture::new();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 9),
        &BundleOpts::default().compress("none"),
    );
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    let bad = fx.write_bundle("flipped.bundle", &bytes);
    let before = fx.snapshot();
    fx.install(&bad, &["--dry-run"])
        .fails_with(&["chunk", "sha-256"]);
    fx.assert_untouched(&before);
}

#[test]
fn install_from_stdin() {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 10);
    let bundle = std::fs::read(fx.bundle(&image, &BundleOpts::default())).unwrap();
    let a_before = fx.slot_bytes(SlotName::A);
    fx.run_stdin(&["install", "-", "--progress", "none"], &bundle)
        .ok();
    assert!(
        fx.slot_holds(SlotName::B, &image),
        "slot B does not hold the image"
    );
    assert!(
        fx.slot_bytes(SlotName::A) == a_before,
        "booted slot A was modified"
    );
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn json_progress_lines_parse() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 11), &BundleOpts::default());
    let run = fx
        .run(&[
            "install",
            &bundle.display().to_string(),
            "--progress",
            "json",
        ])
        .ok();
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let progress: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v.get("phase").is_some()).collect();
    assert!(
        progress.len() >= 2,
        "expected start and done lines:\n{}",
        run.stdout
    );
    let mut last_done = 0;
    for p in &progress {
        assert_eq!(p["phase"], "write", "{p}");
        assert_eq!(p["bytes_total"], IMAGE_LEN as u64, "{p}");
        let done = p["bytes_done"].as_u64().expect("bytes_done is a number");
        assert!(
            done >= last_done && done <= IMAGE_LEN as u64,
            "bytes_done went {last_done} -> {done}"
        );
        last_done = done;
    }
    assert_eq!(
        last_done, IMAGE_LEN as u64,
        "progress never reached the total"
    );
    let last = lines.last().expect("some output");
    assert_eq!(last["event"], "installed", "{last}");
    assert_eq!(last["slot"], "B");
    assert_eq!(last["bytes"], IMAGE_LEN as u64);
}

#[test]
fn second_install_replaces_the_pending_slot() {
    let fx = Fixture::new();
    let first = fx.bundle(&fx.image(IMAGE_LEN, 12), &BundleOpts::default());
    let image = fx.image(IMAGE_LEN - 1000, 13);
    let second = fx.bundle(&image, &BundleOpts::default().version("2.0.1"));
    fx.install(&first, &[]).ok();
    fx.install(&second, &[]).ok();
    assert!(
        fx.slot_holds(SlotName::B, &image),
        "slot B does not hold the second image"
    );
    let st = fx.boot_state();
    assert_eq!(st.slot(SlotName::B).version.as_deref(), Some("2.0.1"));
    assert_eq!(
        st.slot(SlotName::B).state,
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn unconfirmed_slot_rolls_back_after_its_tries() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 14), &BundleOpts::default());
    let a_before = fx.slot_bytes(SlotName::A);
    fx.install(&bundle, &[]).ok();
    for _ in 0..common::ATTEMPTS {
        let boot = fx.run(&["simulate-boot"]).ok();
        assert!(boot.stdout.contains("booting slot B"), "{}", boot.stdout);
    }
    let boot = fx.run(&["simulate-boot"]).ok();
    assert!(
        boot.stdout.contains("booting slot A"),
        "no rollback: {}",
        boot.stdout
    );
    assert_eq!(fx.booted(), SlotName::A);
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Bad {
            reason: bascule::slot::BadReason::TriesExhausted
        }
    );
    fx.run(&["mark-good"]).ok();
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
    assert!(
        fx.slot_bytes(SlotName::A) == a_before,
        "slot A was modified"
    );
    let status = fx.status_json();
    assert_eq!(status["slots"][1]["reason"], "tries_exhausted");
    // The next install into B is allowed again.
    fx.install(&bundle, &[]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn json_progress_stays_parseable_when_the_install_fails() {
    let fx = Fixture::new();
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 15),
        &BundleOpts::default().compress("none"),
    );
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x40;
    let bad = fx.write_bundle("late-flip.bundle", &bytes);
    let run = fx
        .run(&["install", &bad.display().to_string(), "--progress", "json"])
        .fails_with(&["chunk"]);
    for line in run.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert_ne!(
            v["event"], "installed",
            "failed install reported success: {line}"
        );
    }
    assert!(!matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

/// With `SOURCE_DATE_EPOCH` set, the same inputs make the same bundle, byte for byte,
/// whatever order the chunk-compressing threads finish in.
#[test]
fn bundles_are_reproducible_with_source_date_epoch() {
    let fx = Fixture::new();
    let image = fx.image(IMAGE_LEN, 3);
    for compress in ["none", "zstd", "xz"] {
        let opts = BundleOpts::default().compress(compress);
        let create = |out: &str| {
            let out = fx.path(out);
            let run = fx
                .bundle_cmd(&image, &opts, &out)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .expect("spawn bascule");
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            std::fs::read(out).unwrap()
        };
        let (first, second) = (create("first.bundle"), create("second.bundle"));
        assert!(first == second, "{compress}: two builds differ");
        let info = fx
            .run(&[
                "bundle",
                "info",
                "--json",
                &fx.path("first.bundle").display().to_string(),
            ])
            .ok();
        let doc: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        assert_eq!(doc["created_unix"], 1_700_000_000, "{compress}");
        assert_eq!(doc["images"][0]["compression"], compress);
    }
}

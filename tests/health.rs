//! `bascule health` through the CLI on the file-backed U-Boot device, with the
//! bootloader simulator (`simulate-boot`): a pass confirms the booted slot (and only a
//! pass raises the floor), a pass on a confirmed slot re-arms it and writes nothing
//! when nothing changes, each `on_failure` mode ends in its state, the deadline fails
//! the probe, and the history and `status` tell why a release rolled back, including
//! a revert the probe never saw.
mod common;

use std::path::{Path, PathBuf};

use bascule::slot::{BadReason, SlotState};
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture, ATTEMPTS};

const IMAGE_LEN: usize = (64 << 10) + 17;

/// Appends `[health]` to the fixture's config: `on_failure`, a reboot command that
/// touches `rebooted` in the fixture, and one stage "boot" with `checks` (TOML).
fn configure(fx: &Fixture, on_failure: &str, extra: &str, checks: &str) {
    let rebooted = fx.path("rebooted").display().to_string();
    let text = format!(
        "{}\n[health]\non_failure = \"{on_failure}\"\nreboot_command = [\"touch\", {rebooted:?}]\n{extra}\n\
         [[health.stage]]\nname = \"boot\"\n{checks}",
        fx.system_toml("disk.img", "disk.img")
    );
    std::fs::write(fx.config(), text).unwrap();
}

/// A check that passes while `flag` in the fixture is absent ("app" fails once it exists).
fn app_check(fx: &Fixture) -> String {
    let flag = fx.path("app-broken").display().to_string();
    format!(
        "[[health.stage.check]]\nname = \"app\"\ncommand = [\"sh\", \"-c\", \"if [ -e {flag} ]; then echo 'app: database schema v9 unknown' >&2; exit 1; fi\"]\n"
    )
}

fn break_app(fx: &Fixture) {
    std::fs::write(fx.path("app-broken"), b"").unwrap();
}

fn floor(fx: &Fixture) -> u64 {
    fx.status_json()["security_floor"].as_u64().unwrap()
}

fn rebooted(fx: &Fixture) -> bool {
    let path = fx.path("rebooted");
    let was = path.exists();
    let _ = std::fs::remove_file(path);
    was
}

/// Installs v2 (security version 1) into B and boots it: B pending, booted. Returns
/// the bundle.
fn pending_v2(fx: &Fixture) -> PathBuf {
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 2),
        &BundleOpts::default().version("2.0.0").secver(1),
    );
    fx.install(&bundle, &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    bundle
}

fn env_file(fx: &Fixture) -> Vec<u8> {
    std::fs::read(fx.path("uboot.env")).unwrap()
}

fn history_json(fx: &Fixture) -> Vec<serde_json::Value> {
    let run = fx.run(&["history", "--json"]).ok();
    serde_json::from_str(&run.stdout).expect("history --json is JSON")
}

#[test]
fn a_pass_confirms_a_pending_slot_and_only_a_pass_raises_the_floor() {
    let fx = Fixture::new();
    configure(&fx, "stay", "", &app_check(&fx));
    pending_v2(&fx);
    break_app(&fx);
    fx.run(&["health"])
        .fails_with(&["stage \"boot\", check \"app\"", "staying"]);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    assert_eq!(floor(&fx), 0, "a failed probe raised the floor");
    std::fs::remove_file(fx.path("app-broken")).unwrap();
    let run = fx.run(&["health"]).ok();
    assert!(
        run.stdout.contains("slot B (v2.0.0) confirmed"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("security floor raised 0 -> 1"),
        "{}",
        run.stdout
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    assert_eq!(floor(&fx), 1);
    let outcomes: Vec<_> = history_json(&fx)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["failed", "confirmed"]);
    assert!(!rebooted(&fx));
}

#[test]
fn a_pass_on_a_confirmed_slot_rearms_it_and_writes_nothing_when_nothing_changes() {
    let fx = Fixture::new();
    configure(&fx, "reboot", "", &app_check(&fx));
    let full = ATTEMPTS.to_string();
    assert_eq!(fx.env().get_str("BOOT_A_LEFT"), Some(full.as_str()));
    fx.run(&["simulate-boot"]).ok();
    let spent = (ATTEMPTS - 1).to_string();
    assert_eq!(fx.env().get_str("BOOT_A_LEFT"), Some(spent.as_str()));
    let run = fx.run(&["health"]).ok();
    assert!(run.stdout.contains("env written"), "{}", run.stdout);
    assert_eq!(fx.env().get_str("BOOT_A_LEFT"), Some(full.as_str()));
    let before = env_file(&fx);
    let run = fx.run(&["health"]).ok();
    assert!(run.stdout.contains("nothing to write"), "{}", run.stdout);
    assert_eq!(
        env_file(&fx),
        before,
        "a probe with nothing to change wrote the env"
    );
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
}

#[test]
fn reboot_mode_reboots_and_the_bootloader_rolls_back_with_the_reason_shown() {
    let fx = Fixture::new();
    configure(&fx, "reboot", "", &app_check(&fx));
    pending_v2(&fx);
    break_app(&fx);
    for n in 0..ATTEMPTS {
        assert_eq!(fx.booted(), SlotName::B, "try {n}");
        let before = env_file(&fx);
        fx.run(&["health"])
            .fails_with(&["check \"app\"", "sh exit status: 1", "rebooting"]);
        assert!(rebooted(&fx), "the reboot command did not run");
        assert_eq!(env_file(&fx), before, "reboot mode wrote the env");
        fx.run(&["simulate-boot"]).ok();
    }
    assert_eq!(fx.booted(), SlotName::A, "no rollback");
    std::fs::remove_file(fx.path("app-broken")).unwrap();
    fx.run(&["health"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Bad {
            reason: BadReason::TriesExhausted
        }
    );
    let status = fx.run(&["status"]).ok().stdout;
    assert!(
        status.contains("rolled back: slot B v2.0.0: its health probe failed")
            && status.contains("check \"app\": sh exit status: 1: app: database schema v9 unknown"),
        "{status}"
    );
    let json = fx.status_json();
    assert_eq!(json["rollbacks"][0]["check"], "app");
    let history = history_json(&fx);
    let failed: Vec<_> = history
        .iter()
        .filter(|r| r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), usize::from(ATTEMPTS));
    let counts: Vec<_> = failed
        .iter()
        .map(|r| r["boot_count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    assert!(failed
        .iter()
        .all(|r| r["version"] == "2.0.0" && r["slot"] == "B"));
    // Nobody recorded a revert without a probe: the probe's failures explain it.
    assert!(!history
        .iter()
        .any(|r| r["outcome"] == "reverted-without-probe"));
    let text = fx.run(&["history"]).ok().stdout;
    assert!(text.contains("| app: database schema v9 unknown"), "{text}");
}

#[test]
fn mark_bad_mode_marks_the_slot_bad_and_the_next_boot_falls_back() {
    let fx = Fixture::new();
    configure(&fx, "mark-bad", "", &app_check(&fx));
    pending_v2(&fx);
    break_app(&fx);
    fx.run(&["health"])
        .fails_with(&["marked the slot bad and rebooting"]);
    assert!(rebooted(&fx));
    assert!(matches!(fx.slot_state(SlotName::B), SlotState::Bad { .. }));
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::A, "the fallback was not immediate");
    let status = fx.run(&["status"]).ok().stdout;
    assert!(status.contains("rolled back: slot B v2.0.0"), "{status}");
}

#[test]
fn mark_bad_mode_reboots_instead_when_the_other_slot_is_not_confirmed() {
    let fx = Fixture::new();
    configure(&fx, "mark-bad", "", &app_check(&fx));
    break_app(&fx);
    fx.run(&["simulate-boot"]).ok();
    let before = env_file(&fx);
    fx.run(&["health"]).fails_with(&[
        "did not mark the slot bad",
        "slot B is bad",
        "rebooting instead",
    ]);
    assert!(rebooted(&fx));
    assert_eq!(env_file(&fx), before);
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
}

#[test]
fn stay_mode_records_and_exits_non_zero_without_rebooting() {
    let fx = Fixture::new();
    configure(&fx, "stay", "", &app_check(&fx));
    pending_v2(&fx);
    break_app(&fx);
    let before = env_file(&fx);
    fx.run(&["health"]).fails_with(&["staying"]);
    assert!(!rebooted(&fx));
    assert_eq!(env_file(&fx), before);
    let history = history_json(&fx);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["outcome"], "failed");
    assert_eq!(history[0]["stage"], "boot");
}

#[test]
fn a_deadline_that_runs_out_fails_the_probe() {
    let fx = Fixture::new();
    let missing = fx.path("never-there").display().to_string();
    let checks = format!("[[health.stage.check]]\nfile_exists = {missing:?}\nretry = true\n");
    configure(&fx, "stay", "deadline_secs = 2", &checks);
    pending_v2(&fx);
    let start = std::time::Instant::now();
    let run = fx
        .run(&["health"])
        .fails_with(&["deadline (2 s, health.deadline_secs) passed", "last result"]);
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(run.stdout.contains("does not exist"), "{}", run.stdout);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    // A command that outlives the deadline fails it too, killed.
    let slow = "[[health.stage.check]]\ncommand = [\"sleep\", \"30\"]\ntimeout_secs = 60\n";
    configure(&fx, "stay", "deadline_secs = 1", slow);
    let start = std::time::Instant::now();
    fx.run(&["health"]).fails_with(&["deadline"]);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_revert_without_a_probe_is_recorded_once_by_the_old_slot() {
    let fx = Fixture::new();
    configure(&fx, "reboot", "", &app_check(&fx));
    let bundle = pending_v2(&fx);
    // B panics at every boot: the probe never runs there.
    for _ in 0..ATTEMPTS {
        fx.run(&["simulate-boot"]).ok();
    }
    assert_eq!(fx.booted(), SlotName::A);
    let run = fx.run(&["health"]).ok();
    assert!(
        run.stdout.contains("reverted it without a probe"),
        "{}",
        run.stdout
    );
    fx.run(&["simulate-boot"]).ok();
    fx.run(&["health"]).ok();
    let history = history_json(&fx);
    let reverts: Vec<_> = history
        .iter()
        .filter(|r| r["outcome"] == "reverted-without-probe")
        .collect();
    assert_eq!(reverts.len(), 1, "{history:?}");
    assert_eq!(
        (reverts[0]["slot"].as_str(), reverts[0]["version"].as_str()),
        (Some("B"), Some("2.0.0"))
    );
    let status = fx.run(&["status"]).ok().stdout;
    assert!(
        status.contains("rolled back: slot B v2.0.0: the bootloader reverted it without a probe"),
        "{status}"
    );
    assert!(Path::new(&fx.path("state/health-history")).exists());
    // The release the bootloader took back is quarantined too.
    fx.install(&bundle, &[]).fails_with(&[
        "refusing to install v2.0.0",
        "the bootloader rolled it back without a probe",
    ]);
}

#[test]
fn a_quarantined_release_is_refused_and_force_or_clearing_overrides() {
    let fx = Fixture::new();
    configure(&fx, "mark-bad", "", &app_check(&fx));
    let bundle = pending_v2(&fx);
    let manifest = fx.env().get_str("BASCULE_B_MANIFEST").map(str::to_string);
    let manifest = manifest.expect("the install recorded no manifest hash");
    assert!(manifest.len() == 64 && manifest.bytes().all(|b| b.is_ascii_hexdigit()));
    break_app(&fx);
    fx.run(&["health"]).fails_with(&["marked the slot bad"]);
    assert_eq!(history_json(&fx)[0]["manifest"], manifest.as_str());
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::A);
    let before = fx.snapshot();
    fx.install(&bundle, &[]).fails_with(&[
        &format!("refusing to install v2.0.0 (manifest sha256 {manifest})"),
        "its health probe failed (stage \"boot\", check \"app\": sh exit status: 1)",
        "in slot B at 20",
        "--force installs it anyway",
        "--clear-quarantine",
    ]);
    fx.assert_untouched(&before);
    // Another build of the same version is another release: not quarantined.
    let rebuilt = fx.bundle(
        &fx.image(IMAGE_LEN, 7),
        &BundleOpts::default().version("2.0.0").secver(1),
    );
    fx.install(&rebuilt, &["--dry-run"]).ok();
    fx.install(&bundle, &["--force"]).ok();
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
    fx.install(&bundle, &[]).fails_with(&["quarantined"]);
    let run = fx.run(&["history", "--clear-quarantine"]).ok();
    assert!(run.stdout.contains("quarantine lifted"), "{}", run.stdout);
    fx.install(&bundle, &[]).ok();
}

#[test]
fn no_confirm_runs_the_checks_and_leaves_the_confirmation_to_mark_good() {
    let fx = Fixture::new();
    configure(&fx, "stay", "", &app_check(&fx));
    pending_v2(&fx);
    let before = env_file(&fx);
    let run = fx.run(&["health", "--no-confirm"]).ok();
    assert!(
        run.stdout.contains("not confirmed: --no-confirm"),
        "{}",
        run.stdout
    );
    assert_eq!(env_file(&fx), before);
    assert_eq!(floor(&fx), 0);
    break_app(&fx);
    fx.run(&["health", "--no-confirm"])
        .fails_with(&["check \"app\""]);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

#[test]
fn a_history_that_cannot_be_written_never_decides_the_verdict() {
    let fx = Fixture::new();
    configure(&fx, "reboot", "", &app_check(&fx));
    pending_v2(&fx);
    // A directory where the history file belongs: every read and append fails.
    std::fs::create_dir_all(fx.path("state/health-history/x")).unwrap();
    break_app(&fx);
    fx.run(&["health"])
        .fails_with(&["health history", "state/health-history"]);
    assert!(rebooted(&fx), "the failed probe did not reboot");
    std::fs::remove_file(fx.path("app-broken")).unwrap();
    let run = fx.run(&["health"]).ok();
    assert!(
        run.stderr.contains("confirmed, but not recorded"),
        "{}",
        run.stderr
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    assert_eq!(floor(&fx), 1);
}

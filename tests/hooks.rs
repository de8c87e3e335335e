//! Hooks through the CLI on the file-backed U-Boot device: a failed `pre-install`
//! (or one that times out, and is killed) changes nothing; a failed `post-install`
//! leaves the target bad, never pending; `post-install` sees the documented
//! environment; a failed `post-commit` leaves the confirmation standing and is in
//! `bascule history`.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{booted_b_fixture, BundleOpts, Fixture, SLOT_SIZE};

const IMAGE_LEN: usize = (64 << 10) + 5;

/// Writes the shell script `name` (body after `#!/bin/sh`) into the fixture; returns
/// its path.
fn script(fx: &Fixture, name: &str, body: &str) -> PathBuf {
    let path = fx.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Appends `[hooks]` with `lines` (TOML) to the fixture's config.
fn configure(fx: &Fixture, lines: &str) {
    let text = format!(
        "{}\n[hooks]\n{lines}\n",
        fx.system_toml("disk.img", "disk.img")
    );
    std::fs::write(fx.config(), text).unwrap();
}

fn bundle(fx: &Fixture, version: &str, seed: u64) -> PathBuf {
    fx.bundle(
        &fx.image(IMAGE_LEN, seed),
        &BundleOpts::default().version(version),
    )
}

#[test]
fn a_failed_pre_install_hook_changes_nothing() {
    // B booted, A good: an install into A that began would mark A bad.
    let fx = booted_b_fixture(IMAGE_LEN, 7);
    let hook = script(&fx, "pre.sh", "echo 'battery at 9%' >&2; exit 5");
    configure(
        &fx,
        &format!("pre_install = [{:?}]", hook.display().to_string()),
    );
    let bundle = bundle(&fx, "3.0.0", 8);
    let before = fx.snapshot();
    let run = fx.install(&bundle, &[]).fails_with(&[
        "pre-install hook",
        "hooks.pre_install",
        "exit status: 5",
    ]);
    assert!(run.stderr.contains("battery at 9%"), "{}", run.stderr);
    fx.assert_untouched(&before);
    assert_eq!(fx.slot_state(SlotName::A), SlotState::Good);
}

#[test]
fn a_pre_install_hook_that_times_out_is_killed_and_changes_nothing() {
    let fx = booted_b_fixture(IMAGE_LEN, 9);
    let pidfile = fx.path("sleeper.pid");
    let hook = script(
        &fx,
        "slow.sh",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    );
    configure(
        &fx,
        &format!(
            "pre_install = [{:?}]\ntimeout_secs = 1",
            hook.display().to_string()
        ),
    );
    let bundle = bundle(&fx, "3.0.0", 10);
    let before = fx.snapshot();
    let start = std::time::Instant::now();
    fx.install(&bundle, &[])
        .fails_with(&["pre-install hook", "did not finish within 1 s (killed)"]);
    assert!(start.elapsed().as_secs() < 30, "{:?}", start.elapsed());
    fx.assert_untouched(&before);
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(!alive(pid.trim()), "the hook's child {pid} still runs");
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

#[test]
fn a_failed_post_install_hook_leaves_the_target_bad_not_pending() {
    let fx = booted_b_fixture(IMAGE_LEN, 11);
    let hook = script(&fx, "post.sh", "echo 'migration failed'; exit 3");
    configure(
        &fx,
        &format!("post_install = [{:?}]", hook.display().to_string()),
    );
    let image = fx.image(IMAGE_LEN, 12);
    let bundle = fx.bundle(&image, &BundleOpts::default().version("3.0.0"));
    let before = fx.snapshot();
    fx.install(&bundle, &[]).fails_with(&[
        "slot A was written and verified, but it stays unbootable",
        "post-install hook",
        "exit status: 3",
    ]);
    assert!(
        fx.slot_holds(SlotName::A, &image),
        "the hook ran before the write"
    );
    assert!(
        matches!(fx.slot_state(SlotName::A), SlotState::Bad { .. }),
        "{:?}",
        fx.slot_state(SlotName::A)
    );
    assert_eq!(
        fx.slot_bytes(SlotName::B),
        before.slots[1],
        "booted slot written"
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(
        fx.booted(),
        SlotName::B,
        "the bootloader booted the failed slot"
    );
}

#[test]
fn post_install_hook_sees_the_documented_environment() {
    let fx = Fixture::new();
    let out = fx.path("post-env");
    let hook = script(
        &fx,
        "post.sh",
        &format!("env | grep ^BASCULE_ | LC_ALL=C sort > {}", out.display()),
    );
    configure(
        &fx,
        &format!("post_install = [{:?}]", hook.display().to_string()),
    );
    fx.install(&bundle(&fx, "2.0.0", 13), &[]).ok();
    let seen = std::fs::read_to_string(&out).unwrap();
    let disk = fx.path("disk.img").display().to_string();
    let expected = [
        "BASCULE_BOOTED_SLOT=A".to_string(),
        "BASCULE_HOOK=post-install".into(),
        "BASCULE_TARGET_CLASS=rootfs".into(),
        "BASCULE_TARGET_CLASSES=rootfs".into(),
        format!("BASCULE_TARGET_DEVICE={disk}"),
        format!("BASCULE_TARGET_DEVICE_ROOTFS={disk}"),
        format!("BASCULE_TARGET_OFFSET={SLOT_SIZE}"),
        format!("BASCULE_TARGET_OFFSET_ROOTFS={SLOT_SIZE}"),
        format!("BASCULE_TARGET_SIZE={SLOT_SIZE}"),
        format!("BASCULE_TARGET_SIZE_ROOTFS={SLOT_SIZE}"),
        "BASCULE_TARGET_SLOT=B".into(),
        "BASCULE_VERSION=2.0.0".into(),
    ];
    let seen: Vec<&str> = seen
        .lines()
        .filter(|l| !l.starts_with("BASCULE_CONFIG="))
        .collect();
    assert_eq!(seen, expected);
    assert!(matches!(
        fx.slot_state(SlotName::B),
        SlotState::Pending { .. }
    ));
}

#[test]
fn a_failed_post_commit_hook_is_recorded_and_the_confirmation_stands() {
    let fx = Fixture::new();
    let runs = fx.path("post-commit-runs");
    let hook = script(
        &fx,
        "commit.sh",
        &format!(
            "echo $BASCULE_VERSION >> {}; echo 'cannot reach the fleet server' >&2; exit 7",
            runs.display()
        ),
    );
    configure(
        &fx,
        &format!("post_commit = [{:?}]", hook.display().to_string()),
    );
    fx.install(&bundle(&fx, "2.0.0", 14), &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(fx.booted(), SlotName::B);
    let run = fx.run(&["mark-good"]).ok();
    assert!(
        run.stderr.contains("post-commit hook") && run.stderr.contains("exit status: 7"),
        "{}",
        run.stderr
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    let history = fx.run(&["history", "--json"]).ok();
    let records: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["outcome"], "post-commit-hook-failed");
    assert_eq!(record["check"], "hooks.post_commit");
    assert_eq!(record["version"], "2.0.0");
    assert!(
        record["output"]
            .as_str()
            .unwrap()
            .contains("cannot reach the fleet server"),
        "{record}"
    );
    // A confirmation that commits nothing new runs no hook.
    fx.run(&["mark-good"]).ok();
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "2.0.0\n");
}

#[test]
fn a_health_pass_that_confirms_runs_post_commit_with_its_environment() {
    let fx = Fixture::new();
    let out = fx.path("commit-env");
    let hook = script(
        &fx,
        "commit.sh",
        &format!(
            "env | grep -E '^BASCULE_(HOOK|VERSION|TARGET_SLOT|BOOTED_SLOT)=' | sort > {}",
            out.display()
        ),
    );
    configure(
        &fx,
        &format!("post_commit = [{:?}]", hook.display().to_string()),
    );
    fx.install(&bundle(&fx, "2.0.0", 15), &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert!(!out.exists(), "post-commit ran before a confirmation");
    fx.run(&["health"]).ok();
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "BASCULE_BOOTED_SLOT=B\nBASCULE_HOOK=post-commit\nBASCULE_TARGET_SLOT=B\nBASCULE_VERSION=2.0.0\n"
    );
}

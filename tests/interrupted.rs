//! Interrupted and concurrent installs: a second install (or any `flock` holder) while
//! one holds the lock is refused; an install killed by SIGKILL or SIGTERM mid-payload
//! leaves the target marked bad and no stale lock; a mark-good that races an install is
//! not lost. Each test checks that nothing was lost (the booted slot is byte-identical,
//! the target is never left pending).
mod common;
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use bascule::slot::{BootState, SlotState};
use bascule_partitions::SlotName;
use common::{payload_offset, BundleOpts, Fixture};

const IMAGE_LEN: usize = (512 << 10) + 777;
/// The SIGTERM test's image length (it came from `bad_inputs_system.rs` with its own).
const SIGTERM_IMAGE_LEN: usize = (512 << 10) + 333;

/// Waits until `state/install.lock` holds a pid (the lock holder writes it).
fn wait_for_lock_pid(fx: &Fixture, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let lock = fx.path("state/install.lock");
    while std::fs::read_to_string(&lock)
        .ok()
        .as_deref()
        .map(str::trim)
        != Some(&pid.to_string())
    {
        assert!(
            Instant::now() < deadline,
            "first install never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn concurrent_install_is_refused_while_another_holds_the_lock() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 34), &BundleOpts::default());
    let bytes = std::fs::read(&bundle).unwrap();
    let before = fx.snapshot();
    // The first install reads its bundle from a pipe we control: it holds the lock
    // while it waits for bytes.
    let mut first = fx
        .cmd(&["install", "-", "--progress", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn first install");
    wait_for_lock_pid(&fx, first.id());
    let pid = first.id().to_string();
    fx.install(&bundle, &[])
        .fails_with(&["another install is running", &pid]);
    fx.install(&bundle, &["--dry-run"])
        .fails_with(&["another install is running"]);
    fx.assert_untouched(&before);
    // Let the first one finish normally.
    let mut stdin = first.stdin.take().expect("stdin");
    stdin.write_all(&bytes).expect("feed first install");
    drop(stdin);
    let out = first.wait_with_output().expect("wait first install");
    assert!(
        out.status.success(),
        "first install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn install_refused_while_flock_holds_the_lock_file() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&fx.image(IMAGE_LEN, 35), &BundleOpts::default());
    let before = fx.snapshot();
    // `flock LOCK cat`: cat echoes a line once flock has taken the lock.
    let lock = fx.path("state/install.lock");
    let mut holder = match std::process::Command::new("flock")
        .arg(&lock)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tool::skip_or_fail(&format!(
                "flock(1) cannot run (Debian package util-linux): {e}"
            ));
            return;
        }
    };
    let mut stdin = holder.stdin.take().expect("stdin");
    stdin.write_all(b"held\n").expect("write to cat");
    stdin.flush().expect("flush");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read cat");
    assert_eq!(line, "held\n");
    fx.install(&bundle, &[])
        .fails_with(&["another install is running", "install.lock"]);
    fx.assert_untouched(&before);
    drop(stdin);
    assert!(holder.wait().expect("wait flock").success());
    fx.install(&bundle, &[]).ok();
}

/// Starts `bascule install - ARGS` reading from a pipe we hold.
fn spawn_piped_install(fx: &Fixture, extra: &[&str]) -> Child {
    let mut args = vec!["install", "-", "--progress", "none"];
    args.extend_from_slice(extra);
    fx.cmd(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn install")
}

/// Waits until `pred` holds for the boot state, or panics after 20 s.
fn wait_for_state(fx: &Fixture, what: &str, pred: impl Fn(&BootState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred(&fx.boot_state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `bascule install - EXTRA` reading from a pipe we hold, feeds it `bytes` up to
/// the middle of the payload and waits until `target` left the boot order (the install
/// has begun writing it). Returns the running install, its still-open stdin and the
/// offset fed up to.
fn start_install_fed_half(
    fx: &Fixture,
    bytes: &[u8],
    extra: &[&str],
    target: SlotName,
) -> (Child, ChildStdin, usize) {
    let mut child = spawn_piped_install(fx, extra);
    let mut stdin = child.stdin.take().expect("stdin");
    let half = payload_offset(bytes) + (bytes.len() - payload_offset(bytes)) / 2;
    stdin.write_all(&bytes[..half]).expect("feed half");
    stdin.flush().expect("flush");
    wait_for_state(fx, &format!("{target} marked bad"), |st| {
        !st.view.order.contains(&target)
    });
    (child, stdin, half)
}

/// The slot being written may not be marked good while the install runs (on GRUB and
/// GPT schemes that would make a half-written slot bootable); the booted slot may.
#[test]
fn mark_good_of_the_slot_being_written_is_refused() {
    let fx = common::booted_b_fixture(IMAGE_LEN, 40);
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 41),
        &BundleOpts::default().version("3.0.0").chunk_size(16 << 10),
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let (child, mut stdin, half) = start_install_fed_half(&fx, &bytes, &[], SlotName::A);
    fx.run(&["mark-good", "A"])
        .fails_with(&["another install is running"]);
    assert!(
        !fx.boot_state().view.order.contains(&SlotName::A),
        "A became bootable mid-write"
    );
    fx.run(&["mark-good", "booted"]).ok();
    stdin.write_all(&bytes[half..]).expect("feed rest");
    drop(stdin);
    let out = child.wait_with_output().expect("wait install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After an install into A died mid-payload (B booted and good): nothing was lost, A
/// is bad (out of the boot order), B still good, and the lock went with the process,
/// so installing `bundle` again runs to the end and leaves A pending.
fn assert_target_a_bad_then_reinstallable(fx: &Fixture, before: &common::Snapshot, bundle: &Path) {
    fx.assert_nothing_lost(before, SlotName::A);
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Bad {
            reason: bascule::slot::BadReason::NotInBootOrder
        }
    );
    assert_eq!(fx.slot_state(SlotName::B), SlotState::Good);
    fx.install(bundle, &[]).ok();
    assert_eq!(
        fx.slot_state(SlotName::A),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn install_killed_mid_payload_leaves_target_bad_and_no_stale_lock() {
    let fx = common::booted_b_fixture(IMAGE_LEN, 36);
    let bundle = fx.bundle(
        &fx.image(IMAGE_LEN, 37),
        &BundleOpts::default().version("3.0.0").chunk_size(16 << 10),
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let before = fx.snapshot();
    let (mut child, stdin, _) = start_install_fed_half(&fx, &bytes, &[], SlotName::A);
    child.kill().expect("SIGKILL install");
    child.wait().expect("reap install");
    drop(stdin);
    assert_target_a_bad_then_reinstallable(&fx, &before, &bundle);
}

/// A health service confirms the booted slot while an install streams: the install's
/// final commit must not undo the confirmation (or mark-good must refuse while the
/// install runs).
#[test]
fn mark_good_during_an_install_is_not_lost() {
    let fx = Fixture::new();
    let first = fx.bundle(
        &fx.image(IMAGE_LEN, 38),
        &BundleOpts::default().version("2.0.0"),
    );
    fx.install(&first, &[]).ok();
    fx.run(&["simulate-boot"]).ok();
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS - 1
        }
    );
    let second = fx.bundle(
        &fx.image(IMAGE_LEN, 39),
        &BundleOpts::default().version("3.0.0").chunk_size(16 << 10),
    );
    let bytes = std::fs::read(&second).unwrap();
    let (child, mut stdin, half) = start_install_fed_half(&fx, &bytes, &["--force"], SlotName::A);
    let confirm = fx.run(&["mark-good"]);
    stdin.write_all(&bytes[half..]).expect("feed rest");
    drop(stdin);
    let out = child.wait_with_output().expect("wait install");
    assert!(
        out.status.success(),
        "install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if confirm.code != 0 {
        // Refusing mark-good while an install runs is also safe.
        confirm.fails_with(&["another install is running"]);
        return;
    }
    let st = fx.boot_state();
    assert_eq!(
        st.slot(SlotName::A).state,
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
    assert_eq!(
        st.view.tries[SlotName::B.index()],
        common::ATTEMPTS,
        "mark-good of B during the install was undone: {:?}",
        fx.env()
    );
}

#[test]
fn sigterm_mid_install_leaves_target_bad_and_releases_the_lock() {
    // B confirmed and booted, A good: the install targets A, which starts out bootable,
    // so "A left the boot order" shows the install has begun.
    let fx = common::booted_b_fixture(SIGTERM_IMAGE_LEN, 131);
    let bundle = fx.bundle(
        &fx.image(SIGTERM_IMAGE_LEN, 132),
        &BundleOpts::default().version("3.0.0").chunk_size(16 << 10),
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let before = fx.snapshot();

    let (child, stdin, _) = start_install_fed_half(&fx, &bytes, &[], SlotName::A);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(kill.success(), "kill -TERM failed");
    // Keep the pipe open: the install must stop because of the signal, not EOF.
    let out = child.wait_with_output().expect("reap install");
    drop(stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("after SIGTERM: {:?}: {}", out.status, stderr.trim());
    assert!(!out.status.success(), "install exited 0 after SIGTERM");
    match out.status.signal() {
        Some(sig) => assert_eq!(sig, 15, "killed by signal {sig}, not SIGTERM"),
        // A handler that catches SIGTERM must say why it stopped.
        None => {
            let err = stderr.to_lowercase();
            assert!(
                ["sigterm", "signal", "terminated", "interrupted"]
                    .iter()
                    .any(|w| err.contains(w)),
                "exit {:?} after SIGTERM without naming it:\n{stderr}",
                out.status.code()
            );
        }
    }
    assert_target_a_bad_then_reinstallable(&fx, &before, &bundle);
    assert!(fx.slot_bytes(SlotName::B) == before.slots[1]);
}

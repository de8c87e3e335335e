//! The real tools the interop tests talk to, and what happens when one is missing: the
//! test fails. `scripts/deps --test` installs every one (run by `scripts/test`). Only
//! `BASCULE_ALLOW_MISSING_TOOLS=1`, meant for local runs, lets a test skip instead,
//! and then it says so on the terminal, past the test harness's output capture.
//!
//! Shared by the hal's tests and the CLI tests (`#[path]`), so both follow one rule.
#![allow(dead_code)]

use std::io::Write;
use std::process::Command;

/// The environment switch that turns a missing tool from a failure into a skip.
pub const ALLOW_MISSING: &str = "BASCULE_ALLOW_MISSING_TOOLS";

/// Whether `tool` (from Debian package `package`) is on the PATH. If it is not, the
/// test fails here, unless [`ALLOW_MISSING`] is `1`: then this prints a loud notice
/// and returns `false` for the test to return early.
#[track_caller]
pub fn require(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    found
        || skip_or_fail(&format!(
            "{tool} is not installed (Debian package {package})"
        ))
}

/// For a test that cannot run here (`why`): fails, or with [`ALLOW_MISSING`]`=1`
/// prints a loud notice and returns `false`.
#[track_caller]
pub fn skip_or_fail(why: &str) -> bool {
    if std::env::var(ALLOW_MISSING).is_ok_and(|v| v == "1") {
        let test = std::thread::current().name().unwrap_or("?").to_string();
        // Straight to the terminal: the harness captures only print!/eprint!.
        let notice =
            format!("\n!!! SKIPPED {test}: {why}; it checked nothing ({ALLOW_MISSING}=1) !!!\n");
        std::io::stderr()
            .write_all(notice.as_bytes())
            .expect("write the skip notice to stderr");
        return false;
    }
    panic!(
        "{why}: run scripts/deps --test (scripts/test does), \
         or set {ALLOW_MISSING}=1 to skip this test in a local run"
    );
}

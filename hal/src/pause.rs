//! Test-build pause points: widen a window that a power-cut harness aims at.
//!
//! Exists only with the `test-pause` cargo feature (off by default, never in a release
//! binary). [`point`] sleeps when the environment variable [`PAUSE_VAR`] names it as
//! `NAME:MILLISECONDS` (several separated by commas), printing a marker line before
//! and after on stderr, so a harness that kills QEMU at a random moment in the window
//! lands inside the operation it wants to test far more often than by luck.
use std::time::Duration;

/// The variable that arms pause points: `uboot-commit:2000` and the like.
pub const PAUSE_VAR: &str = "BASCULE_TEST_PAUSE";

/// Pauses at `name` when [`PAUSE_VAR`] arms it; otherwise returns at once.
pub fn point(name: &str) {
    let Some(ms) = std::env::var(PAUSE_VAR)
        .ok()
        .and_then(|spec| armed_for(&spec, name))
    else {
        return;
    };
    eprintln!("bascule-pause {name} begin {ms} ms");
    std::thread::sleep(Duration::from_millis(ms));
    eprintln!("bascule-pause {name} end");
}

/// The pause in milliseconds `spec` gives to `name`, if any.
fn armed_for(spec: &str, name: &str) -> Option<u64> {
    spec.split(',')
        .filter_map(|item| item.trim().split_once(':'))
        .find(|(n, _)| *n == name)
        .and_then(|(_, ms)| ms.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::armed_for;

    #[test]
    fn a_spec_arms_only_the_named_points() {
        assert_eq!(armed_for("uboot-commit:250", "uboot-commit"), Some(250));
        assert_eq!(armed_for("a:1, uboot-commit:7", "uboot-commit"), Some(7));
        assert_eq!(armed_for("other:250", "uboot-commit"), None);
        assert_eq!(armed_for("uboot-commit:x", "uboot-commit"), None);
    }
}

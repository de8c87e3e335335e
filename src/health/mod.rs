//! `bascule health`: the probe that decides whether the booted slot keeps running.
//!
//! It runs the checks of `[health]` ([`config`]) stage by stage, within one deadline
//! ([`checks`] runs each). When every check passes, the booted slot is confirmed
//! through [`crate::ops::confirm_and_raise_floor`], the one confirmation path: a
//! pending slot becomes good and the security floor rises to its security version; a
//! slot already good gets its counter or try flag re-armed, with no env write when
//! nothing changes. When a check fails or the deadline passes, `on_failure` decides:
//! reboot (the bootloader spends a try), mark the slot bad then reboot (only if the
//! other slot is confirmed; otherwise a plain reboot, said so), or stay.
//!
//! Every probe leaves a record in the [`history`] in `state_dir`, and a probe that
//! finds the other slot rolled back by the bootloader with no failed probe on record
//! (a kernel panic, a hang) records that revert too.
pub mod checks;
pub mod config;
pub mod history;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bascule_partitions::SlotName;

use crate::device::Device;
use crate::hooks::{Hook, HookEnv, HookFailed};
use crate::install::lock::EnvLock;
use crate::ops::{self, Confirmation};
use crate::slot::{state, BadReason, BootState, SlotInfo, SlotState};
use crate::Error;
use config::{Check, HealthConfig, OnFailure};
use history::{History, HistoryError, Outcome, Record};

/// The pause between two runs of a failing check with `retry = true`.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// A failed probe, or a failure to act on it.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A check failed (or the deadline passed); `action` is what the probe did.
    #[error("health probe failed: stage {stage:?}, check {check:?}: {why}; {action}")]
    Failed {
        stage: String,
        check: String,
        why: String,
        action: String,
    },
    /// The reboot command could not be run or failed.
    #[error("health probe failed, and the reboot command {command:?} failed: {message}")]
    Reboot {
        command: Vec<String>,
        message: String,
    },
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// The check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: String,
    pub check: String,
    /// Why, on one line: the exit status, the error, or that the deadline passed.
    pub reason: String,
    /// What the check printed (the command's output, the HTTP body).
    pub output: String,
    pub deadline_passed: bool,
}

/// What the probe did after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    Rebooted,
    MarkedBadAndRebooted,
    /// `mark-bad` was configured, but the other slot is not confirmed: rebooted only.
    RebootedNotMarkedBad {
        why: String,
    },
    Stayed,
}

impl std::fmt::Display for FailureAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureAction::Rebooted => f.write_str("rebooting: the bootloader spends a try"),
            FailureAction::MarkedBadAndRebooted => {
                f.write_str("marked the slot bad and rebooting into the other slot")
            }
            FailureAction::RebootedNotMarkedBad { why } => write!(
                f,
                "did not mark the slot bad ({why}); rebooting instead: the bootloader spends a try"
            ),
            FailureAction::Stayed => {
                f.write_str("staying (on_failure = \"stay\"): the slot is not confirmed")
            }
        }
    }
}

/// How the probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Confirmed(Confirmation),
    /// Every check passed; confirming is left to another step (`--no-confirm`: the
    /// systemd unit after `boot-complete.target` runs `mark-good`).
    Passed,
    Failed {
        failure: Failure,
        action: FailureAction,
    },
}

/// What `bascule health` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub slot: SlotName,
    pub version: Option<String>,
    /// The names of the checks that passed, as `stage/check`.
    pub passed: Vec<String>,
    pub result: ProbeResult,
    /// The revert without a probe this run found and recorded.
    pub recorded_revert: Option<Record>,
    /// The `post-commit` hook's failure after a confirmation (recorded; it stands).
    pub post_commit: Option<HookFailed>,
}

/// Runs the probe on the booted slot of `dev` and acts on its result. With `confirm`
/// false, a pass only exits 0 (and leaves no record): the confirmation is a separate
/// `mark-good`, as with systemd's `boot-complete.target`.
pub fn run(dev: &mut Device, confirm: bool) -> Result<ProbeReport, Error> {
    let cfg = dev.config.health.clone();
    let slot = dev.booted()?;
    let mut history = History::new(&dev.config.state_dir);
    let vars = dev.env.load()?;
    let boot_state = BootState::read_running(dev.scheme.as_ref(), &vars, slot)?;
    // The evidence never decides the verdict: a history that cannot be written is
    // reported, and the probe goes on.
    let recorded_revert = record_revert_without_probe(dev, &mut history, &boot_state)
        .unwrap_or_else(|e| {
            log::error!("health: cannot record the revert of the other slot: {e}");
            None
        });
    let info = boot_state.slot(slot);
    let version = info.version.clone();
    let manifest = info.manifest.clone();
    let boot_count = boot_count(
        dev.config.boot.attempts,
        boot_state.view.tries[slot.index()],
    );
    let mut passed = Vec::new();
    let mut post_commit_failed = None;
    let record = |outcome, failure: Option<&Failure>, action: Option<String>| Record {
        time: now(),
        slot,
        version: version.clone(),
        manifest: manifest.clone(),
        outcome,
        stage: failure.map(|f| f.stage.clone()),
        check: failure.map(|f| f.check.clone()),
        reason: failure.map(|f| f.reason.clone()),
        output: failure.map(|f| history::tail(&f.output)),
        boot_count,
        action,
    };
    let result = match run_stages(&cfg, &mut passed) {
        Ok(()) if !confirm => ProbeResult::Passed,
        Ok(()) => {
            let _guard = EnvLock::acquire(&dev.config.state_dir)?;
            let done = ops::confirm_and_raise_floor(
                dev.env.as_mut(),
                dev.floor.as_mut(),
                dev.scheme.as_ref(),
                slot,
                dev.config.boot.attempts,
            )?;
            if let Err(e) = history.append(&record(Outcome::Confirmed, None, None)) {
                log::error!("health: slot {slot} confirmed, but not recorded: {e}");
            }
            post_commit_failed = post_commit(dev, slot, &done);
            ProbeResult::Confirmed(done)
        }
        Err(failure) => {
            // Recorded after the env says what happens next, before the reboot.
            let action = act_on_failure(dev, &cfg, slot)?;
            let rec = record(Outcome::Failed, Some(&failure), Some(action.to_string()));
            let recorded = history.append(&rec);
            if action != FailureAction::Stayed {
                reboot(&cfg.reboot_command)?;
            }
            recorded.map_err(HealthError::from)?;
            ProbeResult::Failed { failure, action }
        }
    };
    Ok(ProbeReport {
        slot,
        version,
        passed,
        result,
        recorded_revert,
        post_commit: post_commit_failed,
    })
}

/// Runs the `post-commit` hook when `done` committed the release in `slot` (a
/// confirmation that changed nothing runs no hook). A failure is recorded in the
/// history and logged, and returned; the confirmation stands either way.
pub fn post_commit(dev: &mut Device, slot: SlotName, done: &Confirmation) -> Option<HookFailed> {
    if !done.committed || dev.config.hooks.argv(Hook::PostCommit).is_none() {
        return None;
    }
    let info = dev
        .env
        .load()
        .ok()
        .and_then(|vars| BootState::read(dev.scheme.as_ref(), &vars).ok())
        .map(|state| state.slot(slot).clone());
    let version = info.as_ref().and_then(|i| i.version.clone());
    let env = HookEnv {
        target: slot,
        booted: slot,
        version: version.clone(),
        classes: Vec::new(),
    };
    let vars = env.vars(Hook::PostCommit, &dev.config.layout);
    let failed = dev.config.hooks.run(Hook::PostCommit, &vars).err()?;
    let record = Record {
        time: now(),
        slot,
        version,
        manifest: info.and_then(|i| i.manifest),
        outcome: Outcome::PostCommitHookFailed,
        stage: None,
        check: Some(Hook::PostCommit.key().to_string()),
        reason: Some(failed.to_string()),
        output: Some(history::tail(&failed.output)),
        boot_count: 0,
        action: Some("none: the confirmation stands".into()),
    };
    if let Err(e) = History::new(&dev.config.state_dir).append(&record) {
        log::error!("{failed}, and it could not be recorded: {e}");
    }
    Some(failed)
}

/// The error `bascule health` exits with when the probe failed.
pub fn failed_error(report: &ProbeReport) -> Option<HealthError> {
    let ProbeResult::Failed { failure, action } = &report.result else {
        return None;
    };
    Some(HealthError::Failed {
        stage: failure.stage.clone(),
        check: failure.check.clone(),
        why: failure.reason.clone(),
        action: action.to_string(),
    })
}

/// Runs every stage in order; stops at the first failing check.
fn run_stages(cfg: &HealthConfig, passed: &mut Vec<String>) -> Result<(), Failure> {
    let deadline = Instant::now() + cfg.deadline;
    for stage in &cfg.stages {
        for check in &stage.checks {
            run_check(&stage.name, check, deadline, cfg.deadline)?;
            log::info!("health: {}/{} passed", stage.name, check.name);
            passed.push(format!("{}/{}", stage.name, check.name));
        }
    }
    Ok(())
}

/// Runs `check` (again, with `retry`, until it passes or `deadline`).
fn run_check(
    stage: &str,
    check: &Check,
    deadline: Instant,
    total: Duration,
) -> Result<(), Failure> {
    let failure = |reason: String, output: String, deadline_passed| Failure {
        stage: stage.to_string(),
        check: check.name.clone(),
        reason,
        output,
        deadline_passed,
    };
    let mut last = checks::CheckFailed::from("it never ran".to_string());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let reason = format!(
                "the probe's deadline ({} s, health.deadline_secs) passed; last result: {}",
                total.as_secs(),
                last.reason
            );
            return Err(failure(reason, last.output, true));
        }
        match checks::run(&check.kind, check.timeout.min(left)) {
            Ok(()) => return Ok(()),
            Err(why) if !check.retry && Instant::now() < deadline => {
                log::warn!("health: {stage}/{} failed: {}", check.name, why.reason);
                return Err(failure(why.reason, why.output, false));
            }
            Err(why) => {
                log::info!("health: {stage}/{} not yet: {}", check.name, why.reason);
                last = why;
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(RETRY_PAUSE.min(left));
            }
        }
    }
}

/// Marks the slot bad when configured and the other slot is confirmed.
fn act_on_failure(
    dev: &mut Device,
    cfg: &HealthConfig,
    slot: SlotName,
) -> Result<FailureAction, Error> {
    match cfg.on_failure {
        OnFailure::Stay => return Ok(FailureAction::Stayed),
        OnFailure::Reboot => return Ok(FailureAction::Rebooted),
        OnFailure::MarkBad => {}
    }
    let _guard = EnvLock::acquire(&dev.config.state_dir)?;
    let vars = dev.env.load()?;
    match state::mark_bad_keeping_one(dev.scheme.as_ref(), &vars, slot, Some(slot)) {
        Ok(Some(next)) => {
            dev.env.commit(&next)?;
            Ok(FailureAction::MarkedBadAndRebooted)
        }
        Ok(None) => Ok(FailureAction::MarkedBadAndRebooted),
        Err(refused) => {
            let why = format!(
                "slot {} is {}, so no confirmed slot would be left",
                refused.other, refused.other_state
            );
            log::warn!("health: not marking slot {slot} bad: {why}");
            Ok(FailureAction::RebootedNotMarkedBad { why })
        }
    }
}

/// Runs the reboot command.
fn reboot(command: &[String]) -> Result<(), HealthError> {
    let err = |message: String| HealthError::Reboot {
        command: command.to_vec(),
        message,
    };
    log::info!("health: running {}", command.join(" "));
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|e| err(e.to_string()))?;
    match status.success() {
        true => Ok(()),
        false => Err(err(status.to_string())),
    }
}

/// When the other slot rolled back (tries ran out) and no failed probe of its
/// release is on record, records the revert. Returns the record written.
fn record_revert_without_probe(
    dev: &Device,
    history: &mut History,
    boot_state: &BootState,
) -> Result<Option<Record>, HistoryError> {
    let Ok(booted) = dev.booted() else {
        return Ok(None);
    };
    let other = boot_state.slot(booted.other());
    let rolled_back = other.state
        == SlotState::Bad {
            reason: BadReason::TriesExhausted,
        };
    if !rolled_back || other.version.is_none() {
        return Ok(None);
    }
    let known = history
        .read()?
        .records
        .iter()
        .any(|r| explains_rollback(r, other));
    if known {
        return Ok(None);
    }
    let record = Record {
        time: now(),
        slot: other.slot,
        version: other.version.clone(),
        manifest: other.manifest.clone(),
        outcome: Outcome::RevertedWithoutProbe,
        stage: None,
        check: None,
        reason: Some(
            "the bootloader rolled this slot back after its tries ran out, and no health \
             probe failed on it: it never reached the probe (kernel panic, hang, reset)"
                .into(),
        ),
        output: None,
        boot_count: dev.config.boot.attempts,
        action: None,
    };
    history.append(&record)?;
    log::warn!(
        "health: slot {} (v{}) was rolled back without a probe; recorded",
        other.slot,
        other.version.as_deref().unwrap_or("?")
    );
    Ok(Some(record))
}

/// Whether `record` tells why the release in `info` is not running: a failed probe
/// or a revert without one, of the same version (and manifest, when both know it).
pub fn explains_rollback(record: &Record, info: &SlotInfo) -> bool {
    let same_manifest = match (&record.manifest, &info.manifest) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    record.slot == info.slot
        && record.version == info.version
        && same_manifest
        && is_failure(record)
}

fn is_failure(record: &Record) -> bool {
    matches!(
        record.outcome,
        Outcome::Failed | Outcome::RevertedWithoutProbe
    )
}

/// The newest record that explains why each bad slot with a known version is bad.
pub fn rollback_reasons(history: &mut History, boot_state: &BootState) -> Vec<Record> {
    let Ok(read) = history.read() else {
        return Vec::new();
    };
    boot_state
        .slots
        .iter()
        .filter(|info| matches!(info.state, SlotState::Bad { .. }) && info.version.is_some())
        .filter_map(|info| {
            read.records
                .iter()
                .rev()
                .find(|r| explains_rollback(r, info))
                .cloned()
        })
        .collect()
}

/// The record that quarantines the release whose manifest hashes to `manifest`: its
/// newest failure on this device, unless the quarantine was cleared or the release
/// confirmed itself since.
pub fn quarantine(records: &[Record], manifest: &str) -> Option<Record> {
    for record in records.iter().rev() {
        if record.outcome == Outcome::QuarantineCleared {
            return None;
        }
        if record.manifest.as_deref() != Some(manifest) {
            continue;
        }
        match record.outcome {
            Outcome::Confirmed => return None,
            _ if is_failure(record) => return Some(record.clone()),
            _ => {}
        }
    }
    None
}

/// Appends the record that lifts every quarantine so far.
pub fn clear_quarantine(dev: &Device) -> Result<Record, Error> {
    let record = Record {
        time: now(),
        slot: dev.booted()?,
        version: None,
        manifest: None,
        outcome: Outcome::QuarantineCleared,
        stage: None,
        check: None,
        reason: None,
        output: None,
        boot_count: 0,
        action: None,
    };
    History::new(&dev.config.state_dir)
        .append(&record)
        .map_err(HealthError::from)?;
    Ok(record)
}

/// Which try of the slot this boot is, from the env counter (1 = the first boot since
/// the slot was armed).
fn boot_count(attempts: u8, tries_left: u8) -> u8 {
    attempts.saturating_sub(tries_left).max(1)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! The GRUB differential run: boots real GRUB over each [`GrubCase`] and compares what
//! it did with what bascule's model predicts.
//!
//! The model of one boot ([`model_step`]):
//! - a main grubenv that `load_env` accepts: `RaucGrub.boot` on its variables predicts
//!   the slot (or the reset-and-reboot) and every variable of the grubenv afterwards;
//! - a main grubenv that `load_env` refuses (empty, bad header, missing):
//!   `grub_fallback::fallback_boot` on `grubenv.good` predicts the slot, or GRUB
//!   waiting at its menu when no file names one; neither file changes.
//!
//! A main grubenv that repeats a name is not predicted: GRUB reads its last line and
//! `save_env` rewrites the first, which bascule's variables cannot express. There the
//! check is that bascule's GRUB store flags the env (`status` warns, the next commit
//! rewrites it); such cases are counted apart as flagged.
//!
//! Compared per boot: the choice, that a slot booted is one the case allows
//! ([`GrubCase::may_boot`]: only confirmed slots when booting from the fallback), every
//! variable of the grubenv afterwards except
//! [`SCRATCH_VARS`] (as bytes, each name's effective value, so a duplicate line that
//! `save_env` left stale shows), and that `grubenv.good` did not change. After a reset
//! the case boots again from the grubenv GRUB left, as a real machine would.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bascule::slot::grub_fallback::fallback_boot;
use bascule::slot::{BootDecision, BootScheme, RaucGrub};

use crate::grub::{EspDisk, GrubChoice, GrubError, GrubRig};
use crate::grub_corpus::{EnvFile, GrubCase};
use crate::grub_env::{model_bytes, model_vars, show, ByteVars, RawEnv};

/// Variables the script saves that are not boot state (none: the shipped script saves
/// only `A_TRY` and `B_TRY`). Left out of the comparison.
pub const SCRATCH_VARS: &[&str] = &[];
/// Boots of one case at most: the first, and one more after a reset.
pub const MAX_BOOTS: usize = 2;
const MAIN: &str = "grubenv";
const FALLBACK: &str = "grubenv.good";

/// What the model says the main grubenv holds after a boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainAfter {
    /// GRUB does not write it (it could not load it).
    Unchanged,
    /// These variables (effective values).
    Vars(ByteVars),
}

/// The model's prediction for one boot from `main` and `fallback`.
pub fn model_step(main: &EnvFile, fallback: &EnvFile) -> (GrubChoice, MainAfter) {
    let Some(raw) = parse(main) else {
        let fb = parse(fallback).map(|r| model_vars(&r.effective()));
        let choice = fallback_boot(fb.as_ref()).map_or(GrubChoice::Waiting, GrubChoice::Boot);
        return (choice, MainAfter::Unchanged);
    };
    let before = raw.effective();
    let mut vars = model_vars(&before);
    let choice = match RaucGrub.boot(&mut vars) {
        BootDecision::Boot(slot) => GrubChoice::Boot(slot),
        BootDecision::NoSlotResetCounters => GrubChoice::Reset,
    };
    (choice, MainAfter::Vars(model_bytes(&vars)))
}

fn parse(file: &EnvFile) -> Option<RawEnv> {
    match file {
        EnvFile::Bytes(bytes) => RawEnv::parse(bytes),
        EnvFile::Missing => None,
    }
}

fn without_scratch(mut vars: ByteVars) -> ByteVars {
    vars.retain(|k, _| !SCRATCH_VARS.iter().any(|s| s.as_bytes() == k.as_slice()));
    vars
}

/// One boot where GRUB and the model differ.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub case: String,
    pub boot: usize,
    pub detail: String,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} boot {}: {}", self.case, self.boot, self.detail)
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub envs: usize,
    pub boots: usize,
    pub disagreements: Vec<Disagreement>,
    /// Cases whose main grubenv repeats a name: no model of GRUB's boot there (GRUB
    /// reads the last line, `save_env` rewrites the first), so instead bascule must
    /// flag the env (`status` warns, the next commit rewrites it); GRUB's choices.
    pub flagged: Vec<String>,
}

impl Report {
    /// The summary line: `envs N, boots N, disagreements N` (and `flagged N`).
    pub fn summary(&self) -> String {
        let flagged = match self.flagged.len() {
            0 => String::new(),
            n => format!(" (flagged, not predicted: {n})"),
        };
        format!(
            "envs {}, boots {}, disagreements {}{flagged}",
            self.envs,
            self.boots,
            self.disagreements.len()
        )
    }
}

/// Whether bascule's GRUB store flags `main` as holding duplicate names.
fn bascule_flags_duplicates(main: &[u8]) -> bool {
    use bascule::grub_store::GrubStore;
    use bascule_hal::env::MemFiles;
    use bascule_hal::EnvStore;
    let mut files = MemFiles::new();
    files.insert(MAIN, main);
    let mut store = GrubStore::new(files, MemFiles::new(), MAIN);
    store.load().is_ok()
        && store
            .degraded()
            .is_some_and(|w| w.contains("more than one line"))
}

/// The names `main` repeats, when `load_env` reads it at all.
fn duplicate_names(main: &EnvFile) -> Vec<Vec<u8>> {
    let Some(raw) = parse(main) else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = Vec::new();
    for (name, _) in &raw.pairs {
        if !seen.insert(name.clone()) && !repeated.contains(name) {
            repeated.push(name.clone());
        }
    }
    repeated
}

/// QEMU instances run at once: `BASCULE_QEMU_JOBS`, default 2 (one per core of a
/// 2-core CI machine; TCG runs one vCPU on one host thread).
pub fn jobs() -> usize {
    std::env::var("BASCULE_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// What booting one case gave.
struct CaseRun {
    choices: Vec<GrubChoice>,
    boots: usize,
    disagreements: Vec<Disagreement>,
    flagged: Option<String>,
}

/// Boots every case on `jobs` QEMUs at once; `progress` is called with each case's
/// name and its boots' choices as cases finish. The report lists disagreements in
/// corpus order.
pub fn run(
    rig: &GrubRig,
    cases: &[GrubCase],
    jobs: usize,
    progress: impl FnMut(&str, &[GrubChoice]) + Send,
) -> Result<Report, GrubError> {
    let next = AtomicUsize::new(0);
    let progress = Mutex::new(progress);
    let results: Mutex<Vec<(usize, Result<CaseRun, GrubError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let run = run_case(rig, case);
                if let Ok(run) = &run {
                    (progress.lock().expect("progress lock"))(&case.name, &run.choices);
                }
                results.lock().expect("results lock").push((i, run));
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    let mut report = Report::default();
    for (_, run) in results {
        let run = run?;
        report.envs += 1;
        report.boots += run.boots;
        report.disagreements.extend(run.disagreements);
        report.flagged.extend(run.flagged);
    }
    Ok(report)
}

fn write_file(disk: &EspDisk, name: &str, file: &EnvFile) -> Result<(), GrubError> {
    match file {
        EnvFile::Bytes(bytes) => disk.write(name, bytes),
        EnvFile::Missing => Ok(()),
    }
}

fn read_file(disk: &EspDisk, name: &str) -> Result<EnvFile, GrubError> {
    Ok(disk.read(name)?.map_or(EnvFile::Missing, EnvFile::Bytes))
}

fn run_case(rig: &GrubRig, case: &GrubCase) -> Result<CaseRun, GrubError> {
    let disk = rig.disk(&case.name)?;
    write_file(&disk, MAIN, &case.main)?;
    write_file(&disk, FALLBACK, &case.fallback)?;
    let mut main = case.main.clone();
    let mut report = CaseRun {
        choices: Vec::new(),
        boots: 0,
        disagreements: Vec::new(),
        flagged: None,
    };
    let repeated = duplicate_names(&case.main);
    if let (false, EnvFile::Bytes(bytes)) = (repeated.is_empty(), &case.main) {
        let run = rig.boot(&disk)?;
        report.boots += 1;
        report.choices.push(run.choice);
        let names: Vec<String> = repeated
            .iter()
            .map(|n| n.escape_ascii().to_string())
            .collect();
        let what = format!(
            "{} repeats {}: GRUB {:?}",
            case.name,
            names.join(", "),
            run.choice
        );
        if !bascule_flags_duplicates(bytes) {
            report.disagreements.push(Disagreement {
                case: case.name.clone(),
                boot: 1,
                detail: format!("{what}, and bascule does not flag the env"),
            });
        }
        report.flagged = Some(what);
        disk.remove()?;
        return Ok(report);
    }
    for boot in 1..=MAX_BOOTS {
        let run = rig.boot(&disk)?;
        report.boots += 1;
        report.choices.push(run.choice);
        let real_main = read_file(&disk, MAIN)?;
        let real_fallback = read_file(&disk, FALLBACK)?;
        let diffs = compare(&main, case, run.choice, &real_main, &real_fallback);
        report
            .disagreements
            .extend(diffs.into_iter().map(|detail| Disagreement {
                case: case.name.clone(),
                boot,
                detail,
            }));
        main = real_main;
        if run.choice != GrubChoice::Reset {
            break;
        }
    }
    disk.remove()?;
    Ok(report)
}

/// The differences of one boot from `main`, as sentences.
fn compare(
    main: &EnvFile,
    case: &GrubCase,
    choice: GrubChoice,
    real_main: &EnvFile,
    real_fallback: &EnvFile,
) -> Vec<String> {
    let (want_choice, want_main) = model_step(main, &case.fallback);
    let mut diffs = Vec::new();
    let env = parse(main).map_or("(unreadable)".into(), |r| show(&r.effective()));
    if choice != want_choice {
        diffs.push(format!(
            "env {env} -> GRUB {choice:?}, model {want_choice:?}"
        ));
    }
    match want_main {
        MainAfter::Unchanged if real_main != main => {
            diffs.push(format!(
                "env {env} -> GRUB changed the grubenv it could not load"
            ));
        }
        MainAfter::Unchanged => {}
        MainAfter::Vars(want) => {
            let got = parse(real_main).map(|r| without_scratch(r.effective()));
            if got.as_ref() != Some(&without_scratch(want.clone())) {
                let got = got.map_or("(unreadable)".into(), |g| show(&g));
                diffs.push(format!(
                    "env {env} -> GRUB saved {got}, model {}",
                    show(&want)
                ));
            }
        }
    }
    if let (Some(allowed), GrubChoice::Boot(slot)) = (&case.may_boot, choice) {
        if !allowed.contains(&slot) {
            diffs.push(format!(
                "GRUB booted slot {slot}, which is not confirmed (may boot: {allowed:?})"
            ));
        }
    }
    if real_fallback != &case.fallback {
        diffs.push("grubenv.good changed".into());
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;
    use bascule_partitions::SlotName;

    #[test]
    fn model_boots_the_fallback_only_when_the_main_env_is_unreadable() {
        let cases = crate::grub_corpus::unreadable_cases();
        for case in &cases[..3] {
            let (choice, after) = model_step(&case.main, &case.fallback);
            assert_eq!(choice, GrubChoice::Boot(SlotName::A), "{}", case.name);
            assert_eq!(after, MainAfter::Unchanged);
        }
        let (choice, _) = model_step(&cases[3].main, &cases[3].fallback);
        assert_eq!(choice, GrubChoice::Waiting);
    }
}

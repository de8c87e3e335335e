//! Power-cut campaign for the health history ([`History`] over [`MemFiles`], which
//! keeps only synced content and synced directory entries across a cut): append a few
//! records, from an empty directory, after a torn line left by an earlier cut, and
//! at the size bound (one append rewrites the file through the staging file and a
//! rename); cut power before each append, write, fsync, rename and directory fsync,
//! after every byte of each append (and of the rewrite's staging file: every byte of
//! its first and last KiB, every 61st between), and with the rename journalled
//! before the directory sync. After the reboot, reading the history must give every record
//! whose append returned, possibly the one being appended (whole), never a half
//! record and never an error; and the next append must work and read back. Each
//! failure names its cut by index and plan. A planted writer whose fsyncs do nothing
//! must fail the campaign. Run with `--nocapture` to see the number of cut points.
use bascule::health::history::{encode, History, Outcome, Read, Record, MAX_BYTES};
use bascule_hal::block::CutPlan;
use bascule_hal::env::{EnvFiles, MemFiles};
use bascule_hal::HalError;
use bascule_partitions::SlotName;

/// One counted file operation of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOp {
    /// A `write` or `append` of this many bytes: cut after each of them.
    Bytes(u64),
    Rename,
    Sync,
}

/// [`MemFiles`] that logs the operations it counted; with `drop_syncs`, the planted
/// bug: `sync_file` does nothing (the appended bytes never become durable).
struct Logged {
    files: MemFiles,
    log: Vec<FileOp>,
    drop_syncs: bool,
}

impl Logged {
    fn run<T>(
        &mut self,
        op: FileOp,
        f: impl FnOnce(&mut MemFiles) -> Result<T, HalError>,
    ) -> Result<T, HalError> {
        let before = self.files.ops_count();
        let result = f(&mut self.files);
        if self.files.ops_count() > before {
            self.log.push(op);
        }
        result
    }
}

impl EnvFiles for Logged {
    fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError> {
        self.files.read(name, max_len)
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        self.run(FileOp::Bytes(bytes.len() as u64), |f| f.write(name, bytes))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        self.run(FileOp::Bytes(bytes.len() as u64), |f| f.append(name, bytes))
    }

    fn sync_file(&mut self, name: &str) -> Result<(), HalError> {
        if self.drop_syncs {
            return Ok(());
        }
        self.run(FileOp::Sync, |f| f.sync_file(name))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError> {
        self.run(FileOp::Rename, |f| f.rename(from, to))
    }

    fn sync_dir(&mut self) -> Result<(), HalError> {
        self.run(FileOp::Sync, MemFiles::sync_dir)
    }

    fn path_of(&self, name: &str) -> String {
        self.files.path_of(name)
    }
}

fn record(n: u64, output_len: usize) -> Record {
    Record {
        time: 1_764_547_200 + n,
        slot: SlotName::B,
        version: Some(format!("1.0.{n}")),
        manifest: Some(format!("{n:064x}")),
        outcome: Outcome::Failed,
        stage: Some("app".into()),
        check: Some("selftest".into()),
        reason: Some("sh exit status: 1".into()),
        output: Some("o".repeat(output_len)),
        boot_count: 1,
        action: Some("reboot".into()),
    }
}

/// A directory before the appends, and the records appended to it.
struct Scenario {
    label: &'static str,
    start: MemFiles,
    appends: Vec<Record>,
}

fn scenarios() -> Vec<Scenario> {
    let small: Vec<Record> = (10..13).map(|n| record(n, 40)).collect();
    let mut torn = encode(&record(0, 40));
    torn.extend_from_slice(&encode(&record(1, 40))[..50]);
    // Big records (a 2 KiB output tail): the first append fits under the bound, the
    // second rewrites the file, the third appends to the rewritten one.
    let line = encode(&record(0, 2048)).len();
    let filled: Vec<u8> = (0..MAX_BYTES / line - 1)
        .flat_map(|n| encode(&record(n as u64, 2048)))
        .collect();
    vec![
        Scenario {
            label: "empty directory",
            start: MemFiles::new(),
            appends: small.clone(),
        },
        Scenario {
            label: "torn line from an earlier cut",
            start: with_history(&torn),
            appends: small,
        },
        Scenario {
            label: "at the size bound",
            start: with_history(&filled),
            appends: (100..103).map(|n| record(n, 2048)).collect(),
        },
    ]
}

fn with_history(bytes: &[u8]) -> MemFiles {
    let mut files = MemFiles::new();
    files.insert("health-history", bytes);
    files
}

/// What appending `records` to `start` under `plan` left: the files, how many
/// appends returned Ok, and the first error.
fn append_all(
    start: &MemFiles,
    plan: Option<CutPlan>,
    records: &[Record],
    drop_syncs: bool,
) -> (Logged, usize, Option<String>) {
    let mut files = start.clone();
    if let Some(plan) = plan {
        files.arm(plan);
    }
    let mut history = History::over(Logged {
        files,
        log: Vec::new(),
        drop_syncs,
    });
    for (done, r) in records.iter().enumerate() {
        if let Err(e) = history.append(r) {
            return (history.into_inner(), done, Some(e.to_string()));
        }
    }
    (history.into_inner(), records.len(), None)
}

/// The clean run: the log, and the records read after each number of appends.
fn clean_run(s: &Scenario) -> (Vec<FileOp>, Vec<Vec<Record>>) {
    let mut history = History::over(Logged {
        files: s.start.clone(),
        log: Vec::new(),
        drop_syncs: false,
    });
    let mut states = vec![history.read().unwrap().records];
    for r in &s.appends {
        history.append(r).unwrap();
        states.push(history.read().unwrap().records);
    }
    (history.into_inner().log, states)
}

/// Every byte of a write or append up to this length is a cut point; of a longer
/// one (the rewrite's 32 KiB staging file, which has no durable name until its
/// rename), every byte of its first and last `EDGE` and every `STRIDE`-th between
/// (every byte of it takes minutes in a debug build).
const EVERY_BYTE: u64 = 4096;
const EDGE: u64 = 1024;
const STRIDE: u64 = 61;

/// Every cut of the logged operations: before each (and after the last), after
/// each byte of a write or append (see [`EVERY_BYTE`]), and with each rename (and
/// sync) landing.
fn plans(log: &[FileOp]) -> Vec<CutPlan> {
    let mut plans: Vec<CutPlan> = (0..=log.len() as u64).map(CutPlan::before).collect();
    for (at, op) in log.iter().enumerate() {
        let at = at as u64;
        match *op {
            FileOp::Bytes(len) => plans.extend(
                (1..len)
                    .filter(|k| {
                        len <= EVERY_BYTE || *k <= EDGE || *k >= len - EDGE || k % STRIDE == 0
                    })
                    .map(|k| CutPlan::torn_prefix(at, k)),
            ),
            FileOp::Rename | FileOp::Sync => plans.push(CutPlan::torn_prefix(at, 1)),
        }
    }
    plans
}

/// Reboots after a cut: the history must read as `states[done]` or, when the cut
/// record landed whole, `states[done + 1]`; then one more append must read back.
fn check_after_cut(files: &MemFiles, states: &[Vec<Record>], done: usize) -> Result<bool, String> {
    let mut rebooted = History::over(files.after_cut());
    let read: Read = rebooted.read().map_err(|e| format!("read failed: {e}"))?;
    let landed = match states.get(done + 1) {
        Some(next) if read.records == *next => true,
        _ if read.records == states[done] => false,
        _ => {
            return Err(format!(
                "read {} records (skipped {}), expected {} or {}",
                read.records.len(),
                read.skipped,
                states[done].len(),
                states.get(done + 1).map_or(0, Vec::len)
            ))
        }
    };
    let next = record(999, 40);
    rebooted
        .append(&next)
        .map_err(|e| format!("the next append failed: {e}"))?;
    let mut expected = read.records;
    expected.push(next);
    let after = rebooted.read().map_err(|e| format!("read failed: {e}"))?;
    if !expected.ends_with(&after.records) || after.records.last() != expected.last() {
        return Err(format!(
            "after the next append: {} records, expected a suffix of {} ending with it",
            after.records.len(),
            expected.len()
        ));
    }
    Ok(landed)
}

/// Cuts every operation of the scenario's appends; returns the number of cut points,
/// or the first cut after which the history is wrong.
fn campaign(s: &Scenario, drop_syncs: bool) -> Result<usize, String> {
    let (log, states) = clean_run(s);
    let plans = plans(&log);
    let (mut kept, mut lost) = (0, 0);
    for (i, plan) in plans.iter().enumerate() {
        let (files, done, err) = append_all(&s.start, Some(*plan), &s.appends, drop_syncs);
        let fail =
            |why: String| format!("{} cut #{i} {plan:?} after {done} appends: {why}", s.label);
        if let Some(err) = &err {
            if !err.contains("power cut") {
                return Err(fail(format!("the append failed with {err}")));
            }
        }
        match check_after_cut(&files.files, &states, done).map_err(fail)? {
            true => kept += 1,
            false => lost += 1,
        }
    }
    assert!(
        kept > 0 && lost > 0,
        "{}: the campaign did not see the cut record both lost and kept",
        s.label
    );
    println!(
        "{}: {} operations, {} cut points ({lost} lost the record being appended, {kept} kept it)",
        s.label,
        log.len(),
        plans.len()
    );
    Ok(plans.len())
}

#[test]
fn no_record_is_lost_or_half_read_across_a_power_cut() {
    let mut total = 0;
    for s in scenarios() {
        total += campaign(&s, false).unwrap_or_else(|e| panic!("{e}"));
    }
    println!("health history total: {total} cut points");
}

#[test]
fn the_size_bound_scenario_rewrites_the_file() {
    let s = &scenarios()[2];
    let (log, states) = clean_run(s);
    assert!(log.contains(&FileOp::Rename), "{log:?}");
    assert!(
        states[2].len() < states[1].len(),
        "the rewrite dropped nothing"
    );
    assert_eq!(states[3].last(), s.appends.last());
}

#[test]
fn the_campaign_catches_appends_that_are_never_synced() {
    let err = campaign(&scenarios()[0], true)
        .expect_err("an append that is not fsynced can be lost; the campaign must say so");
    assert!(err.contains("expected"), "{err}");
}

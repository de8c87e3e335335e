//! Power-cut campaign for the security floor file ([`FileFloor`] over [`MemFiles`],
//! which keeps only synced content and synced directory entries across a cut): raise
//! the floor, cut power before each write, fsync, rename and directory fsync, after
//! every byte of the staged file's write, and with the rename journalled before the
//! directory sync; reboot and read the floor. It must be the old or the new value:
//! never lost (lower than the old one, or 0), never garbage (a read error), and the
//! new value whenever `raise` said it succeeded. Each failure names its cut by index
//! and plan. A planted writer that renames before it fsyncs must fail the campaign.
//! Run with `--nocapture` to see the number of cut points.
use bascule_hal::block::CutPlan;
use bascule_hal::env::{EnvFiles, MemFiles};
use bascule_hal::floor::encode_floor;
use bascule_hal::{FileFloor, HalError, SecurityFloorStore};

const NAME: &str = "security-floor";
const TMP: &str = "security-floor.new";

/// Raises the floor in a directory to a value.
type Raise = fn(MemFiles, u32) -> (MemFiles, Result<bool, HalError>);

fn real_raise(files: MemFiles, to: u32) -> (MemFiles, Result<bool, HalError>) {
    let mut floor = FileFloor::new(files, NAME);
    let raised = floor.raise(to);
    (floor.into_inner(), raised)
}

/// The classic bug: rename (and directory sync) before the staged file's fsync.
fn rename_before_fsync(mut files: MemFiles, to: u32) -> (MemFiles, Result<bool, HalError>) {
    let raised = (|| {
        files.write(TMP, encode_floor(to).as_bytes())?;
        files.rename(TMP, NAME)?;
        files.sync_dir()?;
        files.sync_file(NAME)?;
        Ok(true)
    })();
    (files, raised)
}

/// The directory before the raise: the floor file holding `old` (absent when 0), and a
/// staging file left by an earlier cut when `stale_tmp`.
fn start(old: u32, stale_tmp: bool) -> MemFiles {
    let mut files = MemFiles::new();
    if old > 0 {
        files.insert(NAME, encode_floor(old).as_bytes());
    }
    if stale_tmp {
        files.insert(TMP, b"99");
    }
    files
}

/// Cuts every operation of raising `old` to `new` with `raise`; returns the number of
/// cut points, or the first cut after which the floor is neither old nor new.
fn campaign(raise: Raise, old: u32, new: u32, stale_tmp: bool) -> Result<usize, String> {
    let label = format!("floor {old} -> {new}, stale staging file: {stale_tmp}");
    let (clean, raised) = raise(start(old, stale_tmp), new);
    assert!(raised.unwrap(), "{label}: clean raise wrote nothing");
    let ops = clean.ops_count();
    let staged = encode_floor(new).len() as u64;
    let mut plans: Vec<CutPlan> = (0..=ops).map(CutPlan::before).collect();
    // Every torn prefix of the staged write, and every operation "landing" while the
    // cut hits it (for a rename: the journal committed it before the directory sync).
    plans.extend((1..staged).map(|k| CutPlan::torn_prefix(0, k)));
    plans.extend((1..ops).map(|at| CutPlan::torn_prefix(at, 1)));
    let (mut seen_old, mut seen_new) = (0, 0);
    for (i, plan) in plans.iter().enumerate() {
        let mut files = start(old, stale_tmp);
        files.arm(*plan);
        let (files, raised) = raise(files, new);
        let mut rebooted = FileFloor::new(files.after_cut(), NAME);
        match rebooted.read() {
            Ok(v) if v == new => seen_new += 1,
            Ok(v) if v == old && raised.is_err() => seen_old += 1,
            other => {
                return Err(format!(
                    "{label} cut #{i} {plan:?}: raise gave {raised:?}, floor after reboot {other:?}"
                ))
            }
        }
    }
    assert!(
        seen_old > 0 && seen_new > 0,
        "{label}: campaign did not exercise both outcomes"
    );
    println!(
        "{label}: {} cut points, {seen_old} old, {seen_new} new",
        plans.len()
    );
    Ok(plans.len())
}

const CASES: [(u32, u32); 3] = [(0, 1), (3, 12), (9, u32::MAX)];

#[test]
fn floor_raise_is_atomic_across_a_power_cut() {
    let mut total = 0;
    for (old, new) in CASES {
        for stale_tmp in [false, true] {
            total += campaign(real_raise, old, new, stale_tmp).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    println!("security floor total: {total} cut points");
}

#[test]
fn the_campaign_catches_a_rename_before_fsync() {
    let err = campaign(rename_before_fsync, 3, 12, false)
        .expect_err("renaming before fsync can lose the floor; the campaign must say so");
    assert!(err.contains("FloorCorrupt"), "{err}");
}

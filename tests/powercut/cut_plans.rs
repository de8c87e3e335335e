//! The cut points of the power rail: which cuts each logged operation gets (the
//! default subset of a device's, a directory's in `MemFiles`'s terms), their stable
//! order, and a cut as text for reports. [`super::rail::PowerRail::plans`] maps them
//! onto the rail's global order.
use bascule_hal::block::{BlockOp, Tear};
use bascule_hal::CutPlan;

use super::rail::{FileOp, Op, RailCut, RailOp};

/// A fixed order of tears for stable reports.
pub fn tear_key(tear: Tear) -> (u8, u64) {
    match tear {
        Tear::None => (0, 0),
        Tear::Prefix(n) => (1, n),
        Tear::Sectors { landed, .. } => (2, landed),
    }
}

/// The default subset: per operation, nothing lands; for a write, also a prefix that
/// ends mid-sector and the even sectors; for a sync with pending bytes, the even
/// dirty sectors.
pub fn sampled_plans(ops: &[BlockOp], sector: u32) -> Vec<CutPlan> {
    let mut plans = Vec::new();
    let mut pending = 0u64;
    for (i, op) in ops.iter().enumerate() {
        let at = i as u64;
        plans.push(CutPlan::before(at));
        let bytes = match *op {
            BlockOp::Write { len, .. } => {
                pending += len;
                if len > 1 {
                    plans.push(CutPlan::torn_prefix(at, len / 2 + u64::from(sector) / 3));
                }
                len
            }
            BlockOp::Sync => std::mem::take(&mut pending),
        };
        if bytes > u64::from(sector) {
            plans.push(CutPlan::torn_sectors(at, sector, 0x5555_5555_5555_5555));
        }
    }
    plans
}

/// A directory's cut plans, in `MemFiles`'s terms (hal/src/env/files.rs), per
/// operation: the plain cut (nothing of it lands; unsynced content and entries are
/// lost); for a `write`, torn prefixes that land in the file's durable content (the
/// default run one that ends mid-sector, the full run every `prefix_step` bytes); for
/// a `rename`, the journal committing it before the directory sync. A cut `sync_file`
/// or `sync_dir` lands nothing in `MemFiles`, so it has no other variant.
pub fn file_plans(ops: &[&FileOp], full: bool, prefix_step: u64, sector: u32) -> Vec<CutPlan> {
    let mut plans = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = i as u64;
        plans.push(CutPlan::before(at));
        match op {
            FileOp::Write { len, .. } | FileOp::Append { len, .. } if full => {
                let step = prefix_step.max(1);
                let mut n = step;
                while n < *len {
                    plans.push(CutPlan::torn_prefix(at, n));
                    n += step;
                }
            }
            FileOp::Write { len, .. } | FileOp::Append { len, .. } if *len > 1 => {
                plans.push(CutPlan::torn_prefix(at, len / 2 + u64::from(sector) / 3));
            }
            FileOp::Rename { .. } => plans.push(CutPlan::torn_prefix(at, 1)),
            _ => {}
        }
    }
    plans
}

/// A cut plan as text for reports: "op 37 (dev 1 write @0x9000+4096), torn prefix 2218".
pub fn describe(cut: &RailCut, ops: &[RailOp], names: &[&str]) -> String {
    let what = match ops.get(cut.at as usize) {
        None => "after the last operation".to_string(),
        Some(RailOp { device, op }) => {
            let name = names[*device];
            match op {
                Op::Block(BlockOp::Write { offset, len }) => {
                    format!("{name} write @{offset:#x}+{len}")
                }
                Op::Block(BlockOp::Sync) => format!("{name} sync"),
                Op::File(FileOp::Write { name: file, len }) => {
                    format!("{name}: write {file} ({len} bytes)")
                }
                Op::File(FileOp::Append { name: file, len }) => {
                    format!("{name}: append {len} bytes to {file}")
                }
                Op::File(FileOp::SyncFile { name: file }) => format!("{name}: fsync {file}"),
                Op::File(FileOp::Rename { from, to }) => {
                    format!("{name}: rename {from} over {to}")
                }
                Op::File(FileOp::SyncDir) => format!("{name}: fsync of the directory"),
            }
        }
    };
    let is_rename = matches!(
        ops.get(cut.at as usize),
        Some(RailOp {
            op: Op::File(FileOp::Rename { .. }),
            ..
        })
    );
    let tear = match cut.tear {
        Tear::None => "nothing of it lands".to_string(),
        Tear::Prefix(n) if n > 0 && is_rename => {
            "the journal committed the rename, the directory was not synced".to_string()
        }
        Tear::Prefix(n) => format!("torn: first {n} bytes land"),
        Tear::Sectors {
            sector_size,
            landed,
        } => {
            format!("torn: {sector_size}-byte sectors {landed:#x} land")
        }
    };
    format!("cut at op {} ({what}), {tear}", cut.at)
}

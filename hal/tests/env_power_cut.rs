//! Power-cut campaigns for every environment store: commit a new state over an old one,
//! cut power at every operation, after every byte of every write and sync, and with
//! torn 512-byte sectors; reboot from the durable bytes and check that `load` returns
//! exactly the old or exactly the new variables. Each failure names its cut by index
//! and plan. Run with `--nocapture` to see the number of cut points per backend.
use bascule_hal::block::{cut_plans, BlockOp, CutPlan};
use bascule_hal::env::grub::GrubEnv;
use bascule_hal::env::native::{NativeEnv, NativeLayout};
use bascule_hal::env::uboot::{UbootEnv, UbootLayout};
use bascule_hal::env::MemFiles;
use bascule_hal::{BlockDevice, EnvStore, EnvVars, FaultyBlock, HalError, MemBlock};

const DEVICE_SIZE: usize = 0x8000;

fn vars(tag: &str, n: usize) -> EnvVars {
    let mut v: EnvVars = (0..n)
        .map(|i| (format!("VAR_{i}"), format!("{tag}-{i}")))
        .collect();
    v.insert("BOOT_ORDER", format!("{tag} B"));
    v
}

/// Opens a store on a device.
type Open = for<'a> fn(&'a mut dyn BlockDevice) -> Box<dyn EnvStore + 'a>;

fn open_uboot_redundant(dev: &mut dyn BlockDevice) -> Box<dyn EnvStore + '_> {
    let layout = UbootLayout {
        offset: 0x2000,
        size: 0x1000,
        redundant_offset: Some(0x4000),
    };
    Box::new(UbootEnv::new(dev, layout).unwrap())
}

fn open_uboot_single(dev: &mut dyn BlockDevice) -> Box<dyn EnvStore + '_> {
    let layout = UbootLayout {
        offset: 0x2000,
        size: 0x1000,
        redundant_offset: None,
    };
    Box::new(UbootEnv::new(dev, layout).unwrap())
}

fn open_native(dev: &mut dyn BlockDevice) -> Box<dyn EnvStore + '_> {
    // Copies not sector-aligned, so torn sectors straddle the copy boundaries.
    let layout = NativeLayout {
        offsets: [0x1100, 0x3100],
        size: 0x800,
    };
    Box::new(NativeEnv::new(dev, layout).unwrap())
}

/// Durable bytes of a device on which `history` was committed in order.
fn device_after(open: Open, history: &[EnvVars]) -> Vec<u8> {
    let mut dev = MemBlock::new("env", DEVICE_SIZE);
    for state in history {
        open(&mut dev).commit(state).unwrap();
    }
    dev.durable().to_vec()
}

/// [`cut_plans`] plus every combination of landed sectors for operations touching at
/// most 8 sectors of 512 bytes.
fn all_plans(ops: &[BlockOp]) -> Vec<CutPlan> {
    let mut plans = cut_plans(ops, 1, 512);
    let mut dirty = std::collections::BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let sectors = match *op {
            BlockOp::Write { offset, len } => {
                let touched = offset / 512..(offset + len).div_ceil(512);
                dirty.extend(touched.clone());
                touched.count()
            }
            BlockOp::Sync => std::mem::take(&mut dirty).len(),
        };
        if sectors <= 8 {
            for landed in 0..(1u64 << sectors) {
                plans.push(CutPlan::torn_sectors(i as u64, 512, landed));
            }
        }
    }
    plans.sort_by_key(|p| (p.at, format!("{:?}", p.tear)));
    plans.dedup();
    plans
}

/// What a campaign saw.
#[derive(Default, Debug)]
struct Outcome {
    cuts: usize,
    old: usize,
    new: usize,
    errors: Vec<(usize, CutPlan, HalError)>,
}

/// Commits `new` over the state left by `history` (whose last entry is the old state)
/// under every cut plan and classifies what a reboot loads; panics on any other state.
fn campaign(label: &str, open: Open, history: &[EnvVars], new: &EnvVars) -> Outcome {
    let base = device_after(open, history);
    let old = history.last().unwrap();
    let mut clean = FaultyBlock::new("env", base.clone());
    open(&mut clean).commit(new).unwrap();
    let plans = all_plans(clean.ops());
    let mut out = Outcome::default();
    for (i, plan) in plans.iter().enumerate() {
        let mut dev = FaultyBlock::new("env", base.clone());
        dev.arm(*plan);
        let committed = open(&mut dev).commit(new);
        let mut rebooted = dev.after_cut();
        out.cuts += 1;
        let loaded = open(&mut rebooted).load();
        match loaded {
            Ok(v) if v == *new => out.new += 1,
            Ok(v) if v == *old => {
                assert!(
                    committed.is_err(),
                    "{label} cut #{i} {plan:?}: commit said Ok but old state loads"
                );
                out.old += 1;
            }
            Ok(v) => panic!("{label} cut #{i} {plan:?}: loaded a third state {v:?}"),
            Err(e) => out.errors.push((i, *plan, e)),
        }
    }
    out
}

fn assert_atomic(label: &str, out: &Outcome) {
    if let Some((i, plan, e)) = out.errors.first() {
        panic!(
            "{label}: {} cuts failed to load; first: cut #{i} {plan:?}: {e}",
            out.errors.len()
        );
    }
    assert!(
        out.old > 0 && out.new > 0,
        "{label}: campaign did not exercise both outcomes: {out:?}"
    );
    println!(
        "{label}: {} cut points, {} old, {} new",
        out.cuts, out.old, out.new
    );
}

#[test]
fn uboot_redundant_commit_is_atomic() {
    let (a, b, c) = (vars("A", 20), vars("B", 30), vars("C", 10));
    let mut total = 0;
    // Second copy blank; second copy holding an older valid state; flag wrapping.
    let mut wrap: Vec<EnvVars> = (0..254).map(|i| vars(&format!("w{i}"), 3)).collect();
    wrap.push(a.clone());
    for (label, history) in [
        ("U-Boot redundant, copy 1 blank", vec![a.clone()]),
        ("U-Boot redundant, copy 0 older", vec![c.clone(), a.clone()]),
        ("U-Boot redundant, flag 0xff -> 0x00", wrap),
    ] {
        let out = campaign(label, open_uboot_redundant, &history, &b);
        assert_atomic(label, &out);
        total += out.cuts;
    }
    println!("U-Boot redundant total: {total} cut points");
}

#[test]
fn native_commit_is_atomic() {
    let (a, b, c) = (vars("A", 20), vars("B", 30), vars("C", 10));
    let mut total = 0;
    for (label, history) in [
        ("native, copy 1 blank", vec![a.clone()]),
        ("native, copy 0 older", vec![c, a]),
    ] {
        let out = campaign(label, open_native, &history, &b);
        assert_atomic(label, &out);
        total += out.cuts;
    }
    println!("native total: {total} cut points");
}

#[test]
fn uboot_single_copy_cut_is_detected_not_garbage() {
    let (a, b) = (vars("A", 20), vars("B", 30));
    let out = campaign("U-Boot single", open_uboot_single, &[a], &b);
    // The format cannot make this atomic: some cuts must leave a bad CRC, and each of
    // them must be reported as EnvCorrupt naming the store and the copy.
    assert!(
        !out.errors.is_empty(),
        "expected torn single-copy commits to be detected"
    );
    for (i, plan, e) in &out.errors {
        let msg = e.to_string();
        let named = msg.starts_with("U-Boot env env @0x2000: no valid copy")
            && msg.contains("copy 0 @0x2000: CRC32 mismatch");
        assert!(
            matches!(e, HalError::EnvCorrupt { .. }) && named,
            "cut #{i} {plan:?}: {msg}"
        );
    }
    println!(
        "U-Boot single: {} cut points, {} old, {} new, {} detected as corrupt (not power-safe)",
        out.cuts,
        out.old,
        out.new,
        out.errors.len()
    );
}

/// A directory holding `grubenv` after `history` was committed (and a stale
/// `grubenv.new` when `stale_tmp`).
fn grub_dir_after(history: &[EnvVars], stale_tmp: bool) -> MemFiles {
    let mut env = GrubEnv::new(MemFiles::new());
    for state in history {
        env.commit(state).unwrap();
    }
    let mut files = env.into_inner().after_cut();
    if stale_tmp {
        files.insert("grubenv.new", b"# GRUB Environment Block\nhalf=");
    }
    files
}

#[test]
fn grub_commit_is_atomic() {
    let (a, b) = (vars("A", 8), vars("B", 12));
    let mut total = 0;
    for stale_tmp in [false, true] {
        let label = format!("GRUB, stale grubenv.new: {stale_tmp}");
        let base = grub_dir_after(std::slice::from_ref(&a), stale_tmp);
        let mut clean = GrubEnv::new(base.clone());
        clean.commit(&b).unwrap();
        let ops = clean.into_inner().ops_count();
        // Before and after each of write, fsync, rename, fsync(dir); every torn prefix of
        // the temp file; the rename reaching the disk before the directory sync.
        let mut plans: Vec<CutPlan> = (0..=ops).map(CutPlan::before).collect();
        plans.extend((1..1024).map(|k| CutPlan::torn_prefix(0, k)));
        plans.push(CutPlan::torn_prefix(2, 1));
        let mut out = Outcome::default();
        for (i, plan) in plans.iter().enumerate() {
            let mut files = base.clone();
            files.arm(*plan);
            let mut env = GrubEnv::new(files);
            let committed = env.commit(&b);
            let mut rebooted = GrubEnv::new(env.into_inner().after_cut());
            out.cuts += 1;
            match rebooted.load() {
                Ok(v) if v == b => out.new += 1,
                Ok(v) if v == a && committed.is_err() => out.old += 1,
                other => panic!("{label} cut #{i} {plan:?}: {other:?}"),
            }
        }
        assert_atomic(&label, &out);
        total += out.cuts;
    }
    println!("GRUB total: {total} cut points");
}

//! A fault-injecting block device: cuts power at a chosen operation, optionally tearing it.
//!
//! [`FaultyBlock`] keeps two images, like redb's crash-test backend and [`MemBlock`]:
//! `live` bytes (what the running system reads back: every write) and `durable` bytes
//! (what survives a power cut: copied from live on `sync`). Every `write_at` and `sync`
//! is one numbered operation, counted from 0 and logged as a [`BlockOp`].
//!
//! A power-cut campaign runs the code under test once cleanly to learn
//! [`FaultyBlock::ops_count`], then for every [`CutPlan`] (see [`cut_plans`]) runs it
//! again on a fresh device armed with that plan, and checks what a reboot would see with
//! [`FaultyBlock::after_cut`].
//!
//! Semantics of a cut at operation `N` (invariants the tests rely on):
//! - operations `0..N` happened; operation `N` does not happen, except for the part a
//!   [`Tear`] lets reach the medium, which becomes durable;
//! - a torn write lands a prefix of its bytes, or a subset of the 512-byte (or other)
//!   sectors it touches; a torn sync makes a prefix of the pending (unsynced) bytes, or
//!   a subset of the dirty sectors, durable;
//! - every other unsynced write is lost: after the cut only durable bytes remain;
//! - operation `N` and every later call (reads included) fail with
//!   [`HalError::PowerCut`].
//!
//! To cut *after* the last operation, arm at `ops_count()` (or never arm and call
//! `after_cut`, which always means "power lost now").
use alloc::string::String;
use alloc::vec::Vec;

use super::{check_range, BlockDevice, MemBlock};
use crate::HalError;

/// One mutating operation seen by a [`FaultyBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    /// `write_at(offset, buf)` with `buf.len() == len`.
    Write { offset: u64, len: u64 },
    /// `sync()`.
    Sync,
}

/// How much of the cut operation reaches the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Nothing of operation `N` lands.
    None,
    /// The first `n` bytes land: of the write's buffer, or for a sync of the pending
    /// writes taken in the order they were made.
    Prefix(u64),
    /// Of the sectors the operation touches (a write: the sectors its range overlaps; a
    /// sync: the dirty sectors in address order), sector `i` lands when bit `i` of
    /// `landed` is set. Sectors past the 64th never land.
    Sectors { sector_size: u32, landed: u64 },
}

/// Where and how to cut power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPlan {
    /// Index of the operation that is cut (0-based; `ops_count()` cuts after the last).
    pub at: u64,
    /// What part of that operation lands.
    pub tear: Tear,
}

impl CutPlan {
    /// Cut before operation `at`: it does not happen at all.
    pub fn before(at: u64) -> Self {
        CutPlan {
            at,
            tear: Tear::None,
        }
    }
    /// Cut during operation `at`, after its first `bytes` bytes reached the medium.
    pub fn torn_prefix(at: u64, bytes: u64) -> Self {
        CutPlan {
            at,
            tear: Tear::Prefix(bytes),
        }
    }
    /// Cut during operation `at`, with the sectors selected by `landed` written.
    pub fn torn_sectors(at: u64, sector_size: u32, landed: u64) -> Self {
        CutPlan {
            at,
            tear: Tear::Sectors {
                sector_size,
                landed,
            },
        }
    }
}

/// Every cut point of a run whose operations were `ops`: before each operation and after
/// the last; for each write every torn prefix of `prefix_step` granularity (1 = every
/// byte; 0 = none); for each write and sync touching more than one sector of
/// `sector_size`, every single sector landing, every single sector missing, and the
/// even and the odd sectors landing (0 = no sector tears).
///
/// Sizes are taken from the log, so a sync's tears assume its pending bytes are the
/// writes since the previous sync.
pub fn cut_plans(ops: &[BlockOp], prefix_step: u64, sector_size: u32) -> Vec<CutPlan> {
    let mut plans = Vec::new();
    let mut pending: Vec<(u64, u64)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = i as u64;
        plans.push(CutPlan::before(at));
        let (ranges, bytes) = match *op {
            BlockOp::Write { offset, len } => {
                pending.push((offset, len));
                (alloc::vec![(offset, len)], len)
            }
            BlockOp::Sync => {
                let bytes = pending.iter().map(|&(_, len)| len).sum();
                (core::mem::take(&mut pending), bytes)
            }
        };
        if prefix_step > 0 {
            let mut n = prefix_step;
            while n < bytes {
                plans.push(CutPlan::torn_prefix(at, n));
                n += prefix_step;
            }
        }
        if sector_size > 0 {
            let count = sectors_touched(&ranges, u64::from(sector_size))
                .len()
                .min(64) as u32;
            for landed in sector_patterns(count) {
                plans.push(CutPlan::torn_sectors(at, sector_size, landed));
            }
        }
    }
    plans.push(CutPlan::before(ops.len() as u64));
    plans
}

/// The tear patterns of [`cut_plans`] over `count` sectors (none when `count < 2`).
fn sector_patterns(count: u32) -> Vec<u64> {
    let mut out = Vec::new();
    if count < 2 {
        return out;
    }
    let all = if count == 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    for i in 0..count {
        out.push(1 << i);
        out.push(all & !(1 << i));
    }
    out.push(all & 0x5555_5555_5555_5555);
    out.push(all & 0xaaaa_aaaa_aaaa_aaaa);
    out.sort_unstable();
    out.dedup();
    out
}

/// Indices of the sectors overlapped by `ranges`, ascending, without duplicates.
fn sectors_touched(ranges: &[(u64, u64)], sector_size: u64) -> Vec<u64> {
    let mut sectors = Vec::new();
    for &(offset, len) in ranges {
        if len == 0 {
            continue;
        }
        let first = offset / sector_size;
        let last = (offset + len - 1) / sector_size;
        // Only the first 64 sectors can ever land; do not enumerate huge writes.
        sectors.extend(first..=last.min(first.saturating_add(63)));
    }
    sectors.sort_unstable();
    sectors.dedup();
    sectors
}

/// A block device in memory that records its operations and can lose power at one.
#[derive(Debug, Clone)]
pub struct FaultyBlock {
    name: String,
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(u64, Vec<u8>)>,
    log: Vec<BlockOp>,
    plan: Option<CutPlan>,
    cut: bool,
}

impl FaultyBlock {
    /// A device whose live and durable content is `bytes`, not armed.
    pub fn new(name: &str, bytes: Vec<u8>) -> Self {
        FaultyBlock {
            name: String::from(name),
            durable: bytes.clone(),
            live: bytes,
            pending: Vec::new(),
            log: Vec::new(),
            plan: None,
            cut: false,
        }
    }

    /// A device starting from the durable bytes of `mem`.
    pub fn from_mem(mem: &MemBlock) -> Self {
        Self::new(&mem.name(), mem.durable().to_vec())
    }

    /// Arms the device: power is cut at `plan.at` as `plan.tear` says. Arming at an
    /// index already passed cuts at the next operation.
    pub fn arm(&mut self, plan: CutPlan) {
        self.plan = Some(plan);
    }

    /// How many operations (writes and syncs) were made so far.
    pub fn ops_count(&self) -> u64 {
        self.log.len() as u64
    }

    /// The operations made so far, in order.
    pub fn ops(&self) -> &[BlockOp] {
        &self.log
    }

    /// Whether power has been cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// The bytes as the running system sees them.
    pub fn live(&self) -> &[u8] {
        &self.live
    }

    /// The bytes that would survive a power cut now.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }

    /// The device as it is after a reboot: only durable bytes, no fault armed.
    pub fn after_cut(&self) -> MemBlock {
        MemBlock::from_bytes(&self.name, self.durable.clone())
    }

    /// Counts operation `op`; if the plan says so, cuts power during it and returns
    /// `true`.
    fn step(&mut self, op: BlockOp, buf: &[u8]) -> bool {
        let index = self.log.len() as u64;
        self.log.push(op);
        let plan = match self.plan {
            Some(plan) if plan.at <= index => plan,
            _ => return false,
        };
        match op {
            BlockOp::Write { offset, .. } => self.land_torn_write(offset, buf, plan.tear),
            BlockOp::Sync => self.land_torn_sync(plan.tear),
        }
        self.pending.clear();
        self.live.clone_from(&self.durable);
        self.cut = true;
        true
    }

    fn land_torn_write(&mut self, offset: u64, buf: &[u8], tear: Tear) {
        let start = offset as usize;
        match tear {
            Tear::None => {}
            Tear::Prefix(n) => {
                let n = (n as usize).min(buf.len());
                self.durable[start..start + n].copy_from_slice(&buf[..n]);
            }
            Tear::Sectors {
                sector_size,
                landed,
            } => {
                let ss = u64::from(sector_size.max(1));
                let first = offset / ss;
                for (i, sector) in sectors_touched(&[(offset, buf.len() as u64)], ss)
                    .into_iter()
                    .enumerate()
                {
                    debug_assert_eq!(sector, first + i as u64);
                    if i < 64 && landed & (1 << i) != 0 {
                        let lo = (sector * ss).max(offset) as usize;
                        let hi = ((sector + 1) * ss).min(offset + buf.len() as u64) as usize;
                        self.durable[lo..hi].copy_from_slice(&buf[lo - start..hi - start]);
                    }
                }
            }
        }
    }

    fn land_torn_sync(&mut self, tear: Tear) {
        match tear {
            Tear::None => {}
            Tear::Prefix(n) => {
                let mut left = n as usize;
                for (offset, data) in &self.pending {
                    let take = left.min(data.len());
                    let start = *offset as usize;
                    self.durable[start..start + take].copy_from_slice(&data[..take]);
                    left -= take;
                }
            }
            Tear::Sectors {
                sector_size,
                landed,
            } => {
                let ss = u64::from(sector_size.max(1));
                let ranges: Vec<(u64, u64)> = self
                    .pending
                    .iter()
                    .map(|(o, d)| (*o, d.len() as u64))
                    .collect();
                for (i, sector) in sectors_touched(&ranges, ss).into_iter().enumerate() {
                    if i < 64 && landed & (1 << i) != 0 {
                        let lo = (sector * ss) as usize;
                        let hi = ((sector + 1) * ss).min(self.live.len() as u64) as usize;
                        self.durable[lo..hi].copy_from_slice(&self.live[lo..hi]);
                    }
                }
            }
        }
    }

    fn check_power(&self) -> Result<(), HalError> {
        if self.cut {
            return Err(HalError::PowerCut);
        }
        Ok(())
    }
}

impl BlockDevice for FaultyBlock {
    fn len(&self) -> u64 {
        self.live.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        self.check_power()?;
        check_range(&self.name, offset, buf.len(), self.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.live[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        self.check_power()?;
        check_range(&self.name, offset, buf.len(), self.len())?;
        let op = BlockOp::Write {
            offset,
            len: buf.len() as u64,
        };
        if self.step(op, buf) {
            return Err(HalError::PowerCut);
        }
        let start = offset as usize;
        self.live[start..start + buf.len()].copy_from_slice(buf);
        self.pending.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), HalError> {
        self.check_power()?;
        if self.step(BlockOp::Sync, &[]) {
            return Err(HalError::PowerCut);
        }
        self.durable.clone_from(&self.live);
        self.pending.clear();
        Ok(())
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn run(dev: &mut FaultyBlock) -> Result<(), HalError> {
        dev.write_at(0, &[1; 1024])?;
        dev.sync()?;
        dev.write_at(512, &[2; 1024])?;
        dev.sync()
    }

    #[test]
    fn clean_run_counts_operations() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        run(&mut dev).unwrap();
        assert_eq!(dev.ops_count(), 4);
        assert_eq!(
            dev.ops()[2],
            BlockOp::Write {
                offset: 512,
                len: 1024
            }
        );
        assert_eq!(dev.after_cut().durable(), dev.live());
    }

    #[test]
    fn cut_before_drops_unsynced_writes_and_poisons() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::before(3));
        assert!(matches!(run(&mut dev), Err(HalError::PowerCut)));
        let mut b = [0u8; 1];
        assert!(matches!(dev.read_at(0, &mut b), Err(HalError::PowerCut)));
        let after = dev.after_cut();
        assert_eq!(&after.durable()[..1024], &[1; 1024][..]);
        assert_eq!(&after.durable()[1024..], &[0; 1024][..]);
    }

    #[test]
    fn torn_write_prefix_lands() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::torn_prefix(2, 10));
        assert!(run(&mut dev).is_err());
        let d = dev.after_cut();
        assert_eq!(&d.durable()[512..522], &[2; 10][..]);
        assert_eq!(&d.durable()[522..1024], &[1; 502][..]);
    }

    #[test]
    fn torn_write_sectors_land_partially() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::torn_sectors(2, 512, 0b10));
        assert!(run(&mut dev).is_err());
        let d = dev.after_cut();
        assert_eq!(&d.durable()[512..1024], &[1; 512][..]);
        assert_eq!(&d.durable()[1024..1536], &[2; 512][..]);
        assert_eq!(&d.durable()[1536..], &[0; 512][..]);
    }

    #[test]
    fn torn_sync_lands_some_dirty_sectors() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::torn_sectors(3, 512, 0b01));
        assert!(run(&mut dev).is_err());
        let d = dev.after_cut();
        assert_eq!(&d.durable()[512..1024], &[2; 512][..]);
        assert_eq!(&d.durable()[1024..1536], &[0; 512][..]);
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::torn_prefix(3, 3));
        assert!(run(&mut dev).is_err());
        assert_eq!(&dev.after_cut().durable()[511..516], &[1, 2, 2, 2, 1]);
    }

    #[test]
    fn cut_after_last_keeps_everything() {
        let mut dev = FaultyBlock::new("f", vec![0; 2048]);
        dev.arm(CutPlan::before(4));
        run(&mut dev).unwrap();
        assert!(!dev.is_cut());
        assert_eq!(&dev.after_cut().durable()[1024..1536], &[2; 512][..]);
    }

    #[test]
    fn plans_cover_every_operation_byte_and_sector() {
        let ops = [
            BlockOp::Write {
                offset: 0,
                len: 1024,
            },
            BlockOp::Sync,
        ];
        let plans = cut_plans(&ops, 1, 512);
        // before 0, 1023 prefixes, 2 sectors -> patterns {01,10}; before 1, 1023 prefixes,
        // 2 sector patterns; after last.
        assert_eq!(plans.len(), 1 + 1023 + 2 + 1 + 1023 + 2 + 1);
        assert_eq!(plans.last(), Some(&CutPlan::before(2)));
        assert_eq!(
            sector_patterns(3),
            vec![0b001, 0b010, 0b011, 0b100, 0b101, 0b110]
        );
    }
}

//! A power rail shared by several fault-injecting block devices.
//!
//! [`FaultyBlock`] counts and cuts the operations of one device. A board has several
//! (slot A, slot B, the boot environment) on one power supply, so a cut must be
//! numbered across all of them and must stop every device at once. [`PowerRail`]
//! owns the devices, numbers every `write_at`/`sync` on any of them in one global
//! sequence, and, when the armed global index comes up, arms the device that makes
//! that operation at its own next local index, so the tear semantics stay
//! `FaultyBlock`'s. After the cut every handle fails with [`HalError::PowerCut`]
//! (reads included) and [`PowerRail::durable`] gives what survives: durable bytes only.
//!
//! Invariant: the global log is the interleaving of the devices' own logs, so a
//! `(device, local index)` pair maps to exactly one global index and back.
use std::sync::{Arc, Mutex, MutexGuard};

use bascule_hal::block::{cut_plans, BlockOp, Tear};
use bascule_hal::{BlockDevice, CutPlan, FaultyBlock, HalError};

/// One cut of a whole board: the global operation index and how much of it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RailCut {
    pub at: u64,
    pub tear: Tear,
}

/// One operation in the board's global order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RailOp {
    pub device: usize,
    pub op: BlockOp,
}

struct Board {
    devices: Vec<FaultyBlock>,
    log: Vec<RailOp>,
    armed: Option<RailCut>,
    down: bool,
}

/// The devices of one board and their shared power supply.
#[derive(Clone)]
pub struct PowerRail {
    board: Arc<Mutex<Board>>,
}

impl PowerRail {
    /// A board whose device `i` starts with `images[i]` (live = durable), not armed.
    pub fn new(images: &[(&str, Vec<u8>)]) -> PowerRail {
        let devices = images
            .iter()
            .map(|(name, bytes)| FaultyBlock::new(name, bytes.clone()))
            .collect();
        let board = Board {
            devices,
            log: Vec::new(),
            armed: None,
            down: false,
        };
        PowerRail {
            board: Arc::new(Mutex::new(board)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A panicking test thread must not hide the board from the report.
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cuts power as `cut` says when the board reaches that operation.
    pub fn arm(&self, cut: RailCut) {
        self.lock().armed = Some(cut);
    }

    /// A block device handle on device `index`.
    pub fn device(&self, index: usize) -> RailBlock {
        RailBlock {
            rail: self.clone(),
            index,
        }
    }

    /// Whether power was cut.
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// The board's operations so far, in global order.
    pub fn ops(&self) -> Vec<RailOp> {
        self.lock().log.clone()
    }

    /// What each device holds after a power loss now: its durable bytes.
    pub fn durable(&self) -> Vec<Vec<u8>> {
        self.lock()
            .devices
            .iter()
            .map(|d| d.durable().to_vec())
            .collect()
    }

    /// Every device's cut plans (see [`cut_plans`]) over the run logged so far, mapped
    /// to global indices and sorted, plus the cut after the last operation.
    /// `full == false` keeps, per operation, the plain cut, one torn prefix that ends
    /// mid-sector and one sector tear (even sectors land).
    pub fn plans(&self, full: bool, prefix_step: u64, sector: u32) -> Vec<RailCut> {
        let board = self.lock();
        let mut out = Vec::new();
        for (dev_index, dev) in board.devices.iter().enumerate() {
            let globals: Vec<u64> = (0..board.log.len() as u64)
                .filter(|&g| board.log[g as usize].device == dev_index)
                .collect();
            let local_plans = if full {
                cut_plans(dev.ops(), prefix_step, sector)
            } else {
                sampled_plans(dev.ops(), sector)
            };
            for CutPlan { at, tear } in local_plans {
                if let Some(&global) = globals.get(at as usize) {
                    out.push(RailCut { at: global, tear });
                }
            }
        }
        out.push(RailCut {
            at: board.log.len() as u64,
            tear: Tear::None,
        });
        out.sort_by_key(|c| (c.at, tear_key(c.tear)));
        out
    }
}

/// A fixed order of tears for stable reports.
fn tear_key(tear: Tear) -> (u8, u64) {
    match tear {
        Tear::None => (0, 0),
        Tear::Prefix(n) => (1, n),
        Tear::Sectors { landed, .. } => (2, landed),
    }
}

/// The default subset: per operation, nothing lands; for a write, also a prefix that
/// ends mid-sector and the even sectors; for a sync with pending bytes, the even
/// dirty sectors.
fn sampled_plans(ops: &[BlockOp], sector: u32) -> Vec<CutPlan> {
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

/// A handle on one device of a [`PowerRail`]: every operation goes through the rail.
#[derive(Clone)]
pub struct RailBlock {
    rail: PowerRail,
    index: usize,
}

impl RailBlock {
    /// Runs one mutating operation: numbers it, arms the device if this is the cut,
    /// and takes the whole board down if the device lost power.
    fn mutate(
        &mut self,
        op: BlockOp,
        run: impl FnOnce(&mut FaultyBlock) -> Result<(), HalError>,
    ) -> Result<(), HalError> {
        let mut board = self.rail.lock();
        if board.down {
            return Err(HalError::PowerCut);
        }
        let global = board.log.len() as u64;
        board.log.push(RailOp {
            device: self.index,
            op,
        });
        let armed = board.armed.filter(|cut| cut.at == global);
        let dev = &mut board.devices[self.index];
        if let Some(cut) = armed {
            dev.arm(CutPlan {
                at: dev.ops_count(),
                tear: cut.tear,
            });
        }
        let result = run(dev);
        if dev.is_cut() {
            board.down = true;
        }
        result
    }
}

impl BlockDevice for RailBlock {
    fn len(&self) -> u64 {
        self.rail.lock().devices[self.index].len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        let mut board = self.rail.lock();
        if board.down {
            return Err(HalError::PowerCut);
        }
        board.devices[self.index].read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), HalError> {
        let op = BlockOp::Write {
            offset,
            len: buf.len() as u64,
        };
        self.mutate(op, |dev| dev.write_at(offset, buf))
    }

    fn sync(&mut self) -> Result<(), HalError> {
        self.mutate(BlockOp::Sync, FaultyBlock::sync)
    }

    fn name(&self) -> String {
        self.rail.lock().devices[self.index].name()
    }
}

/// A cut plan as text for reports: "op 37 (dev 1 write @0x9000+4096), torn prefix 2218".
pub fn describe(cut: &RailCut, ops: &[RailOp], names: &[&str]) -> String {
    let what = match ops.get(cut.at as usize) {
        None => "after the last operation".to_string(),
        Some(RailOp {
            device,
            op: BlockOp::Write { offset, len },
        }) => {
            format!("{} write @{offset:#x}+{len}", names[*device])
        }
        Some(RailOp {
            device,
            op: BlockOp::Sync,
        }) => format!("{} sync", names[*device]),
    };
    let tear = match cut.tear {
        Tear::None => "nothing of it lands".to_string(),
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

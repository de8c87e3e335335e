//! A power rail shared by several fault-injecting block devices and file directories.
//!
//! [`FaultyBlock`] counts and cuts the operations of one device, [`MemFiles`] those of
//! one directory (a GRUB env's filesystem). A board has several (slot A, slot B, the
//! boot environment) on one power supply, so a cut must be numbered across all of
//! them and must stop every one at once. [`PowerRail`] owns them, numbers every
//! `write_at`/`sync` of a device and every `write`/`append`/`sync_file`/`rename`/`sync_dir`
//! of a directory in one global sequence, and, when the armed global index comes up,
//! arms the device or directory that makes that operation at its own next local
//! index, so the tear and loss semantics stay `FaultyBlock`'s and `MemFiles`'s (the
//! rail only adds the numbering and the shared power). After the cut every handle
//! fails with [`HalError::PowerCut`] (reads included) and [`PowerRail::durable`] gives
//! what survives: durable bytes, and the directory as [`MemFiles::after_cut`] rebuilds
//! it (synced entries with their synced content), whichever member lost power.
//!
//! Invariant: the global log is the interleaving of the members' own logs, so a
//! `(member, local index)` pair maps to exactly one global index and back. A file
//! operation that `MemFiles` refuses before counting it (renaming a missing file) is
//! not logged either.
use std::sync::{Arc, Mutex, MutexGuard};

use bascule_hal::block::{cut_plans, BlockOp, Tear};
use bascule_hal::env::{EnvFiles, MemFiles};
use bascule_hal::{BlockDevice, CutPlan, FaultyBlock, HalError};

use super::cut_plans::{file_plans, sampled_plans, tear_key};

/// One cut of a whole board: the global operation index and how much of it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RailCut {
    pub at: u64,
    pub tear: Tear,
}

/// One mutating operation of a [`MemFiles`] directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// `write(name, bytes)` with `bytes.len() == len` (create or truncate, then write).
    Write { name: String, len: u64 },
    /// `append(name, bytes)` with `bytes.len() == len` (create if missing, add at the end).
    Append { name: String, len: u64 },
    /// `sync_file(name)`.
    SyncFile { name: String },
    /// `rename(from, to)`.
    Rename { from: String, to: String },
    /// `sync_dir()`.
    SyncDir,
}

/// What one operation of the global order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Block(BlockOp),
    File(FileOp),
}

/// One operation in the board's global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailOp {
    pub device: usize,
    pub op: Op,
}

/// What a member of the rail holds when the board starts, and what survives a cut.
#[derive(Debug, Clone)]
pub enum Image {
    /// A block device's bytes.
    Block(Vec<u8>),
    /// A directory (only durable entries and content: [`MemFiles::insert`]).
    Files(MemFiles),
}

impl Image {
    /// A block device's bytes; panics for a directory (a bug in the campaign).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Image::Block(bytes) => bytes,
            Image::Files(_) => panic!("a directory on the rail has no block bytes"),
        }
    }
}

/// A member of the rail: a block device or a directory of files.
enum Member {
    Block(FaultyBlock),
    Files(MemFiles),
}

struct Board {
    devices: Vec<Member>,
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
    /// A board whose member `i` starts with `images[i]` (live = durable), not armed.
    pub fn new(images: &[(&str, Image)]) -> PowerRail {
        let devices = images
            .iter()
            .map(|(name, image)| match image {
                Image::Block(bytes) => Member::Block(FaultyBlock::new(name, bytes.clone())),
                Image::Files(files) => Member::Files(files.after_cut()),
            })
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

    /// A file-operations handle on directory `index`.
    pub fn files(&self, index: usize) -> RailFiles {
        RailFiles {
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

    /// What each member holds after a power loss now: a device's durable bytes, a
    /// directory's durable entries with their durable content.
    pub fn durable(&self) -> Vec<Image> {
        self.lock()
            .devices
            .iter()
            .map(|d| match d {
                Member::Block(dev) => Image::Block(dev.durable().to_vec()),
                Member::Files(files) => Image::Files(files.after_cut()),
            })
            .collect()
    }

    /// Every member's cut plans over the run logged so far, mapped to global indices
    /// and sorted, plus the cut after the last operation. A device's are
    /// [`cut_plans`]; `full == false` keeps, per operation, the plain cut, one torn
    /// prefix that ends mid-sector and one sector tear (even sectors land). A
    /// directory's are [`file_plans`]. The default subset ([`sampled_plans`]) and
    /// [`file_plans`] are in tests/powercut/cut_plans.rs.
    pub fn plans(&self, full: bool, prefix_step: u64, sector: u32) -> Vec<RailCut> {
        let board = self.lock();
        let mut out = Vec::new();
        for (dev_index, dev) in board.devices.iter().enumerate() {
            let globals: Vec<u64> = (0..board.log.len() as u64)
                .filter(|&g| board.log[g as usize].device == dev_index)
                .collect();
            let local_plans = match dev {
                Member::Block(dev) if full => cut_plans(dev.ops(), prefix_step, sector),
                Member::Block(dev) => sampled_plans(dev.ops(), sector),
                Member::Files(_) => {
                    let ops: Vec<&FileOp> = globals
                        .iter()
                        .map(|&g| match &board.log[g as usize].op {
                            Op::File(op) => op,
                            Op::Block(_) => unreachable!("a block operation on a directory"),
                        })
                        .collect();
                    file_plans(&ops, full, prefix_step, sector)
                }
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
            op: Op::Block(op),
        });
        let armed = board.armed.filter(|cut| cut.at == global);
        let dev = board.devices[self.index].block();
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

impl Member {
    fn block(&mut self) -> &mut FaultyBlock {
        match self {
            Member::Block(dev) => dev,
            Member::Files(_) => panic!("block operation on a directory of the rail"),
        }
    }

    fn files(&mut self) -> &mut MemFiles {
        match self {
            Member::Files(files) => files,
            Member::Block(_) => panic!("file operation on a block device of the rail"),
        }
    }
}

impl BlockDevice for RailBlock {
    fn len(&self) -> u64 {
        self.rail.lock().devices[self.index].block().len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), HalError> {
        let mut board = self.rail.lock();
        if board.down {
            return Err(HalError::PowerCut);
        }
        board.devices[self.index].block().read_at(offset, buf)
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
        self.rail.lock().devices[self.index].block().name()
    }
}

/// A handle on one directory of a [`PowerRail`]: the [`EnvFiles`] a `GrubEnv` runs
/// over. Every operation goes through the rail, then through the directory's own
/// [`MemFiles`], which keeps every semantic of a cut.
#[derive(Clone)]
pub struct RailFiles {
    rail: PowerRail,
    index: usize,
}

impl RailFiles {
    /// Runs one mutating file operation: when it is the armed cut, arms the
    /// directory at its own next operation; logs it if `MemFiles` counted it, and
    /// takes the whole board down if that counted operation was the cut.
    fn mutate(
        &mut self,
        op: FileOp,
        run: impl FnOnce(&mut MemFiles) -> Result<(), HalError>,
    ) -> Result<(), HalError> {
        let mut board = self.rail.lock();
        if board.down {
            return Err(HalError::PowerCut);
        }
        let global = board.log.len() as u64;
        let armed = board.armed.filter(|cut| cut.at == global);
        let files = board.devices[self.index].files();
        let before = files.ops_count();
        if let Some(cut) = armed {
            files.arm(CutPlan {
                at: before,
                tear: cut.tear,
            });
        }
        let result = run(files);
        let counted = files.ops_count() > before;
        if armed.is_some() && !counted {
            // Refused before it counted (`MemFiles::inode_of`): not an operation, so
            // the cut stays armed for the next global operation, wherever it is.
            files.arm(CutPlan::before(u64::MAX));
        }
        if counted {
            board.log.push(RailOp {
                device: self.index,
                op: Op::File(op),
            });
            if armed.is_some() {
                // MemFiles cuts at an armed index it reaches (it has no `is_cut`).
                board.down = true;
            }
        }
        result
    }
}

impl EnvFiles for RailFiles {
    fn read(&mut self, name: &str, max_len: usize) -> Result<Option<Vec<u8>>, HalError> {
        let mut board = self.rail.lock();
        if board.down {
            return Err(HalError::PowerCut);
        }
        board.devices[self.index].files().read(name, max_len)
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        let op = FileOp::Write {
            name: name.into(),
            len: bytes.len() as u64,
        };
        self.mutate(op, |files| files.write(name, bytes))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), HalError> {
        let op = FileOp::Append {
            name: name.into(),
            len: bytes.len() as u64,
        };
        self.mutate(op, |files| files.append(name, bytes))
    }

    fn sync_file(&mut self, name: &str) -> Result<(), HalError> {
        let op = FileOp::SyncFile { name: name.into() };
        self.mutate(op, |files| files.sync_file(name))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), HalError> {
        let op = FileOp::Rename {
            from: from.into(),
            to: to.into(),
        };
        self.mutate(op, |files| files.rename(from, to))
    }

    fn sync_dir(&mut self) -> Result<(), HalError> {
        self.mutate(FileOp::SyncDir, MemFiles::sync_dir)
    }

    fn path_of(&self, name: &str) -> String {
        self.rail.lock().devices[self.index].files().path_of(name)
    }
}

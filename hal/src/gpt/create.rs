//! Writing a whole new GPT (factory provisioning): protective MBR, primary and backup
//! headers and entry arrays, in the power-safe order of the attribute store's commit.
//!
//! # Order, and why a cut leaves the old table or the new one in use
//! Readers (the kernel, UEFI, [`super::GptAttrEnv`]) take the primary table when its
//! header CRC, own LBA and entry array CRC are valid, else the backup. [`write_table`]:
//! 1. reads both copies and finds the one in use (the primary if valid, else the
//!    backup, else none);
//! 2. writes the copy **not** in use (header and entry array in one write, they are
//!    adjacent), syncs;
//! 3. writes the other copy, syncs;
//! 4. writes the protective MBR at LBA 0 (bytes 0..440, boot code, are kept), syncs.
//!
//! Until step 3 starts, the copy in use is untouched: the old table is read. While
//! step 3 is torn, that copy's header or entry CRC fails (the header CRC covers the
//! entry CRC, which covers every entry byte), so readers take the other copy, which
//! step 2 made new and durable. After step 3 both copies are new. Step 4 only
//! matters on a disk that had no GPT (a reader requires a protective MBR): there the
//! old state, no table, is what a cut before it leaves. Running [`write_table`] again
//! after any cut repairs the copy that is not new.
//!
//! No `std`: the entries and headers are built in memory (16 KiB for 128 entries).
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::table::{read_tables, Table, Tables, GPT_ENTRY_MIN, GPT_SIGNATURE};
use crate::block::BlockDevice;
use crate::HalError;

/// Entries in a table bascule creates (UEFI's minimum array of 16 KiB).
pub const ENTRY_COUNT: usize = 128;
/// Characters of a partition name (UTF-16 code units).
pub const NAME_UNITS: usize = 36;

/// A GUID in GPT byte order (the first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parses `0FC63DAF-8483-4772-8E79-3D69D8477DE4` (either case).
    pub fn parse(text: &str) -> Option<Guid> {
        let groups: Vec<&str> = text.split('-').collect();
        let widths = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(widths).any(|(g, w)| g.len() != w) {
            return None;
        }
        let mut raw = [0u8; 16];
        let digits: String = groups.concat();
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        raw[0..4].reverse();
        raw[4..6].reverse();
        raw[6..8].reverse();
        Some(Guid(raw))
    }

    /// A random (version 4) GUID from 16 random bytes.
    pub fn from_random(mut bytes: [u8; 16]) -> Guid {
        bytes[7] = (bytes[7] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// Whether this is the all-zero GUID (an unused entry's type).
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]
        )?;
        write!(f, "{:02X}{:02X}-", b[8], b[9])?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02X}"))
    }
}

/// One partition of a new table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// At most [`NAME_UNITS`] UTF-16 code units.
    pub name: String,
}

/// A whole new table for a disk of `sectors` sectors of `sector_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTable {
    pub sector_size: u64,
    pub sectors: u64,
    pub disk_guid: Guid,
    /// Entry `i` of the array, in order; the rest of the 128 entries are unused.
    pub partitions: Vec<NewPartition>,
}

/// Sectors of the entry array.
fn entry_sectors(sector_size: u64) -> u64 {
    ((ENTRY_COUNT * GPT_ENTRY_MIN) as u64).div_ceil(sector_size)
}

impl NewTable {
    /// First LBA a partition may use: after the MBR, the header and the entries.
    pub fn first_usable(sector_size: u64) -> u64 {
        2 + entry_sectors(sector_size)
    }

    /// Last LBA a partition may use on a disk of `sectors` sectors.
    pub fn last_usable(sector_size: u64, sectors: u64) -> u64 {
        sectors.saturating_sub(2 + entry_sectors(sector_size))
    }

    /// The LBA of the backup header.
    pub fn backup_lba(&self) -> u64 {
        self.sectors - 1
    }

    fn bad(&self, reason: String) -> HalError {
        HalError::BadLayout {
            what: String::from("new GPT"),
            reason,
        }
    }

    /// The entry array bytes; refuses partitions outside the usable LBAs, overlapping,
    /// with a nil type, or with names too long.
    pub fn encode_entries(&self) -> Result<Vec<u8>, HalError> {
        let ss = self.sector_size;
        let (first, last) = (Self::first_usable(ss), Self::last_usable(ss, self.sectors));
        if self.partitions.len() > ENTRY_COUNT {
            return Err(self.bad(alloc::format!("more than {ENTRY_COUNT} partitions")));
        }
        let mut out = vec![0u8; ENTRY_COUNT * GPT_ENTRY_MIN];
        for (i, p) in self.partitions.iter().enumerate() {
            let units: Vec<u16> = p.name.encode_utf16().collect();
            let inside = p.first_lba >= first && p.last_lba <= last && p.first_lba <= p.last_lba;
            let overlap = self.partitions[..i]
                .iter()
                .any(|q| q.first_lba <= p.last_lba && p.first_lba <= q.last_lba);
            if !inside || overlap || p.type_guid.is_nil() || units.len() > NAME_UNITS {
                return Err(self.bad(alloc::format!(
                    "partition {} ({:?}, LBA {}..={}): outside {first}..={last}, overlapping, \
                     nil type or name over {NAME_UNITS} characters",
                    i + 1,
                    p.name,
                    p.first_lba,
                    p.last_lba
                )));
            }
            let e = &mut out[i * GPT_ENTRY_MIN..(i + 1) * GPT_ENTRY_MIN];
            e[..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (k, u) in units.iter().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// The table (header fields and entries) both copies encode.
    pub fn to_table(&self) -> Result<Table, HalError> {
        if self.sector_size < 512 || self.sectors < 2 * Self::first_usable(self.sector_size) {
            return Err(self.bad(alloc::format!(
                "{} sectors of {} bytes is too small for a GPT",
                self.sectors,
                self.sector_size
            )));
        }
        let entries = self.encode_entries()?;
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(&GPT_SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        let ss = self.sector_size;
        h[40..48].copy_from_slice(&Self::first_usable(ss).to_le_bytes());
        h[48..56].copy_from_slice(&Self::last_usable(ss, self.sectors).to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_MIN as u32).to_le_bytes());
        // encode_header fills the LBAs and CRCs; with_entries checks the entry CRC.
        let draft = Table::from_parts(h, entries);
        let sector = draft.encode_header(ss as usize, 1, self.backup_lba(), 2);
        Table::with_entries(sector[..92].to_vec(), draft.entries().to_vec())
            .map_err(|e| self.bad(alloc::format!("{e}")))
    }

    /// Sector 0: a protective MBR over the whole disk, keeping `old`'s boot code.
    pub fn protective_mbr(&self, old: &[u8]) -> Vec<u8> {
        let mut mbr = vec![0u8; self.sector_size as usize];
        mbr[..440].copy_from_slice(&old[..440]);
        let size = (self.sectors - 1).min(u64::from(u32::MAX)) as u32;
        let entry = &mut mbr[446..462];
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
        entry[4] = 0xee;
        entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr
    }
}

/// Which copy readers take now: `Some(true)` the primary, `Some(false)` the backup.
pub fn copy_in_use(tables: &Tables) -> Option<bool> {
    match (&tables.primary, &tables.backup) {
        (Ok(_), _) => Some(true),
        (Err(_), Ok(_)) => Some(false),
        _ => None,
    }
}

/// Writes `new` over the whole disk `dev` in the power-safe order of the module docs.
pub fn write_table<D: BlockDevice>(dev: &mut D, new: &NewTable) -> Result<(), HalError> {
    let ss = new.sector_size;
    if dev.len() != new.sectors * ss {
        return Err(new.bad(alloc::format!(
            "table is for {} bytes, {} has {}",
            new.sectors * ss,
            dev.name(),
            dev.len()
        )));
    }
    let table = new.to_table()?;
    let tables = read_tables(dev, ss)?;
    let backup_lba = new.backup_lba();
    let backup_entries = backup_lba - entry_sectors(ss);
    let primary = (1, backup_lba, 2);
    let backup = (backup_lba, 1, backup_entries);
    let order = match copy_in_use(&tables) {
        Some(false) => [primary, backup],
        _ => [backup, primary],
    };
    for (my, alternate, entries_lba) in order {
        let header = table.encode_header(ss as usize, my, alternate, entries_lba);
        let bytes = if my == 1 {
            [header.as_slice(), table.entries()].concat()
        } else {
            [table.entries(), header.as_slice()].concat()
        };
        dev.write_at(my.min(entries_lba) * ss, &bytes)?;
        dev.sync()?;
    }
    let mut old = vec![0u8; ss as usize];
    dev.read_at(0, &mut old)?;
    let mbr = new.protective_mbr(&old);
    if mbr != old {
        dev.write_at(0, &mbr)?;
        dev.sync()?;
    }
    Ok(())
}

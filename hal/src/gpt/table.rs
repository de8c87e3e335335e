//! The GPT on-disk structures bascule touches: one header sector and one partition
//! entry array per copy. Pure `core` + `alloc` code over byte buffers; the only I/O
//! here is [`read_tables`], which reads through a [`BlockDevice`].
//!
//! Nothing is re-encoded from parsed fields: a [`Table`] keeps the header and entry
//! bytes exactly as read, and [`Table::encode_header`] patches only the location
//! fields and the two CRCs, so fields bascule does not know (revision, disk GUID, a
//! longer header, reserved bytes) survive a commit byte for byte.
//!
//! # Header (UEFI 2.10 §5.3.2; little-endian)
//! ```text
//! offset size field                    offset size field
//!      0    8 "EFI PART"                   48    8 last usable LBA
//!      8    4 revision                     56   16 disk GUID
//!     12    4 header size (92..=sector)    72    8 entry array LBA
//!     16    4 CRC-32 of the header         80    4 number of entries
//!           (this field zeroed)            84    4 entry size (128 * 2^n)
//!     24    8 LBA of this header           88    4 CRC-32 of the entry array
//!     32    8 LBA of the other header
//!     40    8 first usable LBA
//! ```
//! An entry: type GUID (16), unique GUID (16), first LBA (8), last LBA (8),
//! attributes (8, at offset 48), name (72, UTF-16LE). A zero type GUID is unused.
use alloc::vec;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::env::codec::crc32;
use crate::HalError;

/// "EFI PART".
pub const GPT_SIGNATURE: [u8; 8] = *b"EFI PART";
/// The size of the header fields defined by UEFI.
pub const GPT_HEADER_MIN: usize = 92;
/// Smallest entry size UEFI allows.
pub const GPT_ENTRY_MIN: usize = 128;
/// Largest entry array bascule reads (UEFI's usual 128 x 128 bytes is 16 KiB).
pub const GPT_ENTRIES_MAX: usize = 1 << 20;
/// Byte offset of the attribute field in an entry.
const ATTR_OFFSET: usize = 48;
/// Byte offset and length of the name field in an entry.
const NAME_OFFSET: usize = 56;
const NAME_LEN: usize = 72;

/// Why one copy of the GPT is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("no \"EFI PART\" signature")]
    Signature,
    #[error("header size {found} is outside 92..={max}")]
    HeaderSize { found: u32, max: usize },
    #[error("header CRC-32 {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("header says it is at LBA {found}, read from LBA {expected}")]
    MyLba { found: u64, expected: u64 },
    #[error("entry size {0} is not 128 * 2^n")]
    EntrySize(u32),
    #[error("entry array of {0} bytes exceeds bascule's limit of 1 MiB")]
    EntriesTooLarge(u64),
    #[error("entry array at LBA {lba} runs past the end of the disk")]
    EntriesOutOfDisk { lba: u64 },
    #[error("entry array CRC-32 {stored:#010x}, computed {computed:#010x}")]
    EntriesCrc { stored: u32, computed: u32 },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// CRC-32 of a header's first `header_size` bytes with its CRC field zeroed.
fn header_crc(header: &[u8]) -> u32 {
    let mut h = header.to_vec();
    put_u32(&mut h, 16, 0);
    crc32(&h)
}

/// One validated copy of the GPT: its header and its entry array, as on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The first `header size` bytes of the header sector.
    header: Vec<u8>,
    /// The whole entry array (`number of entries * entry size` bytes).
    entries: Vec<u8>,
}

impl Table {
    /// Validates the header read from `lba` (one sector, `header_sector`), in the
    /// order of UEFI's checks: signature, size, CRC, own LBA, entry geometry.
    /// Returns the header and where its entry array is (LBA, bytes).
    pub fn check_header(
        header_sector: &[u8],
        lba: u64,
    ) -> Result<(Vec<u8>, u64, usize), TableError> {
        if header_sector.len() < GPT_HEADER_MIN || header_sector[..8] != GPT_SIGNATURE {
            return Err(TableError::Signature);
        }
        let size = u32_at(header_sector, 12);
        if (size as usize) < GPT_HEADER_MIN || size as usize > header_sector.len() {
            return Err(TableError::HeaderSize {
                found: size,
                max: header_sector.len(),
            });
        }
        let header = header_sector[..size as usize].to_vec();
        let stored = u32_at(&header, 16);
        let computed = header_crc(&header);
        if stored != computed {
            return Err(TableError::HeaderCrc { stored, computed });
        }
        let my_lba = u64_at(&header, 24);
        if my_lba != lba {
            return Err(TableError::MyLba {
                found: my_lba,
                expected: lba,
            });
        }
        let entry_size = u32_at(&header, 84);
        let valid_size = entry_size as usize >= GPT_ENTRY_MIN && entry_size.is_power_of_two();
        if !valid_size {
            return Err(TableError::EntrySize(entry_size));
        }
        let bytes = u64::from(u32_at(&header, 80)) * u64::from(entry_size);
        if bytes > GPT_ENTRIES_MAX as u64 {
            return Err(TableError::EntriesTooLarge(bytes));
        }
        Ok((
            header,
            u64_at(&header_sector[..size as usize], 72),
            bytes as usize,
        ))
    }

    /// A table from a checked header and the entry array it points at; checks the
    /// array's CRC.
    pub fn with_entries(header: Vec<u8>, entries: Vec<u8>) -> Result<Table, TableError> {
        let stored = u32_at(&header, 88);
        let computed = crc32(&entries);
        if stored != computed {
            return Err(TableError::EntriesCrc { stored, computed });
        }
        Ok(Table { header, entries })
    }

    /// A table from header fields and entries as given, unchecked: for
    /// [`super::create`], which fills the CRCs with [`Table::encode_header`].
    pub(crate) fn from_parts(header: Vec<u8>, entries: Vec<u8>) -> Table {
        Table { header, entries }
    }

    /// The disk GUID.
    pub fn disk_guid(&self) -> [u8; 16] {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.header[56..72]);
        g
    }

    /// The partition type GUID of entry `index` (all zero when unused).
    pub fn type_guid(&self, index: usize) -> [u8; 16] {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.entry(index)[..16]);
        g
    }

    /// The unique partition GUID of entry `index`.
    pub fn unique_guid(&self, index: usize) -> [u8; 16] {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.entry(index)[16..32]);
        g
    }

    /// The name of entry `index` (up to its first NUL; unpaired surrogates replaced).
    pub fn name(&self, index: usize) -> alloc::string::String {
        let raw = &self.entry(index)[NAME_OFFSET..NAME_OFFSET + NAME_LEN];
        let units = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0);
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// LBA of this header.
    pub fn my_lba(&self) -> u64 {
        u64_at(&self.header, 24)
    }
    /// LBA of the other header.
    pub fn alternate_lba(&self) -> u64 {
        u64_at(&self.header, 32)
    }
    /// LBA of this copy's entry array.
    pub fn entries_lba(&self) -> u64 {
        u64_at(&self.header, 72)
    }
    /// First and last LBA partitions may use.
    pub fn usable(&self) -> (u64, u64) {
        (u64_at(&self.header, 40), u64_at(&self.header, 48))
    }
    /// The entry array.
    pub fn entries(&self) -> &[u8] {
        &self.entries
    }

    fn entry_size(&self) -> usize {
        u32_at(&self.header, 84) as usize
    }

    /// Number of entries in the array.
    pub fn entry_count(&self) -> usize {
        self.entries.len() / self.entry_size()
    }

    fn entry(&self, index: usize) -> &[u8] {
        let size = self.entry_size();
        &self.entries[index * size..(index + 1) * size]
    }

    /// Whether entry `index` (0-based) describes a partition.
    pub fn is_used(&self, index: usize) -> bool {
        self.entry(index)[..16].iter().any(|&b| b != 0)
    }

    /// First and last LBA of entry `index`.
    pub fn lba_range(&self, index: usize) -> (u64, u64) {
        let e = self.entry(index);
        (u64_at(e, 32), u64_at(e, 40))
    }

    /// Whether the UTF-16LE name of entry `index` is exactly `name`.
    pub fn name_is(&self, index: usize, name: &str) -> bool {
        let raw = &self.entry(index)[NAME_OFFSET..NAME_OFFSET + NAME_LEN];
        let units = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0);
        units.eq(name.encode_utf16())
    }

    /// The 64 attribute bits of entry `index`.
    pub fn attributes(&self, index: usize) -> u64 {
        u64_at(self.entry(index), ATTR_OFFSET)
    }

    /// Replaces the attribute bits of entry `index`.
    pub fn set_attributes(&mut self, index: usize, bits: u64) {
        let at = index * self.entry_size() + ATTR_OFFSET;
        put_u64(&mut self.entries, at, bits);
    }

    /// This table's header sector (`sector_size` bytes) placed at `my_lba`, naming
    /// `alternate_lba` and `entries_lba`, with both CRCs computed over the current
    /// entries. Bytes past the header size are zero, as UEFI requires.
    pub fn encode_header(
        &self,
        sector_size: usize,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
    ) -> Vec<u8> {
        let mut h = self.header.clone();
        put_u64(&mut h, 24, my_lba);
        put_u64(&mut h, 32, alternate_lba);
        put_u64(&mut h, 72, entries_lba);
        put_u32(&mut h, 88, crc32(&self.entries));
        let crc = header_crc(&h);
        put_u32(&mut h, 16, crc);
        h.resize(sector_size, 0);
        h
    }
}

/// What the two copies of a disk's GPT look like.
#[derive(Debug, Clone)]
pub struct Tables {
    /// The logical sector size the GPT was found with.
    pub sector_size: u64,
    /// Number of sectors of the disk.
    pub sectors: u64,
    /// The copy at LBA 1.
    pub primary: Result<Table, TableError>,
    /// Where the backup header is (the primary's alternate LBA when the primary is
    /// valid and names an LBA on the disk, else the last LBA).
    pub backup_lba: u64,
    /// The copy at `backup_lba`.
    pub backup: Result<Table, TableError>,
}

/// Reads both copies with sector size `sector_size`.
pub fn read_tables<D: BlockDevice>(dev: &mut D, sector_size: u64) -> Result<Tables, HalError> {
    let sectors = dev.len() / sector_size;
    let primary = read_table(dev, sector_size, sectors, 1)?;
    let last = sectors.saturating_sub(1);
    let backup_lba = match &primary {
        Ok(p) if p.alternate_lba() > 1 && p.alternate_lba() < sectors => p.alternate_lba(),
        _ => last,
    };
    let backup = read_table(dev, sector_size, sectors, backup_lba)?;
    Ok(Tables {
        sector_size,
        sectors,
        primary,
        backup_lba,
        backup,
    })
}

fn read_table<D: BlockDevice>(
    dev: &mut D,
    sector_size: u64,
    sectors: u64,
    lba: u64,
) -> Result<Result<Table, TableError>, HalError> {
    if lba >= sectors || lba == 0 {
        return Ok(Err(TableError::Signature));
    }
    let mut sector = vec![0u8; sector_size as usize];
    dev.read_at(lba * sector_size, &mut sector)?;
    let (header, entries_lba, bytes) = match Table::check_header(&sector, lba) {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    let end = entries_lba
        .checked_mul(sector_size)
        .and_then(|o| o.checked_add(bytes as u64));
    if entries_lba == 0 || end.is_none_or(|end| end > dev.len()) {
        return Ok(Err(TableError::EntriesOutOfDisk { lba: entries_lba }));
    }
    let mut entries = vec![0u8; bytes];
    dev.read_at(entries_lba * sector_size, &mut entries)?;
    Ok(Table::with_entries(header, entries))
}

/// The sector size of the GPT on `dev`: 512 or 4096, whichever has a signature at
/// LBA 1 or at the last LBA (in that order of preference).
pub fn find_sector_size<D: BlockDevice>(dev: &mut D) -> Result<Option<u64>, HalError> {
    let mut sig = [0u8; 8];
    for at_end in [false, true] {
        for ss in [512u64, 4096] {
            if dev.len() < 2 * ss || !dev.len().is_multiple_of(ss) {
                continue;
            }
            let lba = if at_end { dev.len() / ss - 1 } else { 1 };
            dev.read_at(lba * ss, &mut sig)?;
            if sig == GPT_SIGNATURE {
                return Ok(Some(ss));
            }
        }
    }
    Ok(None)
}

//! Boot state in GPT partition attributes, ChromeOS style: [`GptAttrEnv`] is an
//! [`EnvStore`] over a whole disk whose variables are bits of GPT partition entries.
//!
//! # Variables
//! For each configured slot (a name like `A`, mapped to a partition by GPT name or by
//! 1-based index, as `cgpt -i` and `sgdisk` number them), bits of that partition's
//! attribute field, as ChromeOS `cgpt`, the vboot firmware and Bottlerocket use them:
//!
//! | variable               | bits   | values     |
//! |------------------------|--------|------------|
//! | `GPT_<slot>_PRIORITY`  | 48..52 | `0`..`15`  |
//! | `GPT_<slot>_TRIES`     | 52..56 | `0`..`15`  |
//! | `GPT_<slot>_SUCCESSFUL`| 56     | `0`, `1`   |
//!
//! `commit` changes only those bits: every other attribute bit, every name, GUID and
//! LBA, every unconfigured entry and every unknown header field stays byte for byte.
//! `commit` must be given all three variables of every slot (as `load` returns them)
//! and refuses any other variable with [`HalError::EnvInvalidVar`], except `BASCULE_*`.
//!
//! # Where `BASCULE_*` variables live
//! bascule keeps its own facts (pending slot, installed versions) beside the boot
//! state, in the same atomic commit. A GPT has no honest room for free-form text, so
//! they live in a small dedicated partition, by convention named `bascule-env`
//! ([`BASCULE_ENV_PARTITION`], at least 8 KiB), holding two copies of a bascule native
//! env ([`NativeCodec`], 4 KiB each at partition offsets 0 and 4096). **Which copy is
//! current is bit 48 of that partition's own GPT attributes**
//! ([`ENV_SELECT_BIT`], one of the type-specific bits 48..64 of a partition type
//! that is bascule's: give the partition a type that defines no bit 48, e.g. a
//! Linux-reserved or custom GUID, not a ChromeOS kernel). The generation counter in
//! the copies is informative only; a plain [`NativeEnv`](crate::NativeEnv) on that
//! partition would pick by generation and could see an uncommitted copy, so do not
//! read it that way. Without a `bascule-env` partition, `BASCULE_*` variables are
//! refused.
//!
//! # Commit order and why a cut at any byte leaves the old or the new state
//! `load` takes the primary table (LBA 1) when its header CRC, own LBA and entry array
//! CRC are valid, else the backup. A commit:
//! 1. encodes the new `BASCULE_*` variables into the copy **not** selected, and syncs
//!    (the selected copy is untouched; the GPT still selects it);
//! 2. builds the new entry array from the table `load` takes: new boot bits, selector
//!    bit flipped to the copy just written;
//! 3. writes the table `load` does **not** take (normally the backup: entries, then
//!    header, one write when they are adjacent), syncs;
//! 4. writes the table `load` takes, syncs.
//!
//! Until step 4 lands, the table `load` takes is still the old, valid one, so the old
//! boot bits and the old selected copy load. While step 4 is torn, that table's header
//! or entry CRC fails (its header CRC covers its entries CRC, which covers every
//! changed attribute byte), so `load` falls back to the other table, which step 3
//! made new and durable, and whose selector names the copy step 1 made durable. Once
//! step 4 is durable, both tables are new. No cut leaves the store unreadable. Starting
//! from a degraded disk (primary invalid), step 3 writes the primary and step 4 the
//! backup, for the same reason. A torn `bascule-env` copy is never selected: the
//! GPT names it only after its sync.
//!
//! # Why not gptman
//! gptman reads and writes through `Read + Seek`/`Write + Seek` over the whole disk and
//! writes the primary before the backup with no sync in between, which is the order
//! that is not power-safe here; using it would mean rendering into a disk-sized
//! buffer and copying sectors out. Bascule needs ~300 lines (header and entry
//! CRCs, four header fields, the attribute word) that build without `std` and keep
//! unknown bytes untouched, so it has its own [`table`] code. The tests build disks
//! with gptman and `sgdisk` and check the result with gptman, `sgdisk -v` and `cgpt`.
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::env::native::NativeCodec;
use crate::env::{EnvStore, EnvVars};
use crate::HalError;

pub mod create;
pub mod table;
#[cfg(test)]
mod tests;

use table::{find_sector_size, read_tables, Table, Tables};

/// Conventional name of the partition that holds `BASCULE_*` variables.
pub const BASCULE_ENV_PARTITION: &str = "bascule-env";
/// Size of each of the two native-env copies in that partition.
pub const BASCULE_ENV_COPY_SIZE: u64 = 4096;
/// Attribute bit of the `bascule-env` entry that selects the current copy (0 or 1).
pub const ENV_SELECT_BIT: u32 = 48;
/// Prefix of the variables stored in the `bascule-env` partition.
pub const BASCULE_PREFIX: &str = "BASCULE_";

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_SHIFT: u32 = 56;
/// Bits 48..=56: priority, tries, successful.
const BOOT_MASK: u64 = 0x1ff << PRIORITY_SHIFT;
const FIELDS: [&str; 3] = ["PRIORITY", "TRIES", "SUCCESSFUL"];

/// The ChromeOS boot fields of one partition entry.
/// ```
/// # use bascule_hal::gpt::BootAttrs;
/// let a = BootAttrs { priority: 2, tries: 5, successful: false };
/// // Bit 2 (legacy BIOS bootable) and bit 63 are kept.
/// assert_eq!(a.apply(1 << 2 | 1 << 63), 1 << 2 | 1 << 63 | 2 << 48 | 5 << 52);
/// assert_eq!(BootAttrs::from_bits(1 << 56).successful, true);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootAttrs {
    /// 0..=15; 0 means the firmware never boots it.
    pub priority: u8,
    /// 0..=15 boot attempts left (ignored by the firmware when `successful`).
    pub tries: u8,
    /// Booted and confirmed good.
    pub successful: bool,
}

impl BootAttrs {
    /// The fields found in `bits`.
    pub fn from_bits(bits: u64) -> Self {
        BootAttrs {
            priority: ((bits >> PRIORITY_SHIFT) & 0xf) as u8,
            tries: ((bits >> TRIES_SHIFT) & 0xf) as u8,
            successful: (bits >> SUCCESSFUL_SHIFT) & 1 == 1,
        }
    }

    /// `bits` with bits 48..=56 replaced by these fields (values above 15 are masked).
    pub fn apply(self, bits: u64) -> u64 {
        let fields = (u64::from(self.priority & 0xf) << PRIORITY_SHIFT)
            | (u64::from(self.tries & 0xf) << TRIES_SHIFT)
            | (u64::from(self.successful) << SUCCESSFUL_SHIFT);
        (bits & !BOOT_MASK) | fields
    }
}

/// A partition of the GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionRef {
    /// The used entry whose name is exactly this (must be unique).
    Name(String),
    /// 1-based entry number, as `cgpt -i` and `sgdisk` count.
    Index(u32),
}

impl core::fmt::Display for PartitionRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PartitionRef::Name(n) => write!(f, "partition named {n:?}"),
            PartitionRef::Index(i) => write!(f, "partition {i}"),
        }
    }
}

/// Which partitions carry the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptAttrLayout {
    /// Slot name (the `<slot>` of `GPT_<slot>_*`, e.g. `A`) to its partition.
    pub slots: BTreeMap<String, PartitionRef>,
    /// The partition holding `BASCULE_*` variables; `None` refuses them.
    pub bascule_env: Option<PartitionRef>,
}

/// The layout resolved against one table: entry indices (0-based).
struct Resolved {
    slots: Vec<(String, usize)>,
    /// Entry index and byte offset of the `bascule-env` partition.
    env: Option<(usize, u64)>,
}

/// What a commit was asked to store.
struct Wanted {
    attrs: Vec<BootAttrs>,
    bascule: EnvVars,
}

/// ChromeOS-style boot attributes in a disk's GPT (see the module docs).
#[derive(Debug)]
pub struct GptAttrEnv<D: BlockDevice> {
    dev: D,
    layout: GptAttrLayout,
    sector_size: u64,
}

impl<D: BlockDevice> GptAttrEnv<D> {
    /// A store over the whole disk `dev`. Reads the GPT once to check that every
    /// configured partition exists, is unique, and that `bascule-env` is big enough.
    pub fn new(mut dev: D, layout: GptAttrLayout) -> Result<Self, HalError> {
        let bad = |reason: String| HalError::BadLayout {
            what: format!("GPT attributes on {}", dev.name()),
            reason,
        };
        if layout.slots.is_empty() {
            return Err(bad("no slot is mapped to a partition".into()));
        }
        for slot in layout.slots.keys() {
            let ok =
                !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(bad(format!("slot name {slot:?} must be [A-Za-z0-9_]+")));
            }
        }
        let sector_size = find_sector_size(&mut dev)?.ok_or_else(|| HalError::EnvCorrupt {
            store: format!("GPT attributes on {}", dev.name()),
            detail: "no GPT signature at LBA 1 or at the last LBA (512 or 4096-byte sectors)"
                .into(),
        })?;
        let mut env = GptAttrEnv {
            dev,
            layout,
            sector_size,
        };
        let (_, chosen, _) = env.current()?;
        env.resolve(&chosen)?;
        Ok(env)
    }

    /// Gives the device back.
    pub fn into_inner(self) -> D {
        self.dev
    }

    /// The logical sector size the GPT was found with.
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }

    fn store_name(&self) -> String {
        format!("GPT attributes on {}", self.dev.name())
    }

    fn bad_layout(&self, reason: String) -> HalError {
        HalError::BadLayout {
            what: self.store_name(),
            reason,
        }
    }

    /// Both tables, the one `load` takes, and whether that is the primary.
    fn current(&mut self) -> Result<(Tables, Table, bool), HalError> {
        let tables = read_tables(&mut self.dev, self.sector_size)?;
        let (chosen, primary) = match (&tables.primary, &tables.backup) {
            (Ok(p), _) => (p.clone(), true),
            (Err(_), Ok(b)) => (b.clone(), false),
            (Err(p), Err(b)) => {
                return Err(HalError::EnvCorrupt {
                    store: self.store_name(),
                    detail: format!(
                        "primary GPT @LBA 1: {p}; backup GPT @LBA {}: {b}",
                        tables.backup_lba
                    ),
                })
            }
        };
        Ok((tables, chosen, primary))
    }

    fn find(&self, table: &Table, part: &PartitionRef) -> Result<usize, HalError> {
        let found: Vec<usize> = match part {
            PartitionRef::Name(name) => (0..table.entry_count())
                .filter(|&i| table.is_used(i) && table.name_is(i, name))
                .collect(),
            PartitionRef::Index(n) => {
                let i = (*n as usize).wrapping_sub(1);
                (i < table.entry_count() && table.is_used(i))
                    .then_some(i)
                    .into_iter()
                    .collect()
            }
        };
        match found[..] {
            [i] => Ok(i),
            [] => Err(self.bad_layout(format!("no {part} in the GPT"))),
            _ => Err(self.bad_layout(format!("{} entries match {part}", found.len()))),
        }
    }

    fn resolve(&self, table: &Table) -> Result<Resolved, HalError> {
        let mut slots = Vec::new();
        for (slot, part) in &self.layout.slots {
            let index = self.find(table, part)?;
            if let Some((other, _)) = slots.iter().find(|(_, i)| *i == index) {
                return Err(self.bad_layout(format!("slots {other} and {slot} share {part}")));
            }
            slots.push((slot.clone(), index));
        }
        let env = match &self.layout.bascule_env {
            None => None,
            Some(part) => {
                let index = self.find(table, part)?;
                if slots.iter().any(|(_, i)| *i == index) {
                    return Err(self.bad_layout(format!("{part} is also a slot")));
                }
                let (first, last) = table.lba_range(index);
                let bytes = (last + 1).saturating_sub(first) * self.sector_size;
                if bytes < 2 * BASCULE_ENV_COPY_SIZE {
                    return Err(self.bad_layout(format!(
                        "{part} has {bytes} bytes, needs {}",
                        2 * BASCULE_ENV_COPY_SIZE
                    )));
                }
                Some((index, first * self.sector_size))
            }
        };
        Ok(Resolved { slots, env })
    }

    /// Reads copy `which` of the `bascule-env` partition at `offset`: its variables and
    /// generation. A blank copy (never written) is empty with generation 0.
    fn read_copy(&mut self, offset: u64, which: u64) -> Result<(EnvVars, u64), HalError> {
        let mut buf = vec![0u8; BASCULE_ENV_COPY_SIZE as usize];
        let at = offset + which * BASCULE_ENV_COPY_SIZE;
        self.dev.read_at(at, &mut buf)?;
        match NativeCodec::decode(&buf) {
            Ok(copy) => Ok((copy.vars, copy.generation)),
            Err(_) if buf.iter().all(|&b| b == 0) || buf.iter().all(|&b| b == 0xff) => {
                Ok((EnvVars::new(), 0))
            }
            Err(e) => Err(HalError::EnvCorrupt {
                store: self.store_name(),
                detail: format!("bascule-env copy {which} @{at:#x} (selected by the GPT): {e}"),
            }),
        }
    }

    /// Splits and checks what `commit` was given.
    fn wanted(&self, vars: &EnvVars, slots: &[(String, usize)]) -> Result<Wanted, HalError> {
        let invalid = |name: &str, reason: &'static str| HalError::EnvInvalidVar {
            store: self.store_name(),
            name: name.into(),
            reason,
        };
        let mut bascule = EnvVars::new();
        for (name, value) in vars {
            if name.starts_with(BASCULE_PREFIX) {
                if self.layout.bascule_env.is_none() {
                    return Err(invalid(
                        &format!("{name}"),
                        "BASCULE_* needs a bascule-env partition",
                    ));
                }
                bascule.insert(name, value);
            } else if !name
                .to_str()
                .is_some_and(|name| slots.iter().any(|(s, _)| is_slot_var(name, s)))
            {
                return Err(invalid(
                    &format!("{name}"),
                    "only GPT_<slot>_{PRIORITY,TRIES,SUCCESSFUL} and BASCULE_* are stored",
                ));
            }
        }
        let mut attrs = Vec::new();
        for (slot, _) in slots {
            let mut field = [0u8; 3];
            for (k, f) in FIELDS.iter().enumerate() {
                let name = format!("GPT_{slot}_{f}");
                let max = if k == 2 { 1 } else { 15 };
                let value = vars.get(&name).ok_or_else(|| {
                    invalid(
                        &name,
                        "missing: give priority, tries and successful of every slot",
                    )
                })?;
                field[k] = value
                    .to_str()
                    .and_then(|v| parse_small(v, max))
                    .ok_or_else(|| invalid(&name, "expected decimal 0-15 (successful: 0 or 1)"))?;
            }
            attrs.push(BootAttrs {
                priority: field[0],
                tries: field[1],
                successful: field[2] == 1,
            });
        }
        Ok(Wanted { attrs, bascule })
    }

    /// Writes the `BASCULE_*` copy the GPT does not select yet and syncs it; returns
    /// the selector value that makes it current.
    fn write_env_copy(
        &mut self,
        table: &Table,
        env: (usize, u64),
        vars: &EnvVars,
    ) -> Result<u64, HalError> {
        let (index, offset) = env;
        let selected = (table.attributes(index) >> ENV_SELECT_BIT) & 1;
        let generation = match self.read_copy(offset, selected) {
            Ok((_, g)) => g,
            Err(HalError::EnvCorrupt { .. }) => 0,
            Err(e) => return Err(e),
        };
        let codec = NativeCodec::new(BASCULE_ENV_COPY_SIZE as usize)
            .ok_or_else(|| self.bad_layout("bascule-env copy size".into()))?;
        let image = codec
            .encode(vars, generation.saturating_add(1))
            .map_err(|e| e.into_hal(&self.store_name()))?;
        let target = 1 - selected;
        self.dev
            .write_at(offset + target * BASCULE_ENV_COPY_SIZE, &image)?;
        self.dev.sync()?;
        Ok(target)
    }

    /// Writes `table`'s entries as both GPT copies: first the copy `load` does not
    /// take, sync, then the one it takes, sync.
    fn write_tables(
        &mut self,
        tables: &Tables,
        table: &Table,
        primary_current: bool,
    ) -> Result<(), HalError> {
        let ss = self.sector_size;
        let entry_sectors = (table.entries().len() as u64).div_ceil(ss);
        let backup_lba = tables.backup_lba;
        let primary_entries = match &tables.primary {
            Ok(p) => p.entries_lba(),
            Err(_) => 2,
        };
        let backup_entries = match &tables.backup {
            Ok(b) => b.entries_lba(),
            Err(_) => backup_lba.saturating_sub(entry_sectors),
        };
        let (first_usable, last_usable) = table.usable();
        if primary_entries + entry_sectors > first_usable || backup_entries <= last_usable {
            return Err(self.bad_layout(format!(
                "entry arrays at LBA {primary_entries} and {backup_entries} ({entry_sectors} \
                 sectors) would overlap the usable LBAs {first_usable}..={last_usable}"
            )));
        }
        let primary = (1, backup_lba, primary_entries);
        let backup = (backup_lba, 1, backup_entries);
        let order = if primary_current {
            [backup, primary]
        } else {
            [primary, backup]
        };
        for (my, alternate, entries_lba) in order {
            let header = table.encode_header(ss as usize, my, alternate, entries_lba);
            self.write_copy(table.entries(), entries_lba, &header, my)?;
            self.dev.sync()?;
        }
        Ok(())
    }

    /// One GPT copy: a single write when the header and the entry array are adjacent.
    fn write_copy(
        &mut self,
        entries: &[u8],
        entries_lba: u64,
        header: &[u8],
        my_lba: u64,
    ) -> Result<(), HalError> {
        let ss = self.sector_size;
        let whole = (entries.len() as u64).is_multiple_of(ss);
        if whole && entries_lba * ss + entries.len() as u64 == my_lba * ss {
            return self
                .dev
                .write_at(entries_lba * ss, &[entries, header].concat());
        }
        if whole && my_lba + 1 == entries_lba {
            return self.dev.write_at(my_lba * ss, &[header, entries].concat());
        }
        self.dev.write_at(entries_lba * ss, entries)?;
        self.dev.write_at(my_lba * ss, header)
    }
}

/// Whether `name` is `GPT_<slot>_<field>` for one of the three fields.
fn is_slot_var(name: &str, slot: &str) -> bool {
    let rest = name
        .strip_prefix("GPT_")
        .and_then(|r| r.strip_prefix(slot))
        .and_then(|r| r.strip_prefix('_'));
    rest.is_some_and(|f| FIELDS.contains(&f))
}

/// Plain decimal digits (one or two) not above `max`.
fn parse_small(value: &str, max: u8) -> Option<u8> {
    let digits = !value.is_empty() && value.len() <= 2 && value.bytes().all(|b| b.is_ascii_digit());
    let n: u8 = if digits {
        value.parse().ok()?
    } else {
        return None;
    };
    (n <= max).then_some(n)
}

impl<D: BlockDevice> EnvStore for GptAttrEnv<D> {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        let (_, table, _) = self.current()?;
        let resolved = self.resolve(&table)?;
        let mut vars = EnvVars::new();
        for (slot, index) in &resolved.slots {
            let a = BootAttrs::from_bits(table.attributes(*index));
            vars.insert(format!("GPT_{slot}_PRIORITY"), a.priority.to_string());
            vars.insert(format!("GPT_{slot}_TRIES"), a.tries.to_string());
            vars.insert(
                format!("GPT_{slot}_SUCCESSFUL"),
                u8::from(a.successful).to_string(),
            );
        }
        if let Some((index, offset)) = resolved.env {
            let selected = (table.attributes(index) >> ENV_SELECT_BIT) & 1;
            let (stored, _) = self.read_copy(offset, selected)?;
            vars.extend(
                stored
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(BASCULE_PREFIX)),
            );
        }
        Ok(vars)
    }

    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        let (tables, chosen, primary_current) = self.current()?;
        let resolved = self.resolve(&chosen)?;
        let wanted = self.wanted(vars, &resolved.slots)?;
        let mut next = chosen.clone();
        for ((_, index), attrs) in resolved.slots.iter().zip(&wanted.attrs) {
            next.set_attributes(*index, attrs.apply(chosen.attributes(*index)));
        }
        if let Some(env) = resolved.env {
            let select = self.write_env_copy(&chosen, env, &wanted.bascule)?;
            let bits = next.attributes(env.0) & !(1 << ENV_SELECT_BIT);
            next.set_attributes(env.0, bits | (select << ENV_SELECT_BIT));
        }
        self.write_tables(&tables, &next, primary_current)
    }

    fn describe(&self) -> String {
        let slots: Vec<String> = self
            .layout
            .slots
            .iter()
            .map(|(s, p)| format!("{s} = {p}"))
            .collect();
        let env = match &self.layout.bascule_env {
            Some(p) => format!("BASCULE_* in {p}"),
            None => "no BASCULE_* storage".into(),
        };
        format!(
            "GPT attributes on {} ({}-byte sectors; {}; {env})",
            self.dev.name(),
            self.sector_size,
            slots.join(", ")
        )
    }
}

//! The GPT step: does the disk's table already match the layout, and the new table
//! to write (through the hal's one writer, `gpt::create`). A table that matches keeps
//! its GUIDs when a damaged copy is rewritten, so a resumed disk keeps its identity.
use bascule_hal::gpt::create::{copy_in_use, Guid, NewPartition, NewTable};
use bascule_hal::gpt::table::{read_tables, Table, Tables};
use bascule_hal::{FileBlock, HalError};
use bascule_partitions::disk_layout::{DiskPlan, EnvPlace};
use serde::{Deserialize, Serialize};

use super::ProvisionError;

/// Bits 48..=63 of the slot and `bascule-env` entries belong to the GPT boot env.
const ENV_BITS: u64 = 0xffff << 48;

/// One partition as the report records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// 1-based entry number.
    pub number: usize,
    pub name: String,
    pub type_guid: String,
    pub unique_guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
}

/// The table as the report records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRecord {
    pub sector_size: u64,
    pub sectors: u64,
    pub disk_guid: String,
    pub partitions: Vec<PartitionRecord>,
}

/// Both copies of the disk's GPT, read with the layout's sector size.
pub fn read(disk: &std::path::Path, sector_size: u64) -> Result<Tables, HalError> {
    let mut dev = FileBlock::open(disk, 0, None, false)?;
    read_tables(&mut dev, sector_size)
}

/// The copy readers take (primary if valid, else backup), if any.
pub fn in_use(tables: &Tables) -> Option<&Table> {
    match copy_in_use(tables)? {
        true => tables.primary.as_ref().ok(),
        false => tables.backup.as_ref().ok(),
    }
}

/// Whether both copies are valid and hold the same entries.
pub fn both_copies_agree(tables: &Tables) -> bool {
    matches!((&tables.primary, &tables.backup), (Ok(p), Ok(b)) if p.entries() == b.entries())
}

/// Attribute bits of entry `index` that the layout decides.
fn layout_bits(plan: &DiskPlan, index: usize) -> u64 {
    let env_owned = match plan.env {
        EnvPlace::Gpt { bascule_env } => {
            bascule_env == index || plan.slots.values().any(|ab| ab.contains(&index))
        }
        _ => false,
    };
    if env_owned {
        !ENV_BITS
    } else {
        u64::MAX
    }
}

/// Whether `table` is the layout's: the same used entries (name, type, LBAs,
/// attributes but those the GPT boot env owns), in the same order.
pub fn matches(plan: &DiskPlan, table: &Table) -> bool {
    let (first, _) = table.usable();
    let used = (0..table.entry_count())
        .filter(|&i| table.is_used(i))
        .count();
    used == plan.partitions.len()
        && first <= plan.usable_bytes().0 / plan.sector_size
        && plan.partitions.iter().enumerate().all(|(i, p)| {
            let mask = layout_bits(plan, i);
            table.is_used(i)
                && table.name_is(i, &p.name)
                && Guid(table.type_guid(i)).to_string() == p.type_guid
                && table.lba_range(i) == (p.first_lba, p.last_lba)
                && table.attributes(i) & mask == p.attributes & mask
        })
}

fn random_guid() -> Result<Guid, ProvisionError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ProvisionError::Io {
        context: "random GUID".into(),
        message: e.to_string(),
    })?;
    Ok(Guid::from_random(bytes))
}

/// The table to write: fresh random GUIDs, or those (and the env-owned attribute
/// bits) of `keep`, a table that already matches the layout.
pub fn new_table(plan: &DiskPlan, keep: Option<&Table>) -> Result<NewTable, ProvisionError> {
    let disk_guid = match keep {
        Some(t) => Guid(t.disk_guid()),
        None => random_guid()?,
    };
    let mut partitions = Vec::new();
    for (i, p) in plan.partitions.iter().enumerate() {
        let (unique_guid, attributes) = match keep {
            Some(t) => (Guid(t.unique_guid(i)), t.attributes(i)),
            None => (random_guid()?, p.attributes),
        };
        let type_guid = Guid::parse(&p.type_guid).ok_or_else(|| ProvisionError::Io {
            context: format!("partition {:?}", p.name),
            message: format!("type GUID {} does not parse", p.type_guid),
        })?;
        partitions.push(NewPartition {
            type_guid,
            unique_guid,
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            attributes,
            name: p.name.clone(),
        });
    }
    Ok(NewTable {
        sector_size: plan.sector_size,
        sectors: plan.sectors,
        disk_guid,
        partitions,
    })
}

/// The report's record of `table`.
pub fn record(table: &Table, sector_size: u64, sectors: u64) -> TableRecord {
    let partitions = (0..table.entry_count())
        .filter(|&i| table.is_used(i))
        .map(|i| {
            let (first_lba, last_lba) = table.lba_range(i);
            PartitionRecord {
                number: i + 1,
                name: table.name(i),
                type_guid: Guid(table.type_guid(i)).to_string(),
                unique_guid: Guid(table.unique_guid(i)).to_string(),
                first_lba,
                last_lba,
                attributes: table.attributes(i),
            }
        })
        .collect();
    TableRecord {
        sector_size,
        sectors,
        disk_guid: Guid(table.disk_guid()).to_string(),
        partitions,
    }
}

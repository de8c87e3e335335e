//! `--verify`: re-reads the disk and compares it with a report. Both GPT copies must
//! be valid and agree, and the table must be the report's (disk and partition GUIDs,
//! names, types, LBAs, attributes but the bits a GPT boot env changes at each boot);
//! every slot the report lists must still hash to the recorded SHA-256.
use std::path::Path;

use bascule_partitions::disk_layout::{DiskPlan, EnvPlace};

use super::report::Report;
use super::slots::hash_range;
use super::table::{self, PartitionRecord};
use super::ProvisionError;
use crate::install::engine::hex;

/// Checks the disk against `report`; the error names the first difference.
pub fn verify(plan: &DiskPlan, disk: &Path, report: &Report) -> Result<(), ProvisionError> {
    let tables = table::read(disk, plan.sector_size)?;
    let problem = |what: String| ProvisionError::Verify(format!("{}: {what}", disk.display()));
    if let Err(e) = &tables.primary {
        return Err(problem(format!("primary GPT: {e}")));
    }
    if let Err(e) = &tables.backup {
        return Err(problem(format!(
            "backup GPT at LBA {}: {e}",
            tables.backup_lba
        )));
    }
    if !table::both_copies_agree(&tables) {
        return Err(problem("the primary and backup GPT entries differ".into()));
    }
    let current = table::in_use(&tables).ok_or_else(|| problem("no GPT".into()))?;
    let found = table::record(current, plan.sector_size, plan.sectors);
    if found.disk_guid != report.table.disk_guid {
        return Err(problem(format!(
            "disk GUID {} (report: {})",
            found.disk_guid, report.table.disk_guid
        )));
    }
    let env_bits = matches!(plan.env, EnvPlace::Gpt { .. });
    let comparable = |p: &PartitionRecord| PartitionRecord {
        attributes: if env_bits {
            p.attributes & !(0xffff << 48)
        } else {
            p.attributes
        },
        ..p.clone()
    };
    let want: Vec<_> = report.table.partitions.iter().map(comparable).collect();
    let have: Vec<_> = found.partitions.iter().map(comparable).collect();
    if want != have {
        return Err(problem(format!(
            "partition table differs from the report: {have:?} (report: {want:?})"
        )));
    }
    for slot in &report.slots {
        let index = plan
            .partitions
            .iter()
            .position(|p| p.name == slot.partition)
            .ok_or_else(|| problem(format!("no partition {:?} in the layout", slot.partition)))?;
        let sha = hex(&hash_range(disk, plan.window(index).0, slot.bytes)?);
        if sha != slot.sha256 {
            return Err(problem(format!(
                "slot {}.{} ({}): SHA-256 of its {} bytes is {sha}, the report says {}",
                slot.class, slot.slot, slot.partition, slot.bytes, slot.sha256
            )));
        }
    }
    Ok(())
}

//! The provisioning report, for the factory record: printed, and written as JSON.
//! `--verify` reads one back and compares the disk with it.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::slots::SlotRecord;
use super::table::TableRecord;
use super::ProvisionError;
use crate::install::StageTimes;

/// What a provisioning run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A blank (or, with `--force`, foreign) disk, written from scratch.
    Provisioned,
    /// A disk whose table already matched the layout, completed.
    Resumed,
    /// A disk that already held this layout and these images: nothing written.
    AlreadyProvisioned,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `bascule <version>`.
    pub tool: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    pub disk: String,
    pub layout: String,
    pub outcome: Outcome,
    pub table: TableRecord,
    pub slots: Vec<SlotRecord>,
    /// Version provisioned per slot class.
    pub versions: BTreeMap<String, String>,
    /// The boot env as written.
    pub env: BTreeMap<String, String>,
    /// What else was written: raw images, file systems, device config.
    pub steps: Vec<String>,
    /// Where each slot write's time went (not part of the factory record).
    #[serde(skip)]
    pub stages: Vec<StageTimes>,
}

impl Report {
    /// Writes the report as pretty JSON to `path`.
    pub fn save(&self, path: &Path) -> Result<(), ProvisionError> {
        let json = serde_json::to_string_pretty(self).map_err(|e| ProvisionError::Io {
            context: "encode the report".into(),
            message: e.to_string(),
        })?;
        crate::device::write_atomic(path, format!("{json}\n").as_bytes()).map_err(|e| {
            ProvisionError::Io {
                context: format!("write {}", path.display()),
                message: e.to_string(),
            }
        })
    }

    /// Reads a report written by [`Report::save`].
    pub fn load(path: &Path) -> Result<Report, ProvisionError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProvisionError::Io {
            context: format!("read report {}", path.display()),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ProvisionError::Io {
            context: format!("parse report {}", path.display()),
            message: e.to_string(),
        })
    }

    /// A few lines for the operator.
    pub fn summary(&self) -> String {
        let what = match self.outcome {
            Outcome::Provisioned => "provisioned",
            Outcome::Resumed => "resumed and completed",
            Outcome::AlreadyProvisioned => {
                "already provisioned with this layout and these images: nothing written"
            }
        };
        let mut out = format!("{}: {what}\n", self.disk);
        out.push_str(&format!(
            "  GPT: disk {} ({} sectors of {} bytes)\n",
            self.table.disk_guid, self.table.sectors, self.table.sector_size
        ));
        for p in &self.table.partitions {
            out.push_str(&format!(
                "  {:>2} {:<16} LBA {}..={} type {}\n",
                p.number, p.name, p.first_lba, p.last_lba, p.type_guid
            ));
        }
        for s in &self.slots {
            out.push_str(&format!(
                "  slot {}.{} ({}): v{}, {} bytes, sha256 {}\n",
                s.class, s.slot, s.partition, s.version, s.bytes, s.sha256
            ));
        }
        for step in &self.steps {
            out.push_str(&format!("  {step}\n"));
        }
        out
    }
}

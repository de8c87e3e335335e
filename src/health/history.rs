//! The probe history: an append-only file of records in `state_dir` (on the data
//! slot, so the slot that takes over after a rollback reads what the failed slot
//! wrote).
//!
//! Format: one record per line, `CRC32 JSON\n`, the CRC (8 hex digits, CRC-32/ISO-HDLC)
//! over the JSON bytes. Each append is one `O_APPEND` write followed by an fsync, so
//! a power cut loses at most the record being written: a torn last line (its CRC does
//! not match) is skipped on read, and the next append starts a new line after it.
//! When the file would grow over [`MAX_BYTES`], it is rewritten with the newest
//! records that fit in half of that, through bascule's one atomic-file writer
//! ([`bascule_hal::env::replace_file`]): old bytes or new ones, whole.
//!
//! Every file operation goes through [`EnvFiles`], so the power-cut campaign runs the
//! same writer over [`bascule_hal::env::MemFiles`] (`tests/history_power_cut.rs`).
use std::path::{Path, PathBuf};

use bascule_hal::env::{replace_file, DirFiles, EnvFiles};
use bascule_hal::HalError;
use bascule_partitions::SlotName;
use serde::{Deserialize, Serialize};

/// The history's file name in `state_dir`.
pub const HISTORY_FILE: &str = "health-history";
/// The staging file of a rewrite.
const HISTORY_TMP: &str = "health-history.new";
/// The size bound of the history file.
pub const MAX_BYTES: usize = 64 << 10;
/// The longest file [`History::read`] accepts: bascule keeps it under [`MAX_BYTES`]
/// (plus the newline that ends a torn line), so a longer one is not its own.
const READ_LIMIT: usize = 4 * MAX_BYTES;
/// The most output of a failed check a record keeps (its tail).
pub const OUTPUT_TAIL_BYTES: usize = 2048;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// How a probe (or a boot that never ran one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every check passed; the slot is confirmed.
    Confirmed,
    /// A check failed or the deadline passed.
    Failed,
    /// The bootloader rolled the slot back without a probe having failed on it (a
    /// kernel panic, a hang): recorded by the next probe of the other slot.
    RevertedWithoutProbe,
    /// The `post-commit` hook failed after the slot was confirmed; the confirmation
    /// stands (`reason` and `output` tell why the hook failed).
    PostCommitHookFailed,
    /// `bascule history --clear-quarantine`: releases that failed before this record
    /// are installed again.
    QuarantineCleared,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Confirmed => "confirmed",
            Outcome::Failed => "failed",
            Outcome::RevertedWithoutProbe => "reverted-without-probe",
            Outcome::PostCommitHookFailed => "post-commit-hook-failed",
            Outcome::QuarantineCleared => "quarantine-cleared",
        })
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds.
    pub time: u64,
    pub slot: SlotName,
    /// The version bascule installed in the slot, if it knows.
    pub version: Option<String>,
    /// The SHA-256 (hex) of that release's signed manifest, if recorded.
    #[serde(default)]
    pub manifest: Option<String>,
    pub outcome: Outcome,
    /// The stage of the failed check.
    pub stage: Option<String>,
    /// The failed check.
    pub check: Option<String>,
    /// Why it failed, on one line (exit status, error, deadline), or why the slot
    /// was reverted.
    pub reason: Option<String>,
    /// The tail of the failed check's output (at most [`OUTPUT_TAIL_BYTES`]).
    pub output: Option<String>,
    /// Which try of the slot this boot was (1 = the first boot since it was armed).
    pub boot_count: u8,
    /// What the probe did after a failure (reboot, mark-bad, stay), in words.
    pub action: Option<String>,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("health history: cannot create its directory {path}: {message}")]
    CreateDir { path: PathBuf, message: String },
    #[error("health history: cannot {op}: {source}")]
    Files {
        op: &'static str,
        #[source]
        source: HalError,
    },
}

/// The history file of a directory, through the [`EnvFiles`] that hold it: the real
/// `state_dir` ([`History::new`]), or a power-cut model of one in the tests.
#[derive(Debug, Clone)]
pub struct History<F: EnvFiles = DirFiles> {
    files: F,
    /// The directory [`History::append`] creates first, on a real filesystem.
    create_dir: Option<PathBuf>,
}

/// The records read, and how many lines were skipped as torn or corrupt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    pub records: Vec<Record>,
    pub skipped: usize,
}

impl History<DirFiles> {
    /// The history in `state_dir`.
    pub fn new(state_dir: &Path) -> History<DirFiles> {
        History {
            files: DirFiles::new(state_dir),
            create_dir: Some(state_dir.to_path_buf()),
        }
    }
}

impl<F: EnvFiles> History<F> {
    /// The history in the directory `files`.
    pub fn over(files: F) -> History<F> {
        History {
            files,
            create_dir: None,
        }
    }

    /// The files, back.
    pub fn into_inner(self) -> F {
        self.files
    }

    /// Where the file is.
    pub fn path(&self) -> String {
        self.files.path_of(HISTORY_FILE)
    }

    fn raw(&mut self) -> Result<Vec<u8>, HalError> {
        Ok(self
            .files
            .read(HISTORY_FILE, READ_LIMIT)?
            .unwrap_or_default())
    }

    /// Every whole, intact record, oldest first.
    pub fn read(&mut self) -> Result<Read, HistoryError> {
        let raw = self.raw().map_err(files_err("read"))?;
        Ok(decode(&raw))
    }

    /// Appends `record` durably (one append, one fsync, and a directory fsync when
    /// the file is new); rewrites the file instead when it would outgrow
    /// [`MAX_BYTES`], or when it is too long to be bascule's.
    pub fn append(&mut self, record: &Record) -> Result<(), HistoryError> {
        if let Some(dir) = &self.create_dir {
            std::fs::create_dir_all(dir).map_err(|e| HistoryError::CreateDir {
                path: dir.clone(),
                message: e.to_string(),
            })?;
        }
        let line = encode(record);
        let raw = match self.raw() {
            Err(HalError::EnvTooLarge { .. }) => return self.rewrite(Vec::new(), line),
            raw => raw.map_err(files_err("read"))?,
        };
        if raw.len() + line.len() > MAX_BYTES {
            return self.rewrite(decode(&raw).records, line);
        }
        let mut bytes = Vec::with_capacity(line.len() + 1);
        // A torn last line stays a line of its own (skipped on read).
        if raw.last().is_some_and(|b| *b != b'\n') {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(&line);
        let files = &mut self.files;
        files
            .append(HISTORY_FILE, &bytes)
            .map_err(files_err("append to"))?;
        files.sync_file(HISTORY_FILE).map_err(files_err("sync"))?;
        if raw.is_empty() {
            files
                .sync_dir()
                .map_err(files_err("sync the directory of"))?;
        }
        Ok(())
    }

    /// Replaces the file with the newest of `records` that fit in half the bound,
    /// then `line`, through bascule's one atomic-file writer.
    fn rewrite(&mut self, records: Vec<Record>, line: Vec<u8>) -> Result<(), HistoryError> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut len = line.len();
        for record in records.iter().rev() {
            let encoded = encode(record);
            if len + encoded.len() > MAX_BYTES / 2 {
                break;
            }
            len += encoded.len();
            kept.push(encoded);
        }
        let mut bytes: Vec<u8> = kept.into_iter().rev().flatten().collect();
        bytes.extend_from_slice(&line);
        replace_file(&mut self.files, HISTORY_FILE, HISTORY_TMP, &bytes)
            .map_err(files_err("rewrite"))
    }
}

fn files_err(op: &'static str) -> impl FnOnce(HalError) -> HistoryError {
    move |source| HistoryError::Files { op, source }
}

/// `CRC JSON\n`.
pub fn encode(record: &Record) -> Vec<u8> {
    let json = serde_json::to_string(record).expect("a record serialises");
    format!("{:08x} {json}\n", CRC.checksum(json.as_bytes())).into_bytes()
}

/// The intact records of `bytes` (the CRC decides); counts the lines skipped.
pub fn decode(bytes: &[u8]) -> Read {
    let mut read = Read::default();
    // The piece after the last newline is a torn append, or a whole record whose
    // newline was cut off: its CRC tells which.
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match decode_line(line) {
            Some(record) => read.records.push(record),
            None => read.skipped += 1,
        }
    }
    read
}

fn decode_line(line: &[u8]) -> Option<Record> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if line[8] != b' ' || CRC.checksum(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// The last `OUTPUT_TAIL_BYTES` of `output`, cut at a character boundary.
pub fn tail(output: &str) -> String {
    let mut start = output.len().saturating_sub(OUTPUT_TAIL_BYTES);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    output[start..].to_string()
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Record {
        Record {
            time: n,
            slot: SlotName::B,
            version: Some(format!("1.0.{n}")),
            manifest: None,
            outcome: Outcome::Failed,
            stage: Some("boot".into()),
            check: Some("app".into()),
            reason: Some("sh exit status: 1".into()),
            output: Some("x".repeat(100)),
            boot_count: 1,
            action: None,
        }
    }

    #[test]
    fn a_torn_or_corrupt_line_is_skipped_and_the_next_append_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut history = History::new(dir.path());
        history.append(&record(1)).unwrap();
        let whole = encode(&record(2));
        // Every cut of the second append: the first record survives, never a half one.
        for cut in 0..whole.len() {
            let mut bytes = encode(&record(1));
            bytes.extend_from_slice(&whole[..cut]);
            std::fs::write(history.path(), &bytes).unwrap();
            // Only the newline missing: the record is whole, and its CRC says so.
            let mut expected = vec![record(1)];
            if cut == whole.len() - 1 {
                expected.push(record(2));
            }
            assert_eq!(history.read().unwrap().records, expected, "cut at {cut}");
            history.append(&record(3)).unwrap();
            expected.push(record(3));
            assert_eq!(history.read().unwrap().records, expected, "cut at {cut}");
        }
        let mut flipped = encode(&record(1));
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped).records, []);
        assert_eq!(decode(&flipped).skipped, 1);
    }

    #[test]
    fn the_file_stays_bounded_and_keeps_the_newest_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut history = History::new(dir.path());
        for n in 0..800 {
            history.append(&record(n)).unwrap();
            assert!(std::fs::metadata(history.path()).unwrap().len() <= MAX_BYTES as u64);
        }
        let records = history.read().unwrap().records;
        assert_eq!(records.last(), Some(&record(799)));
        let times: Vec<u64> = records.iter().map(|r| r.time).collect();
        assert!(times.windows(2).all(|w| w[1] == w[0] + 1), "{times:?}");
        assert!(records.len() > 100, "{}", records.len());
    }

    #[test]
    fn tail_keeps_the_end_at_a_char_boundary() {
        let text = format!("{}é{}", "a".repeat(3000), "b".repeat(2047));
        let t = tail(&text);
        assert!(
            t.len() <= OUTPUT_TAIL_BYTES && t.ends_with('b'),
            "{}",
            t.len()
        );
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_764_547_200), "2025-12-01 00:00:00 UTC");
    }
}

//! The record `install --no-activate` leaves for `bascule activate`: which slot it
//! wrote, which slot ran then, the operator's choices, and the bundle's head (header,
//! signature block and signed manifest, exactly as read), so that `activate`
//! authenticates the manifest again from its raw bytes before it trusts a field.
//!
//! It lives in `state_dir` (on the data slot, shared by both root slots) as the file
//! [`STAGED_FILE`], not in the boot environment: a manifest is kilobytes and a GRUB
//! environment block is 1024 bytes. The environment holds only the key that ties the
//! two together (`crate::slot::state`: `BASCULE_STAGED` and the slot's
//! manifest SHA-256). One record at a time: the next `--no-activate` install replaces
//! it; an activated record stays until then, and is refused because the environment
//! no longer shows its slot staged.
//!
//! File layout: one line of JSON ([`RecordMeta`]), `\n`, then `head_len` bytes of
//! bundle head. Written with hal's atomic [`replace_file`] (temporary file, fsync,
//! rename, directory fsync), so after a power cut it is the old record or the new
//! one, whole.
use bascule_hal::env::{replace_file, EnvFiles};
use bascule_hal::HalError;
use bascule_partitions::SlotName;
use serde::{Deserialize, Serialize};

use crate::bundle::{HEADER_LEN, MAX_MANIFEST_LEN, SIG_BLOCK_LEN};

/// The record's file name in `state_dir`.
pub const STAGED_FILE: &str = "staged-install";
/// The temporary file it is written through.
const STAGED_TMP: &str = "staged-install.new";
/// The record format this bascule writes and reads.
const RECORD_FORMAT: u32 = 1;
/// Longest metadata line read.
const MAX_META_LEN: usize = 4096;
/// Largest record read: a metadata line and the largest bundle head.
pub const MAX_RECORD_LEN: usize =
    MAX_META_LEN + 1 + HEADER_LEN + SIG_BLOCK_LEN as usize + MAX_MANIFEST_LEN as usize;

/// What `install --no-activate` wrote, and under which conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRecord {
    pub meta: RecordMeta,
    /// Header, signature block and manifest of the installed bundle, as read.
    pub head: Vec<u8>,
}

/// The record's metadata line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    pub format: u32,
    /// The slot written.
    pub target: SlotName,
    /// The slot running when it was written.
    pub booted: SlotName,
    /// The install's `--allow-downgrade`, applied again when `activate` re-plans.
    pub allow_downgrade: bool,
    /// The install's `--force`, applied again when `activate` re-plans.
    pub force: bool,
    pub head_len: usize,
}

/// A record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no metadata line")]
    NoMetaLine,
    #[error("metadata line is not valid: {0}")]
    Meta(String),
    #[error("record format {found} is not the one this bascule reads ({RECORD_FORMAT})")]
    Format { found: u32 },
    #[error("bundle head is {found} bytes, the metadata says {expected}")]
    HeadLength { expected: usize, found: usize },
}

impl StagedRecord {
    /// The record of an install of `head` into `target` while `booted` ran.
    pub fn new(
        target: SlotName,
        booted: SlotName,
        allow_downgrade: bool,
        force: bool,
        head: Vec<u8>,
    ) -> Self {
        let meta = RecordMeta {
            format: RECORD_FORMAT,
            target,
            booted,
            allow_downgrade,
            force,
            head_len: head.len(),
        };
        StagedRecord { meta, head }
    }

    /// The file's bytes (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.meta).expect("metadata serializes");
        out.push(b'\n');
        out.extend_from_slice(&self.head);
        out
    }

    /// Reads the file's bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let end = bytes
            .iter()
            .take(MAX_META_LEN + 1)
            .position(|b| *b == b'\n')
            .ok_or(RecordError::NoMetaLine)?;
        let meta: RecordMeta =
            serde_json::from_slice(&bytes[..end]).map_err(|e| RecordError::Meta(e.to_string()))?;
        if meta.format != RECORD_FORMAT {
            return Err(RecordError::Format { found: meta.format });
        }
        let head = &bytes[end + 1..];
        if head.len() != meta.head_len {
            return Err(RecordError::HeadLength {
                expected: meta.head_len,
                found: head.len(),
            });
        }
        Ok(StagedRecord {
            meta,
            head: head.to_vec(),
        })
    }
}

/// Replaces the record in `files` (the state directory) atomically.
pub fn save(files: &mut dyn EnvFiles, record: &StagedRecord) -> Result<(), HalError> {
    replace_file(files, STAGED_FILE, STAGED_TMP, &record.encode())
}

/// The record's bytes in `files`, `None` when there is none.
pub fn read(files: &mut dyn EnvFiles) -> Result<Option<Vec<u8>>, HalError> {
    files.read(STAGED_FILE, MAX_RECORD_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bascule_hal::env::MemFiles;

    fn record() -> StagedRecord {
        StagedRecord::new(SlotName::B, SlotName::A, false, true, vec![0, 10, 255, 10])
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut files = MemFiles::new();
        save(&mut files, &record()).unwrap();
        let bytes = read(&mut files).unwrap().unwrap();
        assert_eq!(StagedRecord::decode(&bytes).unwrap(), record());
        assert_eq!(files.names(), [STAGED_FILE]);
    }

    #[test]
    fn damaged_records_are_refused_by_name() {
        let bytes = record().encode();
        let short = &bytes[..bytes.len() - 1];
        assert_eq!(
            StagedRecord::decode(short),
            Err(RecordError::HeadLength {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            StagedRecord::decode(b"no newline"),
            Err(RecordError::NoMetaLine)
        );
        assert!(matches!(
            StagedRecord::decode(b"{\"target\":\"C\"}\n"),
            Err(RecordError::Meta(_))
        ));
        let future = String::from_utf8_lossy(&bytes).replace("\"format\":1", "\"format\":2");
        assert_eq!(
            StagedRecord::decode(future.as_bytes()),
            Err(RecordError::Format { found: 2 })
        );
    }
}

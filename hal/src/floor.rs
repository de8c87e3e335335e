//! The security floor store: the lowest security version the device still accepts,
//! kept where both root slots see the same value.
//!
//! Invariants of every [`SecurityFloorStore`]:
//! - the floor only rises: [`SecurityFloorStore::raise`] to a value at or below the
//!   current floor writes nothing;
//! - a raise is atomic across a power cut: a reboot reads the old or the new floor,
//!   never a lost (lower) or garbled one;
//! - a floor that cannot be read is an error, never a guess: reading it as 0 would
//!   re-admit every release it was raised to keep out.
//!
//! Backends: [`FileFloor`], a one-line file replaced through [`replace_file`] (on the
//! device: `state_dir` on the data slot, through [`crate::env::DirFiles`]; in tests,
//! [`crate::env::MemFiles`], which models what a power cut keeps), and [`MemFloor`],
//! a plain value for unit tests. A TPM NV index or an eMMC RPMB block can implement
//! the trait later; the U-Boot environment beside `BASCULE_*` would also do. A GRUB
//! environment would not: GRUB rewrites `grubenv` in place on every boot.
//!
//! File format: the floor in decimal ASCII followed by one `\n` (`"3\n"`), nothing
//! else. The trailing newline makes a torn prefix (`"1"` of `"12\n"`) unreadable
//! rather than a different number.
use alloc::format;
use alloc::string::String;

use crate::env::files::replace_file;
use crate::env::EnvFiles;
use crate::HalError;

/// Where the lowest accepted security version is kept.
pub trait SecurityFloorStore {
    /// The current floor (0 when it was never raised).
    fn read(&mut self) -> Result<u32, HalError>;
    /// Raises the floor to `to`, durably and atomically. Writes nothing and returns
    /// `false` when the floor is already `to` or higher: it never lowers.
    fn raise(&mut self, to: u32) -> Result<bool, HalError>;
    /// Where the floor is kept, for `status` ("file /data/bascule/security-floor").
    fn describe(&self) -> String;
}

/// Longest valid floor file: `u32::MAX` in decimal and the newline.
const MAX_FILE_LEN: usize = 11;

/// The floor as a one-line file `name` in a directory.
#[derive(Debug)]
pub struct FileFloor<F: EnvFiles> {
    files: F,
    name: String,
    tmp: String,
}

impl<F: EnvFiles> FileFloor<F> {
    /// The floor in file `name` of `files`, staged through `name.new`.
    pub fn new(files: F, name: &str) -> Self {
        FileFloor {
            files,
            name: String::from(name),
            tmp: format!("{name}.new"),
        }
    }

    /// Gives the file backend back.
    pub fn into_inner(self) -> F {
        self.files
    }

    fn corrupt(&self, detail: String) -> HalError {
        HalError::FloorCorrupt {
            store: self.files.path_of(&self.name),
            detail,
        }
    }
}

/// Parses a floor file: decimal digits and one trailing newline.
pub fn decode_floor(bytes: &[u8]) -> Result<u32, String> {
    let Some(digits) = bytes.strip_suffix(b"\n") else {
        return Err(format!("{} bytes without a final newline", bytes.len()));
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "{:?} is not a decimal number",
            digits.escape_ascii()
        ));
    }
    core::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{:?} does not fit in 32 bits", digits.escape_ascii()))
}

/// The bytes of a floor file holding `floor`.
pub fn encode_floor(floor: u32) -> String {
    format!("{floor}\n")
}

impl<F: EnvFiles> SecurityFloorStore for FileFloor<F> {
    fn read(&mut self) -> Result<u32, HalError> {
        let bytes = match self.files.read(&self.name, MAX_FILE_LEN) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(0),
            Err(HalError::EnvTooLarge { needed, .. }) => {
                return Err(self.corrupt(format!("longer than {MAX_FILE_LEN} bytes ({needed})")))
            }
            Err(e) => return Err(e),
        };
        decode_floor(&bytes).map_err(|detail| self.corrupt(detail))
    }

    fn raise(&mut self, to: u32) -> Result<bool, HalError> {
        if to <= self.read()? {
            return Ok(false);
        }
        let bytes = encode_floor(to);
        replace_file(&mut self.files, &self.name, &self.tmp, bytes.as_bytes())?;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("file {}", self.files.path_of(&self.name))
    }
}

/// A floor in memory (unit tests).
#[derive(Debug, Clone, Default)]
pub struct MemFloor {
    floor: u32,
    writes: u32,
}

impl MemFloor {
    /// A floor at `floor`.
    pub fn new(floor: u32) -> Self {
        MemFloor { floor, writes: 0 }
    }

    /// How many raises wrote.
    pub fn writes(&self) -> u32 {
        self.writes
    }
}

impl SecurityFloorStore for MemFloor {
    fn read(&mut self) -> Result<u32, HalError> {
        Ok(self.floor)
    }

    fn raise(&mut self, to: u32) -> Result<bool, HalError> {
        if to <= self.floor {
            return Ok(false);
        }
        self.floor = to;
        self.writes += 1;
        Ok(true)
    }

    fn describe(&self) -> String {
        String::from("memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MemFiles;

    #[test]
    fn missing_file_is_floor_zero_and_raise_creates_it() {
        let mut floor = FileFloor::new(MemFiles::new(), "security-floor");
        assert_eq!(floor.read().unwrap(), 0);
        assert!(floor.raise(3).unwrap());
        let mut files = floor.into_inner().after_cut();
        assert_eq!(
            files.read("security-floor", 16).unwrap().unwrap(),
            b"3\n",
            "the raise was not durable"
        );
        assert_eq!(
            files.names(),
            ["security-floor"],
            "staging file left behind"
        );
    }

    #[test]
    fn raise_never_lowers_and_writes_nothing_when_unchanged() {
        let mut files = MemFiles::new();
        files.insert("f", b"5\n");
        let mut floor = FileFloor::new(files, "f");
        assert!(!floor.raise(5).unwrap());
        assert!(!floor.raise(2).unwrap());
        assert_eq!(floor.read().unwrap(), 5);
        assert_eq!(floor.into_inner().ops_count(), 0, "a no-op raise wrote");
    }

    #[test]
    fn garbage_and_torn_files_are_errors_not_zero() {
        for bytes in [
            &b""[..],
            b"1",
            b"12",
            b"x\n",
            b"-1\n",
            b"4294967296\n",
            b"1 \n",
        ] {
            let mut files = MemFiles::new();
            files.insert("f", bytes);
            let err = FileFloor::new(files, "f").read().unwrap_err();
            assert!(
                matches!(err, HalError::FloorCorrupt { .. }) && err.to_string().contains("mem:f"),
                "{bytes:?}: {err}"
            );
        }
        let mut files = MemFiles::new();
        files.insert("f", b"123456789012\n");
        assert!(matches!(
            FileFloor::new(files, "f").read(),
            Err(HalError::FloorCorrupt { .. })
        ));
    }

    #[test]
    fn codec_round_trips_the_extremes() {
        for v in [0, 1, u32::MAX] {
            assert_eq!(decode_floor(encode_floor(v).as_bytes()), Ok(v));
        }
    }

    #[test]
    fn mem_floor_only_rises() {
        let mut floor = MemFloor::new(2);
        assert!(!floor.raise(1).unwrap());
        assert!(floor.raise(4).unwrap());
        assert_eq!((floor.read().unwrap(), floor.writes()), (4, 1));
    }
}

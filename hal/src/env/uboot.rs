//! The U-Boot environment: a pure codec of one copy ([`UbootCodec`]) and a store over a
//! block device ([`UbootEnv`]), byte-compatible with U-Boot, `fw_printenv`/`fw_setenv`
//! (libubootenv) and `mkenvimage`.
//!
//! # Format of one copy (`size` bytes, the `ENVSIZE` of `fw_env.config`)
//! ```text
//! single:    | CRC32 LE (4) | data (size - 4)                     |
//! redundant: | CRC32 LE (4) | flags (1) | data (size - 5)         |
//! data:      name=value\0 name=value\0 ... \0 padding (0x00 or 0xff)
//! ```
//! The CRC (zlib's CRC-32) covers the whole data area, padding included, not the flags.
//! Readers stop at the empty entry, so any padding byte works; [`UbootCodec::encode`]
//! pads with 0x00 unless told otherwise (`mkenvimage` pads with 0xff).
//!
//! # Names and values are bytes
//! As in U-Boot and libubootenv, a name or value is any bytes but NUL (and `=` in a
//! name); nothing requires UTF-8. Decoding follows libubootenv (`fw_printenv`): an
//! entry without `=` is skipped and a later duplicate wins. Encoding writes each
//! variable once, sorted by name, as `fw_setenv` does, so a commit keeps every
//! variable's bytes. Where U-Boot's own import (`himport_r` in `lib/hashtable.c`)
//! reads the same bytes differently, bascule follows `fw_printenv`: U-Boot deletes a
//! variable on a `name` or `name=` entry (libubootenv keeps `name=` as an empty value),
//! skips leading blanks and `#` entries, drops a `\` before any byte of a value, and
//! refuses the whole copy for an entry with an empty name (bascule skips that entry).
//!
//! # Redundant copies
//! Two copies at two offsets. As in libubootenv (`src/uboot_env.c`, flags type
//! "incremental", used for files, block devices, NAND and UBI) and U-Boot's
//! `env_import_redund`: a copy with a bad CRC is ignored; when both are valid, the one
//! with the larger flags byte wins, except that 0x00 beats 0xff (the counter wrapped),
//! and copy 0 wins a tie. A commit writes the copy that is *not* current with flags =
//! current + 1 (wrapping), then syncs: that sync is the commit point. A cut before it
//! completes leaves a copy with a bad CRC (or the old bytes), so the current copy
//! still wins: the old state. (NOR flash under libubootenv uses "boolean" flags,
//! active = 1 / obsolete = 0; bascule does not write raw NOR.)
//!
//! # Single copy: not power-safe
//! With one copy, the commit rewrites the only copy in place; a cut in the middle
//! leaves a bad CRC and U-Boot falls back to its built-in default environment. The
//! format cannot prevent this. [`UbootEnv::is_power_safe`] is `false`, `describe()`
//! says so, and `load` reports the damage as [`HalError::EnvCorrupt`] rather than
//! returning garbage.
//!
//! # Blank and corrupt
//! `load` tells the two apart: when every copy is erased (all 0x00 or all 0xff, as
//! after a flash erase) it returns [`HalError::EnvBlank`], and U-Boot runs on its
//! built-in default environment; any other copy that fails its CRC is
//! [`HalError::EnvCorrupt`]. A first write to a blank env must carry the board's
//! default variables (`bootcmd`, ...): [`parse_initial_env`] reads them from the
//! `u-boot-initial-env` file U-Boot's build makes.
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::codec::{crc32, is_erased, le_u32, DecodeError, EncodeError};
use super::{EnvName, EnvStore, EnvValue, EnvVars};
use crate::block::BlockDevice;
use crate::HalError;

/// Largest environment copy bascule handles (U-Boot envs are usually 8–256 KiB).
pub const UBOOT_MAX_ENV_SIZE: usize = 4 << 20;

/// Codec of one U-Boot environment copy of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UbootCodec {
    size: usize,
    redundant: bool,
    padding: u8,
}

/// One decoded copy: its variables and, for a redundant layout, its flags byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootCopy {
    pub vars: EnvVars,
    pub flags: Option<u8>,
}

impl UbootCodec {
    /// A codec for copies of `size` bytes (header included); `None` when `size` cannot
    /// hold even an empty environment or exceeds [`UBOOT_MAX_ENV_SIZE`].
    pub fn new(size: usize, redundant: bool) -> Option<Self> {
        let header = if redundant { 5 } else { 4 };
        if size <= header || size > UBOOT_MAX_ENV_SIZE {
            return None;
        }
        Some(UbootCodec {
            size,
            redundant,
            padding: 0,
        })
    }

    /// The same codec padding with `byte` (0xff to match `mkenvimage`).
    pub fn with_padding(self, byte: u8) -> Self {
        UbootCodec {
            padding: byte,
            ..self
        }
    }

    /// Size of one copy in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    fn header_len(&self) -> usize {
        if self.redundant {
            5
        } else {
            4
        }
    }

    /// Encodes `vars` as one copy; `flags` is written only in a redundant layout.
    pub fn encode(&self, vars: &EnvVars, flags: u8) -> Result<Vec<u8>, EncodeError> {
        let header = self.header_len();
        let mut out = Vec::with_capacity(self.size);
        out.resize(header, 0);
        for (name, value) in vars {
            check_var(name, value)?;
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
        out.push(0);
        if out.len() > self.size {
            return Err(EncodeError::TooLarge {
                needed: out.len(),
                available: self.size,
            });
        }
        out.resize(self.size, self.padding);
        let crc = crc32(&out[header..]);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        if self.redundant {
            out[4] = flags;
        }
        Ok(out)
    }

    /// Decodes one copy. Checks the size and the CRC before parsing, then reads the
    /// entries as `fw_printenv` does (see the module docs); any byte but NUL is kept.
    pub fn decode(&self, bytes: &[u8]) -> Result<UbootCopy, DecodeError> {
        if bytes.len() != self.size {
            return Err(DecodeError::WrongSize {
                len: bytes.len(),
                expected: self.size,
            });
        }
        let header = self.header_len();
        let stored = le_u32(bytes, 0).ok_or(DecodeError::WrongSize {
            len: bytes.len(),
            expected: self.size,
        })?;
        let computed = crc32(&bytes[header..]);
        if stored != computed {
            return Err(DecodeError::Crc { stored, computed });
        }
        let vars = parse_pairs(&bytes[header..], header)?;
        let flags = if self.redundant { Some(bytes[4]) } else { None };
        Ok(UbootCopy { vars, flags })
    }
}

/// Refuses what U-Boot cannot store: empty names, `=` in names, NUL anywhere. Any
/// other byte is kept as it is.
fn check_var(name: &EnvName, value: &EnvValue) -> Result<(), EncodeError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name.contains(b'=') {
        "'=' in the name"
    } else if name.contains(0) || value.contains(0) {
        "NUL byte in the name or value"
    } else {
        return Ok(());
    };
    Err(EncodeError::InvalidVar {
        name: format!("{name}"),
        reason,
    })
}

/// Parses `name=value\0` entries up to the empty one, as libubootenv's `libuboot_load`
/// does: an entry without `=` is skipped, a later duplicate wins; bytes are kept as
/// they are. An entry with an empty name is skipped too (libubootenv would keep it;
/// U-Boot refuses the whole copy). `base` is the data offset in the copy, for errors.
fn parse_pairs(data: &[u8], base: usize) -> Result<EnvVars, DecodeError> {
    let mut vars = EnvVars::new();
    let mut pos = 0;
    loop {
        let rest = data.get(pos..).unwrap_or(&[]);
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::Unterminated { offset: base + pos });
        };
        if len == 0 {
            return Ok(vars);
        }
        let entry = &rest[..len];
        if let Some(eq) = entry.iter().position(|&b| b == b'=') {
            if eq > 0 {
                vars.insert(&entry[..eq], &entry[eq + 1..]);
            }
        }
        pos += len + 1;
    }
}

/// Which of two redundant copies is current, by libubootenv's "incremental" rule;
/// `None` when neither is valid. `flags` are the copies' flag bytes when valid.
pub fn select_copy(flags: [Option<u8>; 2]) -> Option<usize> {
    match flags {
        [None, None] => None,
        [Some(_), None] => Some(0),
        [None, Some(_)] => Some(1),
        [Some(a), Some(b)] => Some(match (a, b) {
            (0xff, 0) => 1,
            (0, 0xff) => 0,
            (a, b) if b > a => 1,
            _ => 0,
        }),
    }
}

/// Where the environment lives on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UbootLayout {
    /// Byte offset of the (first) copy.
    pub offset: u64,
    /// Size of one copy, header included (`CONFIG_ENV_SIZE`).
    pub size: usize,
    /// Byte offset of the second copy for a redundant environment.
    pub redundant_offset: Option<u64>,
}

impl UbootLayout {
    /// The offsets of the copies: one or two.
    pub fn copies(&self) -> Vec<u64> {
        let mut v = vec![self.offset];
        v.extend(self.redundant_offset);
        v
    }

    /// The `fw_env.config` lines (`DEVICE OFFSET ENVSIZE [SECTORSIZE]`, one per copy)
    /// for this layout on `device`. libubootenv reads the offset with `%lli` and the
    /// sizes with `%zx`, so all numbers are written in hex with `0x`.
    pub fn fw_env_config(&self, device: &str, sector_size: Option<u64>) -> String {
        let mut out = String::new();
        for offset in self.copies() {
            out.push_str(&format!("{device} {offset:#x} {:#x}", self.size));
            if let Some(sector) = sector_size {
                out.push_str(&format!(" {sector:#x}"));
            }
            out.push('\n');
        }
        out
    }
}

/// A U-Boot environment on a block device. See the module docs for the commit
/// protocol and the single-copy caveat.
#[derive(Debug)]
pub struct UbootEnv<D: BlockDevice> {
    dev: D,
    layout: UbootLayout,
    codec: UbootCodec,
}

impl<D: BlockDevice> UbootEnv<D> {
    /// A store over `dev` with `layout`; refuses sizes out of bounds, copies beyond the
    /// device and overlapping copies.
    pub fn new(dev: D, layout: UbootLayout) -> Result<Self, HalError> {
        let bad = |reason: String| HalError::BadLayout {
            what: format!("U-Boot env on {}", dev.name()),
            reason,
        };
        let redundant = layout.redundant_offset.is_some();
        let codec = UbootCodec::new(layout.size, redundant).ok_or_else(|| {
            bad(format!(
                "size {:#x} must be between {} and {UBOOT_MAX_ENV_SIZE:#x}",
                layout.size,
                if redundant { 6 } else { 5 }
            ))
        })?;
        let size = layout.size as u64;
        for offset in layout.copies() {
            if offset.checked_add(size).is_none_or(|end| end > dev.len()) {
                return Err(bad(format!(
                    "copy at {offset:#x}+{size:#x} is beyond the device size {:#x}",
                    dev.len()
                )));
            }
        }
        if let Some(second) = layout.redundant_offset {
            if layout.offset.abs_diff(second) < size {
                return Err(bad(format!(
                    "copies at {:#x} and {second:#x} overlap",
                    layout.offset
                )));
            }
        }
        Ok(UbootEnv { dev, layout, codec })
    }

    /// Whether a commit survives a power cut at any byte (only with two copies).
    pub fn is_power_safe(&self) -> bool {
        self.layout.redundant_offset.is_some()
    }

    /// The layout this store uses.
    pub fn layout(&self) -> &UbootLayout {
        &self.layout
    }

    /// Gives the device back.
    pub fn into_inner(self) -> D {
        self.dev
    }

    fn store_name(&self) -> String {
        format!("U-Boot env {} @{:#x}", self.dev.name(), self.layout.offset)
    }

    /// Reads and decodes every copy, in layout order; also says whether every copy
    /// is erased.
    fn read_copies(&mut self) -> Result<(Vec<Result<UbootCopy, DecodeError>>, bool), HalError> {
        let mut out = Vec::new();
        let mut erased = true;
        let mut buf = vec![0u8; self.layout.size];
        for offset in self.layout.copies() {
            self.dev.read_at(offset, &mut buf)?;
            erased &= is_erased(&buf);
            out.push(self.codec.decode(&buf));
        }
        Ok((out, erased))
    }

    /// Index of the current copy among `copies`, or `None` when none is valid.
    fn current(copies: &[Result<UbootCopy, DecodeError>]) -> Option<usize> {
        if copies.len() == 1 {
            return copies[0].is_ok().then_some(0);
        }
        let flag = |i: usize| {
            copies
                .get(i)
                .and_then(|c| c.as_ref().ok())
                .map(|c| c.flags.unwrap_or(0))
        };
        select_copy([flag(0), flag(1)])
    }

    fn corrupt(&self, copies: &[Result<UbootCopy, DecodeError>]) -> HalError {
        let detail = self
            .layout
            .copies()
            .iter()
            .zip(copies)
            .enumerate()
            .map(|(i, (offset, c))| match c {
                Ok(_) => format!("copy {i} @{offset:#x}: valid"),
                Err(e) => format!("copy {i} @{offset:#x}: {e}"),
            })
            .collect::<Vec<_>>()
            .join("; ");
        HalError::EnvCorrupt {
            store: self.store_name(),
            detail,
        }
    }
}

impl<D: BlockDevice> EnvStore for UbootEnv<D> {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        let (copies, erased) = self.read_copies()?;
        if let Some(Ok(copy)) = Self::current(&copies).and_then(|i| copies.get(i)) {
            return Ok(copy.vars.clone());
        }
        if erased {
            return Err(HalError::EnvBlank {
                store: self.store_name(),
            });
        }
        Err(self.corrupt(&copies))
    }

    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError> {
        let store = self.store_name();
        if self.layout.redundant_offset.is_none() {
            let image = self.codec.encode(vars, 0).map_err(|e| e.into_hal(&store))?;
            self.dev.write_at(self.layout.offset, &image)?;
            return self.dev.sync();
        }
        // Validate before touching the device, then pick the copy to overwrite from
        // what is on the device now (another writer may have committed since load).
        self.codec.encode(vars, 0).map_err(|e| e.into_hal(&store))?;
        let (copies, _) = self.read_copies()?;
        let (target, flags) = match Self::current(&copies) {
            Some(i) => {
                let flags = copies[i].as_ref().map_or(0, |c| c.flags.unwrap_or(0));
                (1 - i, flags.wrapping_add(1))
            }
            None => (0, 1),
        };
        let image = self
            .codec
            .encode(vars, flags)
            .map_err(|e| e.into_hal(&store))?;
        let offset = self.layout.copies()[target];
        self.dev.write_at(offset, &image)?;
        // The commit's window (written, not yet synced): widened only in test builds.
        #[cfg(feature = "test-pause")]
        crate::pause::point("uboot-commit");
        self.dev.sync()
    }

    fn describe(&self) -> String {
        match self.layout.redundant_offset {
            Some(second) => format!(
                "U-Boot env {} @{:#x} and @{second:#x}, {:#x} bytes each (redundant)",
                self.dev.name(),
                self.layout.offset,
                self.layout.size
            ),
            None => format!(
                "U-Boot env {} @{:#x}, {:#x} bytes (single copy: NOT power-safe, a power \
                 cut during a commit corrupts it)",
                self.dev.name(),
                self.layout.offset,
                self.layout.size
            ),
        }
    }
}

mod initial;
pub use initial::parse_initial_env;

#[cfg(test)]
mod tests;

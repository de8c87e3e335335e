//! bascule's native environment, for a team's own (Rust) bootloader: two copies at two
//! offsets of a block device, each with a generation counter and a CRC; the newest
//! valid copy wins. The codec ([`NativeCodec`]) is `core` + `alloc` only.
//!
//! # Byte layout of one copy (`size` bytes; all integers little-endian)
//! ```text
//! offset  size  field
//!      0     4  magic "BSEV"
//!      4     2  format version (1)
//!      6     2  required features (0; a reader refuses bits it does not know)
//!      8     8  generation: +1 on every commit
//!     16     4  payload length N (at most size - 24)
//!     20     N  payload: postcard encoding of the variables, a map of byte strings
//!               name -> value (postcard writes a byte string like a string, so the
//!               copies written when they were strings read the same)
//!   20+N     4  CRC-32 (zlib) of bytes 0 .. 20+N
//!   24+N     -  padding 0xff up to `size` (not covered by the CRC)
//! ```
//! ```
//! # use bascule_hal::env::native::NativeCodec;
//! # use bascule_hal::EnvVars;
//! let mut vars = EnvVars::new();
//! vars.insert("BOOT_ORDER", "A B");
//! let codec = NativeCodec::new(256).unwrap();
//! let copy = codec.encode(&vars, 7).unwrap();
//! assert_eq!(&copy[0..4], b"BSEV");
//! assert_eq!(&copy[8..16], &7u64.to_le_bytes());
//! let back = NativeCodec::decode(&copy).unwrap();
//! assert_eq!((back.vars, back.generation), (vars, 7));
//! ```
//!
//! # Commit protocol and invariant
//! A commit reads both copies, picks the current one (valid, highest generation; copy
//! 0 on a tie), writes the *other* copy with generation + 1 in one write, then syncs;
//! the sync is the commit point. A cut anywhere before it completes leaves the other
//! copy old or with a bad CRC, so the current copy still wins. A reader therefore
//! always sees a whole committed state. The 64-bit generation cannot wrap in practice.
//!
//! When both copies are erased (all 0x00 or all 0xff), `load` says
//! [`HalError::EnvBlank`]; any other unreadable pair is [`HalError::EnvCorrupt`].
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::codec::{crc32, is_erased, le_u32, DecodeError, EncodeError};
use super::{EnvStore, EnvVars};
use crate::block::BlockDevice;
use crate::HalError;

/// Magic number at the start of every copy.
pub const NATIVE_MAGIC: [u8; 4] = *b"BSEV";
/// Format version this code writes and reads.
pub const NATIVE_VERSION: u16 = 1;
/// Required-feature bits this code understands (none yet).
pub const NATIVE_KNOWN_FEATURES: u16 = 0;
/// Bytes before the payload.
pub const NATIVE_HEADER_LEN: usize = 20;
/// Largest copy bascule handles.
pub const NATIVE_MAX_SIZE: usize = 1 << 20;

/// One decoded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCopy {
    pub vars: EnvVars,
    pub generation: u64,
}

/// Codec of one copy of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeCodec {
    size: usize,
}

impl NativeCodec {
    /// A codec for copies of `size` bytes; `None` when `size` cannot hold an empty
    /// environment or exceeds [`NATIVE_MAX_SIZE`].
    pub fn new(size: usize) -> Option<Self> {
        (NATIVE_HEADER_LEN + 5..=NATIVE_MAX_SIZE)
            .contains(&size)
            .then_some(NativeCodec { size })
    }

    /// Encodes `vars` with `generation` into one copy of the codec's size.
    pub fn encode(&self, vars: &EnvVars, generation: u64) -> Result<Vec<u8>, EncodeError> {
        let payload = postcard::to_allocvec(vars).map_err(|_| EncodeError::InvalidVar {
            name: String::new(),
            reason: "postcard cannot encode the variables",
        })?;
        let needed = NATIVE_HEADER_LEN + payload.len() + 4;
        if needed > self.size {
            return Err(EncodeError::TooLarge {
                needed,
                available: self.size,
            });
        }
        let mut out = Vec::with_capacity(self.size);
        out.extend_from_slice(&NATIVE_MAGIC);
        out.extend_from_slice(&NATIVE_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(self.size, 0xff);
        Ok(out)
    }

    /// Decodes one copy of any size up to [`NATIVE_MAX_SIZE`]: checks magic, version,
    /// features and length bounds before the CRC, and the CRC before the payload.
    pub fn decode(bytes: &[u8]) -> Result<NativeCopy, DecodeError> {
        if bytes.len() > NATIVE_MAX_SIZE || bytes.len() < NATIVE_HEADER_LEN + 4 {
            return Err(DecodeError::WrongSize {
                len: bytes.len(),
                expected: NATIVE_HEADER_LEN + 4,
            });
        }
        if bytes[0..4] != NATIVE_MAGIC {
            return Err(DecodeError::BadSignature {
                expected: "\"BSEV\"",
            });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != NATIVE_VERSION {
            return Err(unsupported("format version", version, NATIVE_VERSION));
        }
        let features = u16::from_le_bytes([bytes[6], bytes[7]]);
        if features & !NATIVE_KNOWN_FEATURES != 0 {
            return Err(unsupported(
                "required features",
                features,
                NATIVE_KNOWN_FEATURES,
            ));
        }
        let mut gen = [0u8; 8];
        gen.copy_from_slice(&bytes[8..16]);
        let generation = u64::from_le_bytes(gen);
        let len = le_u32(bytes, 16).unwrap_or(u32::MAX) as usize;
        let max = bytes.len() - NATIVE_HEADER_LEN - 4;
        if len > max {
            return Err(DecodeError::LengthOutOfRange {
                field: "payload length",
                found: len as u64,
                max: max as u64,
            });
        }
        let end = NATIVE_HEADER_LEN + len;
        let stored = le_u32(bytes, end).unwrap_or(0);
        let computed = crc32(&bytes[..end]);
        if stored != computed {
            return Err(DecodeError::Crc { stored, computed });
        }
        let (vars, rest) = postcard::take_from_bytes::<EnvVars>(&bytes[NATIVE_HEADER_LEN..end])
            .map_err(|_| DecodeError::Payload("not a postcard map of byte strings"))?;
        if !rest.is_empty() {
            return Err(DecodeError::Payload("trailing bytes after the map"));
        }
        Ok(NativeCopy { vars, generation })
    }
}

fn unsupported(field: &'static str, found: u16, supported: u16) -> DecodeError {
    DecodeError::Unsupported {
        field,
        found: u64::from(found),
        supported: u64::from(supported),
    }
}

/// Index of the current copy: valid with the highest generation, copy 0 on a tie.
pub fn select_copy(generations: [Option<u64>; 2]) -> Option<usize> {
    match generations {
        [None, None] => None,
        [Some(_), None] => Some(0),
        [None, Some(_)] => Some(1),
        [Some(a), Some(b)] => Some(if b > a { 1 } else { 0 }),
    }
}

/// Where the two copies live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeLayout {
    /// Byte offsets of copy 0 and copy 1.
    pub offsets: [u64; 2],
    /// Size of each copy.
    pub size: usize,
}

/// The native environment on a block device (see the module docs).
#[derive(Debug)]
pub struct NativeEnv<D: BlockDevice> {
    dev: D,
    layout: NativeLayout,
    codec: NativeCodec,
}

impl<D: BlockDevice> NativeEnv<D> {
    /// A store over `dev`; refuses sizes out of bounds, copies beyond the device and
    /// overlapping copies.
    pub fn new(dev: D, layout: NativeLayout) -> Result<Self, HalError> {
        let bad = |reason: String| HalError::BadLayout {
            what: format!("native env on {}", dev.name()),
            reason,
        };
        let codec = NativeCodec::new(layout.size).ok_or_else(|| {
            bad(format!(
                "size {:#x} must be between {} and {NATIVE_MAX_SIZE:#x}",
                layout.size,
                NATIVE_HEADER_LEN + 5
            ))
        })?;
        let size = layout.size as u64;
        for offset in layout.offsets {
            if offset.checked_add(size).is_none_or(|end| end > dev.len()) {
                return Err(bad(format!(
                    "copy at {offset:#x}+{size:#x} is beyond the device size {:#x}",
                    dev.len()
                )));
            }
        }
        let [a, b] = layout.offsets;
        if a.abs_diff(b) < size {
            return Err(bad(format!("copies at {a:#x} and {b:#x} overlap")));
        }
        Ok(NativeEnv { dev, layout, codec })
    }

    /// Gives the device back.
    pub fn into_inner(self) -> D {
        self.dev
    }

    fn store_name(&self) -> String {
        format!(
            "native env {} @{:#x}",
            self.dev.name(),
            self.layout.offsets[0]
        )
    }

    /// Reads and decodes both copies; also says whether both are erased.
    fn read_copies(&mut self) -> Result<([Result<NativeCopy, DecodeError>; 2], bool), HalError> {
        let mut buf = vec![0u8; self.layout.size];
        self.dev.read_at(self.layout.offsets[0], &mut buf)?;
        let a = NativeCodec::decode(&buf);
        let mut erased = is_erased(&buf);
        self.dev.read_at(self.layout.offsets[1], &mut buf)?;
        let b = NativeCodec::decode(&buf);
        erased &= is_erased(&buf);
        Ok(([a, b], erased))
    }

    fn current(copies: &[Result<NativeCopy, DecodeError>; 2]) -> Option<usize> {
        let gen = |i: usize| copies[i].as_ref().ok().map(|c| c.generation);
        select_copy([gen(0), gen(1)])
    }

    fn corrupt(&self, copies: &[Result<NativeCopy, DecodeError>; 2]) -> HalError {
        let describe = |i: usize| match &copies[i] {
            Ok(c) => format!(
                "copy {i} @{:#x}: valid, generation {}",
                self.layout.offsets[i], c.generation
            ),
            Err(e) => format!("copy {i} @{:#x}: {e}", self.layout.offsets[i]),
        };
        HalError::EnvCorrupt {
            store: self.store_name(),
            detail: format!("{}; {}", describe(0), describe(1)),
        }
    }
}

impl<D: BlockDevice> EnvStore for NativeEnv<D> {
    fn load(&mut self) -> Result<EnvVars, HalError> {
        let (copies, erased) = self.read_copies()?;
        if let Some(Ok(copy)) = Self::current(&copies).map(|i| &copies[i]) {
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
        self.codec.encode(vars, 0).map_err(|e| e.into_hal(&store))?;
        let (copies, _) = self.read_copies()?;
        let (target, generation) = match Self::current(&copies) {
            Some(i) => {
                let gen = copies[i].as_ref().map_or(0, |c| c.generation);
                (1 - i, gen.saturating_add(1))
            }
            None => (0, 1),
        };
        let image = self
            .codec
            .encode(vars, generation)
            .map_err(|e| e.into_hal(&store))?;
        self.dev.write_at(self.layout.offsets[target], &image)?;
        self.dev.sync()
    }

    fn describe(&self) -> String {
        format!(
            "native env {} @{:#x} and @{:#x}, {:#x} bytes each",
            self.dev.name(),
            self.layout.offsets[0],
            self.layout.offsets[1],
            self.layout.size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::MemBlock;

    use crate::env::test_vars as vars;

    fn layout() -> NativeLayout {
        NativeLayout {
            offsets: [0x1000, 0x2000],
            size: 0x400,
        }
    }

    #[test]
    fn roundtrip_keeps_any_bytes() {
        let mut v = vars(&[("a", "1"), ("", "empty name"), ("nul\0", "x\0=\n\\")]);
        v.insert(&b"\xff\xfe"[..], &b"caf\xe9"[..]);
        let img = NativeCodec::new(256).unwrap().encode(&v, u64::MAX).unwrap();
        assert_eq!(img.len(), 256);
        assert_eq!(
            NativeCodec::decode(&img).unwrap(),
            NativeCopy {
                vars: v,
                generation: u64::MAX
            }
        );
    }

    #[test]
    fn decode_checks_header_fields_in_order() {
        let good = NativeCodec::new(64)
            .unwrap()
            .encode(&vars(&[("a", "1")]), 1)
            .unwrap();
        let with = |at: usize, byte: u8| {
            let mut b = good.clone();
            b[at] = byte;
            NativeCodec::decode(&b).unwrap_err()
        };
        assert!(matches!(with(0, b'X'), DecodeError::BadSignature { .. }));
        assert!(matches!(
            with(4, 2),
            DecodeError::Unsupported {
                field: "format version",
                ..
            }
        ));
        assert!(matches!(
            with(6, 1),
            DecodeError::Unsupported {
                field: "required features",
                ..
            }
        ));
        assert!(matches!(
            with(19, 0x80),
            DecodeError::LengthOutOfRange { .. }
        ));
        assert!(matches!(with(8, 9), DecodeError::Crc { .. }));
        assert!(matches!(
            NativeCodec::decode(&good[..10]),
            Err(DecodeError::WrongSize { .. })
        ));
    }

    #[test]
    fn decode_refuses_bad_payload_with_good_crc() {
        let mut b = vec![0u8; 40];
        b[..4].copy_from_slice(&NATIVE_MAGIC);
        b[4] = 1;
        b[16] = 3;
        b[20..23].copy_from_slice(&[0x05, 0x01, 0xff]); // a map of 5 with a bad string
        let crc = crc32(&b[..23]);
        b[23..27].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            NativeCodec::decode(&b),
            Err(DecodeError::Payload(_))
        ));
    }

    #[test]
    fn commits_alternate_and_newest_wins() {
        let mut env = NativeEnv::new(MemBlock::new("nv", 0x4000), layout()).unwrap();
        assert!(matches!(env.load(), Err(HalError::EnvBlank { .. })));
        for i in 0..5u32 {
            let v = vars(&[("n", &format!("{i}"))]);
            env.commit(&v).unwrap();
            assert_eq!(env.load().unwrap(), v);
        }
        let dev = env.into_inner();
        let a = NativeCodec::decode(&dev.durable()[0x1000..0x1400]).unwrap();
        let b = NativeCodec::decode(&dev.durable()[0x2000..0x2400]).unwrap();
        assert_eq!((a.generation, b.generation), (5, 4));
    }

    #[test]
    fn corrupt_message_names_both_copies() {
        let mut dev = MemBlock::new("nv", 0x4000);
        dev.write_at(0x2000, b"junk").unwrap();
        let mut env = NativeEnv::new(dev, layout()).unwrap();
        let msg = format!("{}", env.load().unwrap_err());
        assert!(
            msg.starts_with("native env nv @0x1000: no valid copy"),
            "{msg}"
        );
        assert!(msg.contains("copy 0 @0x1000: bad signature"), "{msg}");
        assert!(msg.contains("copy 1 @0x2000: bad signature"), "{msg}");
    }

    #[test]
    fn layout_and_size_errors() {
        let dev = || MemBlock::new("nv", 0x4000);
        let overlap = NativeLayout {
            offsets: [0, 0x200],
            size: 0x400,
        };
        assert!(matches!(
            NativeEnv::new(dev(), overlap),
            Err(HalError::BadLayout { .. })
        ));
        let beyond = NativeLayout {
            offsets: [0, 0x3f00],
            size: 0x400,
        };
        assert!(matches!(
            NativeEnv::new(dev(), beyond),
            Err(HalError::BadLayout { .. })
        ));
        let mut env = NativeEnv::new(dev(), layout()).unwrap();
        let big = vars(&[("a", &"x".repeat(0x400))]);
        assert!(matches!(
            env.commit(&big),
            Err(HalError::EnvTooLarge { .. })
        ));
    }

    #[test]
    fn select_copy_prefers_newest_valid() {
        assert_eq!(select_copy([Some(3), Some(4)]), Some(1));
        assert_eq!(select_copy([Some(4), Some(4)]), Some(0));
        assert_eq!(select_copy([None, Some(1)]), Some(1));
        assert_eq!(select_copy([None, None]), None);
    }
}

//! Bootloader environments: a set of `name=value` variables that the updater loads
//! whole and commits whole.
//!
//! Invariant of every [`EnvStore`]: `commit` is atomic across a power cut at any byte.
//! After a cut, `load` returns either the state before the commit or the state after
//! it, never a mix, never an error for a store that was valid before. (The one exception,
//! a single-copy U-Boot env, says so in [`EnvStore::describe`]; see [`uboot`].)
//!
//! Backends: [`uboot`] (U-Boot env on a block device), [`grub`] (a grubenv file
//! behind [`EnvFiles`]) and [`native`] (bascule's own two-copy format). Each has a pure codec over
//! `&[u8]` that builds without `std`; [`codec`] holds their shared errors. Names and
//! values are bytes ([`vars`]), as in U-Boot and GRUB.
use alloc::string::String;

use crate::HalError;

pub mod codec;
pub mod files;
pub mod grub;
pub mod native;
pub mod uboot;
pub mod vars;

pub use codec::{DecodeError, EncodeError};
#[cfg(feature = "std")]
pub use files::DirFiles;
pub use files::{replace_file, EnvFiles, MemFiles};
pub use grub::{GrubCodec, GrubEnv};
pub use native::{NativeCodec, NativeEnv, NativeLayout};
pub use uboot::{UbootCodec, UbootEnv, UbootLayout};
pub use vars::{EnvBytes, EnvName, EnvValue, EnvVars};

/// A bootloader environment store.
pub trait EnvStore {
    /// Reads the current environment.
    fn load(&mut self) -> Result<EnvVars, HalError>;
    /// Replaces the whole environment with `vars`, atomically, and makes it durable.
    fn commit(&mut self, vars: &EnvVars) -> Result<(), HalError>;
    /// A short human description ("U-Boot env /dev/mmcblk0 @0x3f8000 (redundant)").
    fn describe(&self) -> String;
    /// When the last `load` could not read the store's main copy and returned a
    /// fallback state instead: what happened and what the bootloader boots, for
    /// `status`. The next `commit` rewrites the main copy. `None` for a healthy store.
    fn degraded(&self) -> Option<String> {
        None
    }
}

/// Builds variables from pairs (unit tests of the stores).
#[cfg(test)]
pub(crate) fn test_vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs.iter().copied().collect()
}

//! bascule's hardware layer: the small traits the updater's core logic talks to, and
//! their backends.
//!
//! - [`BlockDevice`]: a fixed-size byte range that can be read, written and synced
//!   (a slot). Backends: [`FileBlock`] (a file, a window of a disk image, or a `/dev`
//!   block device), [`MemBlock`] (memory, for tests) and [`FaultyBlock`] (memory that
//!   cuts power at a chosen operation, for power-cut campaigns).
//! - [`EnvStore`]: a bootloader environment that loads whole and commits whole, with
//!   every commit atomic across a power cut. Backends live in [`env`](mod@env): [`UbootEnv`],
//!   [`GrubEnv`], [`NativeEnv`].
//! - [`SecurityFloorStore`]: the lowest security version the device accepts, which
//!   only rises, kept where both slots see it. Backends in [`floor`]: [`FileFloor`]
//!   (a file on the data slot), [`MemFloor`] (memory, for tests).
//!
//! The codecs (U-Boot env, GRUB env, native env) are pure `encode`/`decode`
//! functions over `alloc` types, so they build without `std` (`--no-default-features`)
//! for use in a Rust bootloader. Everything that touches files is behind the `std`
//! feature.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod block;
pub mod env;
pub mod error;
pub mod floor;
pub mod gpt;
#[cfg(all(feature = "std", feature = "test-pause"))]
pub mod pause;

#[cfg(feature = "std")]
pub use block::FileBlock;
pub use block::{AlignedBuf, BlockDevice, CutPlan, FaultyBlock, MemBlock, DIRECT_ALIGN};
pub use env::{EnvBytes, EnvName, EnvStore, EnvValue, EnvVars, GrubEnv, NativeEnv, UbootEnv};
pub use error::HalError;
pub use floor::{FileFloor, MemFloor, SecurityFloorStore};

//! The arm64 guest: real U-Boot, a real Debian kernel and a static aarch64 bascule
//! inside QEMU, proving update, rollback and power cuts end to end.
//!
//! - [`cache`]: the pinned Debian kernel and busybox, fetched by `qemu/fetch-guest`;
//! - [`cross`]: the guest's bascule (`cargo zigbuild`, static musl, stripped);
//! - [`layout`]: the guest disk's partitions; [`disk`]: makes the factory disk with
//!   [`factory`], `bascule provision` from `qemu/layouts/arm64.toml`;
//! - [`board`]: U-Boot's built-in env, the board script (redundant env load and
//!   save) and the shipped `boot.cmd`;
//! - [`config`]: the guest's and the host's `system.toml`, `fw_env.config`;
//! - [`rootfs`]: the initramfs and the rootfs images v1-v3 with the guest's init;
//! - [`machine`]: one power-on under QEMU, with an optional power cut;
//! - [`host`]: `fw_printenv`, `bascule status` and `history` over the image;
//! - [`world`]: builds the shared parts once; [`scenario`]: update, rollback, power
//!   cuts;
//! - [`x86`]: the x86_64 UEFI guest (OVMF, GRUB, grubenv on the ESP) reusing the above.
pub mod board;
pub mod cache;
pub mod config;
pub mod cross;
pub mod data_copy;
pub mod disk;
pub mod error;
pub mod factory;
pub mod host;
pub mod init;
pub mod layout;
pub mod machine;
pub mod platform;
pub mod power_cuts;
pub mod rootfs;
pub mod scenario;
pub mod step;
pub mod world;
pub mod x86;

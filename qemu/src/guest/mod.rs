//! The guests: bascule inside QEMU, booted by a real bootloader from a real Debian
//! kernel, proving update, rollback and power cuts end to end on two platforms
//! ([`platform`]): arm64 with U-Boot (its redundant env on a partition) and x86_64
//! with OVMF and GRUB (its grubenv on the ESP). One driver serves both; the platform
//! supplies only what differs.
//!
//! - [`platform`]: what differs (compatible, partitions, bootloader, env tool, tries,
//!   the env the scenarios expect); [`error`]: the guests' error;
//! - [`cache`]: the pinned Debian kernels and busybox, fetched by `qemu/fetch-guest`
//!   and `qemu/fetch-guest-x86_64`; [`cross`]: the guest's bascule (`cargo zigbuild`,
//!   static musl, stripped);
//! - [`layout`]: the arm64 disk's partitions ([`x86::layout`]: the x86_64 disk's);
//!   [`board`]: U-Boot's built-in env, the board script and the shipped `boot.cmd`
//!   ([`x86::grub_board`]: GRUB and the shipped `grub.cfg`); [`disk`]: the board's
//!   files and the factory disk, made with [`factory`] (`bascule provision` from
//!   `qemu/layouts/*.toml`);
//! - [`config`]: the guest's and the host's `system.toml` (the `[bootenv]` part the
//!   platform's), `fw_env.config`; [`init`]: the initramfs's and the guest's init
//!   scripts; [`rootfs`]: the initramfs and the rootfs images v1-v3;
//! - [`machine`]: one power-on under QEMU; [`console`]: its console watched, with an
//!   optional power cut, and its markers;
//! - [`host`]: the env (`fw_printenv`, or `grub-editenv` over the ESP's copy),
//!   `bascule status` and `history` over the image, the data slot read by
//!   [`data_copy`];
//! - [`world`]: builds a platform's shared parts once; [`step`]: the layer scenarios
//!   are written in; [`scenario`]: update and rollback on both platforms;
//!   [`power_cuts`]: the arm64 power-cut campaign ([`x86::power_cut`]: x86_64's cut).
pub mod board;
pub mod cache;
pub mod config;
pub mod console;
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

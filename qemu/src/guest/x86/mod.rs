//! The x86_64 UEFI guest: OVMF, Debian's GRUB running the shipped
//! `bootloader/grub/grub.cfg`, a Debian cloud-amd64 kernel and a static x86_64
//! bascule (`x86_64-unknown-linux-musl` via `cargo zigbuild`) whose env is the
//! grubenv on the ESP. It reuses the arm64 guest's parts where they do not depend on
//! the platform: the console watcher and markers ([`super::machine`]), the initramfs
//! writer and the guest's init ([`super::rootfs`]), the releases, the bundles and the
//! bundle disk ([`super::world`]).
//!
//! - [`layout`]: ESP, two root slots, data; [`grub_board`]: `BOOTX64.EFI`, the
//!   shipped script with the board's lines, the ESP image; [`config`]: both
//!   `system.toml`s; [`cache`]: the pinned amd64 kernel and busybox;
//! - [`disk`]: the factory disk (`bascule provision` from `qemu/layouts/x86_64.toml`);
//! - [`rootfs`]: the initramfs and rootfs images of this platform;
//! - [`machine`]: one power-on (fresh OVMF vars every time); [`host`]: `grub-editenv`
//!   and `bascule status` over the image; [`world`] and [`scenario`]: update,
//!   rollback, power cut.
pub mod cache;
pub mod config;
pub mod disk;
pub mod error;
pub mod grub_board;
pub mod host;
pub mod layout;
pub mod machine;
pub mod rootfs;
pub mod scenario;
pub mod world;

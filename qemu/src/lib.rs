//! The real boot chain: runs Debian's U-Boot (`qemu-system-aarch64 -M virt`) and GRUB
//! (OVMF on `qemu-system-x86_64`) over boot environments, with the shipped scripts in
//! `bootloader/`, and compares what they do with what bascule's model predicts.
//!
//! Modules: [`tools`] finds the host tools (failing with the Debian package to
//! install), [`qemu`] runs one QEMU with a deadline, [`uboot`] boots envs on the real
//! U-Boot, [`corpus`] holds the envs, [`uboot_diff`] compares U-Boot with the model; [`grub`] boots grubenvs on the
//! real GRUB (OVMF) with the transformed script of [`grub_cfg`], [`grub_corpus`]
//! holds their envs, [`grub_env`] reads grubenv bytes as GRUB does, [`grub_diff`]
//! compares GRUB with the model; [`guest`] runs bascule inside an arm64 guest booted by
//! the real U-Boot (update, rollback, power cuts).
pub mod corpus;
pub mod grub;
pub mod grub_cfg;
pub mod grub_corpus;
pub mod grub_diff;
pub mod grub_env;
pub mod guest;
pub mod qemu;
pub mod tools;
pub mod uboot;
pub mod uboot_diff;

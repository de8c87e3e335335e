//! The real boot chain: runs Debian's U-Boot (`qemu-system-aarch64 -M virt`) and GRUB
//! (OVMF on `qemu-system-x86_64`) over boot environments, with the shipped scripts in
//! `bootloader/`, and compares what they do with what bascule's model predicts.
//!
//! Modules: [`tools`] finds the host tools (failing with the Debian package to
//! install), [`qemu`] runs one QEMU with a deadline, [`uboot`] boots envs on the real
//! U-Boot, [`corpus`] holds the envs, [`uboot_diff`] compares U-Boot with the model.
pub mod corpus;
pub mod qemu;
pub mod tools;
pub mod uboot;
pub mod uboot_diff;

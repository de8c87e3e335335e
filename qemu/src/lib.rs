//! The real boot chain: runs Debian's U-Boot (`qemu-system-aarch64 -M virt`) and GRUB
//! (OVMF on `qemu-system-x86_64`) over boot environments, with the shipped scripts in
//! `bootloader/`, and compares what they do with what bascule's model predicts.

pub mod grub;
pub mod grub_cfg;
pub mod grub_corpus;
pub mod grub_diff;
pub mod grub_env;

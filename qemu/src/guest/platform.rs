//! The two guest platforms and what really differs between them: the board's
//! `compatible`, the partition numbers of the slots and the data slot, the bootloader
//! (U-Boot with its redundant env on a partition, or GRUB with its grubenv on the
//! ESP) and the tool the host reads its env with, the cross target and the layout
//! file `bascule provision` makes the factory disk from, and what the scenarios
//! expect of the bootloader: its tries per new slot (U-Boot's 3, GRUB's 1) and the
//! variables its env holds after an install, a confirmation and a failed try.
//! Everything else of the guests (world, host view, machine, scenarios) takes a
//! [`Platform`] and asks it.
use bascule_partitions::SlotName;

use super::config::ATTEMPTS;
use super::cross::{CrossTarget, ARM64, X86_64};
use super::layout::{self, Part};
use super::x86::layout as x86_layout;

/// A guest platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// `qemu-system-aarch64 -M virt` with Debian's U-Boot and the shipped `boot.cmd`.
    Arm64,
    /// `qemu-system-x86_64` with OVMF, Debian's GRUB and the shipped `grub.cfg`.
    X86_64,
}

impl Platform {
    /// The `compatible` of the board and its bundles.
    pub fn compatible(self) -> &'static str {
        match self {
            Platform::Arm64 => "bascule-qemu-arm64",
            Platform::X86_64 => "bascule-qemu-x86_64",
        }
    }

    /// The root partition of `slot`.
    pub fn rootfs(self, slot: SlotName) -> Part {
        match (self, slot) {
            (Platform::Arm64, SlotName::A) => layout::ROOTFS_A,
            (Platform::Arm64, SlotName::B) => layout::ROOTFS_B,
            (Platform::X86_64, SlotName::A) => x86_layout::ROOTFS_A,
            (Platform::X86_64, SlotName::B) => x86_layout::ROOTFS_B,
        }
    }

    /// The data slot's partition.
    pub fn data(self) -> Part {
        match self {
            Platform::Arm64 => layout::DATA,
            Platform::X86_64 => x86_layout::DATA,
        }
    }

    /// The bootloader, as the scenarios' messages name it.
    pub fn bootloader(self) -> &'static str {
        match self {
            Platform::Arm64 => "U-Boot",
            Platform::X86_64 => "GRUB",
        }
    }

    /// The tool the host reads the bootloader's env with.
    pub fn env_tool(self) -> &'static str {
        match self {
            Platform::Arm64 => "fw_printenv",
            Platform::X86_64 => "grub-editenv",
        }
    }

    /// The guest bascule's cross build.
    pub fn cross(self) -> &'static CrossTarget {
        match self {
            Platform::Arm64 => &ARM64,
            Platform::X86_64 => &X86_64,
        }
    }

    /// The layout's file name in `qemu/layouts/`.
    pub fn layout(self) -> &'static str {
        match self {
            Platform::Arm64 => "arm64.toml",
            Platform::X86_64 => "x86_64.toml",
        }
    }

    /// The boots a new slot gets before the bootloader falls back: U-Boot counts
    /// `BOOT_x_LEFT` down from the configured attempts, GRUB tries a slot once.
    pub fn tries(self) -> u8 {
        match self {
            Platform::Arm64 => ATTEMPTS,
            Platform::X86_64 => 1,
        }
    }

    /// The env variable and value of a boot order with `first` first.
    pub fn env_order(self, first: SlotName) -> (String, String) {
        let var = match self {
            Platform::Arm64 => "BOOT_ORDER",
            Platform::X86_64 => "ORDER",
        };
        (var.into(), format!("{first} {}", first.other()))
    }

    /// The env variable and value of `slot` with all its tries ahead (after an
    /// install, after its probe confirmed it).
    pub fn env_armed(self, slot: SlotName) -> (String, String) {
        match self {
            Platform::Arm64 => (format!("BOOT_{slot}_LEFT"), ATTEMPTS.to_string()),
            Platform::X86_64 => (format!("{slot}_TRY"), "0".into()),
        }
    }

    /// The env after an install into `slot`: `slot` first, bootable, armed.
    pub fn env_installed(self, slot: SlotName) -> Vec<(String, String)> {
        let mut vars = vec![self.env_order(slot)];
        if self == Platform::X86_64 {
            vars.push((format!("{slot}_OK"), "1".into()));
        }
        vars.push(self.env_armed(slot));
        vars
    }

    /// The env variable and value after try `n` (from 1) of `slot` failed its probe.
    pub fn env_tried(self, slot: SlotName, n: u8) -> (String, String) {
        match self {
            Platform::Arm64 => (format!("BOOT_{slot}_LEFT"), (ATTEMPTS - n).to_string()),
            Platform::X86_64 => (format!("{slot}_TRY"), "1".into()),
        }
    }
}

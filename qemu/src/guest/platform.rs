//! The two guest platforms and what really differs between them: the board's
//! `compatible`, the partition numbers of the slots and the data slot, the bootloader
//! (U-Boot with its redundant env on a partition, or GRUB with its grubenv on the
//! ESP) and the tool the host reads its env with, the cross target and the layout
//! file `bascule provision` makes the factory disk from. Everything else of the
//! guests (world, host view, machine, scenarios) takes a [`Platform`] and asks it.
use bascule_partitions::SlotName;

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
}

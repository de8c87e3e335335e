//! What only the x86_64 UEFI guest has: its disk layout (ESP, two root slots, data;
//! [`layout`]) and its board ([`grub_board`]: Debian's GRUB as `BOOTX64.EFI`, the
//! shipped `bootloader/grub/grub.cfg` with the board's lines). The rest of the guest
//! (world, machine with OVMF, host view over the ESP's grubenv, scenarios) is shared
//! with arm64 and takes [`crate::guest::platform::Platform::X86_64`].
pub mod grub_board;
pub mod layout;
pub mod power_cut;

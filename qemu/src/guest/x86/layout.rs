//! The x86_64 guest disk: one GPT disk (`hd0` in GRUB, `/dev/vda` in Linux) with the
//! ESP (GRUB, `grub.cfg`, `grubenv`, `grubenv.good`), two root slots at partitions 2
//! and 3 (the shipped `grub.cfg` boots `(hd0,gpt2)` and `(hd0,gpt3)`) and the data
//! slot. The disk is made by `bascule provision` from `qemu/layouts/x86_64.toml`; a
//! test keeps the file and these numbers equal.
use crate::guest::layout::{Part, ROOTFS_SIZE};

const MIB: u64 = 1 << 20;

/// The EFI system partition (FAT).
pub const ESP: Part = Part {
    number: 1,
    name: "esp",
    start: MIB,
    size: 16 * MIB,
};
/// Root slot A.
pub const ROOTFS_A: Part = Part {
    number: 2,
    name: "rootfs-a",
    start: 17 * MIB,
    size: ROOTFS_SIZE,
};
/// Root slot B.
pub const ROOTFS_B: Part = Part {
    number: 3,
    name: "rootfs-b",
    start: 17 * MIB + ROOTFS_SIZE,
    size: ROOTFS_SIZE,
};
/// The data slot (ext4).
pub const DATA: Part = Part {
    number: 4,
    name: "data",
    start: 17 * MIB + 2 * ROOTFS_SIZE,
    size: 16 * MIB,
};
/// Every partition, in order.
pub const PARTS: [Part; 4] = [ESP, ROOTFS_A, ROOTFS_B, DATA];
/// The whole disk: the partitions plus room for the backup GPT.
pub const DISK_SIZE: u64 = 17 * MIB + 2 * ROOTFS_SIZE + 16 * MIB + MIB;
/// Where GRUB (its prefix), its script and its env files are on the ESP.
pub const ESP_DIR: &str = "EFI/BOOT";
/// Where the guest mounts the ESP.
pub const ESP_MOUNT: &str = "/boot/efi";
/// The GPT type of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::layout::check_layout;
    use crate::guest::platform::Platform;
    use bascule_partitions::disk_layout::EnvPlace;

    /// The disk `bascule provision` makes from `qemu/layouts/x86_64.toml` is the one
    /// GRUB's script, the configs and the host read: an ESP typed as such first, the
    /// root slots at the partitions the shipped script boots.
    #[test]
    fn the_provisioning_layout_places_these_partitions_and_the_grubenv() {
        const { assert!(ROOTFS_A.number == 2 && ROOTFS_B.number == 3) };
        let plan = check_layout(Platform::X86_64, &PARTS, DISK_SIZE, MIB);
        assert_eq!(plan.partitions[0].type_guid, ESP_TYPE);
        let env = EnvPlace::Grub {
            path: format!("{ESP_DIR}/grubenv"),
        };
        assert_eq!(plan.env, env);
    }
}

//! The guest disk's layout: one GPT disk (`virtio 0` in U-Boot, `/dev/vda` in Linux)
//! with the U-Boot env, the boot scripts, two root slots and the data slot. The disk
//! is made by `bascule provision` from `qemu/layouts/arm64.toml`; the board's scripts,
//! both `system.toml`s and the host's `fw_env.config` take their numbers from here,
//! and a test keeps the two equal.

/// Bytes per sector.
pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// One GPT partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Its number: `/dev/vda<number>`, `virtio 0:<number>`.
    pub number: u32,
    /// Its GPT name.
    pub name: &'static str,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Part {
    /// Its device inside the guest.
    pub fn guest_device(&self) -> String {
        format!("/dev/vda{}", self.number)
    }
}

/// The U-Boot env: two redundant copies of [`ENV_SIZE`], at 0 and [`ENV_COPY_1`].
pub const ENV: Part = Part {
    number: 1,
    name: "uboot-env",
    start: MIB,
    size: 64 << 10,
};
/// The board's script (sectors 0-63) and the shipped `boot.scr` (sectors 64-127).
pub const SCRIPTS: Part = Part {
    number: 2,
    name: "boot-scripts",
    start: 2 * MIB,
    size: 64 << 10,
};
/// Root slot A.
pub const ROOTFS_A: Part = Part {
    number: 3,
    name: "rootfs-a",
    start: 4 * MIB,
    size: ROOTFS_SIZE,
};
/// Root slot B.
pub const ROOTFS_B: Part = Part {
    number: 4,
    name: "rootfs-b",
    start: 4 * MIB + ROOTFS_SIZE,
    size: ROOTFS_SIZE,
};
/// The data slot (ext4): the security floor and the health history.
pub const DATA: Part = Part {
    number: 5,
    name: "data",
    start: 4 * MIB + 2 * ROOTFS_SIZE,
    size: 16 * MIB,
};
/// Every partition, in order.
pub const PARTS: [Part; 5] = [ENV, SCRIPTS, ROOTFS_A, ROOTFS_B, DATA];
/// The size of each root slot and of each rootfs image.
pub const ROOTFS_SIZE: u64 = 64 * MIB;
/// The whole disk: the partitions plus room for the backup GPT.
pub const DISK_SIZE: u64 = 4 * MIB + 2 * ROOTFS_SIZE + 16 * MIB + MIB;
/// One env copy (`CONFIG_ENV_SIZE`).
pub const ENV_SIZE: u64 = 0x4000;
/// Where the second copy starts inside [`ENV`].
pub const ENV_COPY_1: u64 = 0x4000;
/// Sectors of each script area inside [`SCRIPTS`].
pub const SCRIPT_SECTORS: u64 = 64;

// Both env copies fit their partition, and both script areas theirs.
const _: () = assert!(ENV_COPY_1 + ENV_SIZE <= ENV.size);
const _: () = assert!(2 * SCRIPT_SECTORS * SECTOR <= SCRIPTS.size);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_aligned_ordered_and_fit_the_disk() {
        for pair in PARTS.windows(2) {
            assert!(pair[0].start + pair[0].size <= pair[1].start, "{pair:?}");
        }
        for p in PARTS {
            assert_eq!(p.start % MIB, 0, "{p:?}");
        }
        let last = PARTS[PARTS.len() - 1];
        assert!(last.start + last.size + 33 * SECTOR <= DISK_SIZE);
    }

    /// The disk `bascule provision` makes from `qemu/layouts/arm64.toml` is the one
    /// the board script, the configs and the host read.
    #[test]
    fn the_provisioning_layout_places_these_partitions_and_env_copies() {
        use crate::guest::factory::{placed, windows};
        use crate::guest::platform::Platform;
        use bascule_partitions::disk_layout::EnvPlace;
        let plan = placed(Platform::Arm64.layout(), SCRIPTS.size);
        let want: Vec<_> = PARTS
            .iter()
            .map(|p| (p.name.to_string(), p.start, p.size))
            .collect();
        assert_eq!(windows(&plan), want);
        assert_eq!(plan.disk_bytes(), DISK_SIZE);
        assert_eq!(plan.compatible, Platform::Arm64.compatible());
        let env = EnvPlace::Uboot {
            offset: ENV.start,
            redundant_offset: Some(ENV.start + ENV_COPY_1),
            size: ENV_SIZE,
        };
        assert_eq!(plan.env, env);
        assert_eq!(
            plan.partitions[1].image.as_ref().map(|i| i.1),
            Some(SCRIPTS.size)
        );
    }
}

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

/// Checks that `parts` are in order and MiB-aligned and leave the backup GPT room in
/// `disk_size`, and that `platform`'s layout file, placed with images of
/// `image_size`, makes exactly them on a disk of `disk_size`; returns the plan for
/// the platform's own checks (unit tests of both layouts).
#[cfg(test)]
pub(crate) fn check_layout(
    platform: crate::guest::platform::Platform,
    parts: &[Part],
    disk_size: u64,
    image_size: u64,
) -> bascule_partitions::disk_layout::DiskPlan {
    use crate::guest::factory::{placed, windows};
    for pair in parts.windows(2) {
        assert!(pair[0].start + pair[0].size <= pair[1].start, "{pair:?}");
    }
    for p in parts {
        assert_eq!(p.start % MIB, 0, "{p:?}");
    }
    let last = parts[parts.len() - 1];
    assert!(last.start + last.size + 33 * SECTOR <= disk_size);
    let plan = placed(platform.layout(), image_size);
    let want: Vec<_> = parts
        .iter()
        .map(|p| (p.name.to_string(), p.start, p.size))
        .collect();
    assert_eq!(windows(&plan), want);
    assert_eq!(plan.disk_bytes(), disk_size);
    assert_eq!(plan.compatible, platform.compatible());
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::platform::Platform;
    use bascule_partitions::disk_layout::EnvPlace;

    /// The disk `bascule provision` makes from `qemu/layouts/arm64.toml` is the one
    /// the board script, the configs and the host read.
    #[test]
    fn the_provisioning_layout_places_these_partitions_and_env_copies() {
        let plan = check_layout(Platform::Arm64, &PARTS, DISK_SIZE, SCRIPTS.size);
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

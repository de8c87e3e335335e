//! The x86_64 guest's initramfs and rootfs images.
//!
//! - **initramfs**: the arm64 guest's writer and `/init`
//!   ([`crate::guest::rootfs::write_initramfs_with`]) with the amd64 cloud kernel's
//!   modules in [`MODULES`] order: virtio over PCI, virtio-blk, FAT for the ESP, and
//!   `qemu_fw_cfg`;
//! - **rootfs**: an ext4 image as on arm64 with the kernel at `/boot/vmlinuz` (where the
//!   shipped `grub.cfg` loads it), this platform's `system.toml` and [`guest_init`]:
//!   the arm64 guest's init with the data slot of this layout and the ESP mounted
//!   (read-write: bascule commits the grubenv there) before `bascule health`.
use std::fs;
use std::path::Path;
use std::process::Command;

use super::config::guest_system_toml;
use super::error::{io, run, X86Error};
use super::layout::{DATA, ESP, ESP_MOUNT, ROOTFS_SIZE};
use crate::guest::cache::GuestParts;
use crate::guest::rootfs::{write_exec, Release, APPLETS, GUEST_INIT, GUEST_REBOOT};

/// Modules the initramfs loads, in order (the amd64 cloud kernel's `.ko` files).
pub const MODULES: [&str; 12] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "fs/fat/fat",
    "fs/fat/vfat",
    "fs/nls/nls_cp437",
    "fs/nls/nls_iso8859-1",
    "fs/nls/nls_ascii",
    "drivers/firmware/qemu_fw_cfg",
];

/// The arm64 guest's data slot mount line, replaced by this layout's.
const ARM64_DATA_MOUNT: &str = "if ! mount -t ext4 /dev/vda5 /data; then";
/// The line before which the ESP is mounted.
const HEALTH_BEGIN: &str = "echo \"bg-health begin\"";

/// Writes the initramfs to `out`.
pub fn write_initramfs(parts: &GuestParts, out: &Path) -> Result<(), X86Error> {
    Ok(crate::guest::rootfs::write_initramfs_with(
        parts, &MODULES, out,
    )?)
}

/// The rootfs's `/sbin/init` (see the module docs).
pub fn guest_init() -> Result<String, X86Error> {
    for anchor in [ARM64_DATA_MOUNT, HEALTH_BEGIN] {
        if GUEST_INIT.matches(anchor).count() != 1 {
            return Err(X86Error::Cfg(format!(
                "the guest init (guest/rootfs.rs) should have the line `{anchor}` once"
            )));
        }
    }
    let esp = format!(
        "mkdir -p {ESP_MOUNT}\n\
         if ! mount -t vfat {dev} {ESP_MOUNT}; then\n  \
         echo \"bg-error the ESP does not mount\"\n  poweroff -f\nfi\n{HEALTH_BEGIN}",
        dev = ESP.guest_device()
    );
    Ok(GUEST_INIT
        .replace(
            ARM64_DATA_MOUNT,
            &format!("if ! mount -t ext4 {} /data; then", DATA.guest_device()),
        )
        .replace(HEALTH_BEGIN, &esp)
        .replace(
            "umount /data\n",
            &format!("umount /data\numount {ESP_MOUNT}\n"),
        ))
}

/// What every rootfs image holds besides its release.
pub struct RootfsInputs<'a> {
    pub parts: &'a GuestParts,
    pub bascule: &'a Path,
    pub initramfs: &'a Path,
    pub public_key: &'a Path,
}

/// Builds the ext4 image of `release` at `out`, staging its tree in `work`.
pub fn build_rootfs(
    inputs: &RootfsInputs,
    release: &Release,
    work: &Path,
    out: &Path,
) -> Result<(), X86Error> {
    let tree = work.join(format!("tree-{}", release.version));
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(io(format!("removing {}", tree.display())))?;
    }
    stage_tree(inputs, release, &tree)?;
    let _ = fs::remove_file(out);
    let res = run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(out)
        .arg(format!("{}k", ROOTFS_SIZE / 1024)));
    fs::remove_dir_all(&tree).map_err(io(format!("removing {}", tree.display())))?;
    res.map(drop)
}

fn stage_tree(inputs: &RootfsInputs, release: &Release, tree: &Path) -> Result<(), X86Error> {
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "etc/bascule/keys",
        "boot/efi",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "data",
        "bundles",
    ] {
        fs::create_dir_all(tree.join(dir)).map_err(io(format!("creating {dir}")))?;
    }
    let copy = |from: &Path, to: &str| -> Result<(), X86Error> {
        fs::copy(from, tree.join(to))
            .map(drop)
            .map_err(io(format!("copying {} to {to}", from.display())))
    };
    copy(&inputs.parts.busybox, "bin/busybox")?;
    copy(inputs.bascule, "bin/bascule")?;
    copy(&inputs.parts.kernel, "boot/vmlinuz")?;
    copy(inputs.initramfs, "boot/initrd.img")?;
    copy(inputs.public_key, "etc/bascule/keys/release.pub")?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet))
            .map_err(io(format!("linking {applet}")))?;
    }
    let selftest = if release.healthy {
        format!("#!/bin/sh\necho \"app-selftest: {} ok\"\n", release.version)
    } else {
        format!(
            "#!/bin/sh\necho \"app-selftest: {} cannot start its service\"\nexit 1\n",
            release.version
        )
    };
    write_exec(tree, "sbin/init", &guest_init()?)?;
    write_exec(tree, "sbin/bg-reboot", GUEST_REBOOT)?;
    write_exec(tree, "usr/bin/app-selftest", &selftest)?;
    let files = [
        ("etc/bascule-version", format!("{}\n", release.version)),
        ("etc/bascule/system.toml", guest_system_toml()),
    ];
    for (path, text) in files {
        fs::write(tree.join(path), text).map_err(io(format!("writing {path}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_mounts_this_layouts_data_slot_and_the_esp_before_the_probe() {
        let init = guest_init().unwrap();
        assert!(init.contains("mount -t ext4 /dev/vda4 /data"), "{init}");
        assert!(!init.contains("/dev/vda5"));
        let esp = init.find("mount -t vfat /dev/vda1 /boot/efi").unwrap();
        assert!(esp < init.find("bascule health").unwrap());
        assert!(init.contains("umount /boot/efi\n"));
    }
}

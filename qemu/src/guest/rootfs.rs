//! The guest's root filesystem images and its initramfs, built on the host.
//!
//! - **initramfs** ([`write_initramfs`]): busybox, the cloud kernel's modules that
//!   are not built in (virtio over MMIO and PCI, virtio-blk, `qemu_fw_cfg`; ext4 is
//!   built in), loaded in [`MODULES`] order, and an `/init` that mounts the `root=` of
//!   the command line read-only and switches to it. Written as a `newc` cpio here.
//! - **rootfs** ([`build_rootfs`]): an ext4 image (`mkfs.ext4 -d`) of
//!   [`ROOTFS_SIZE`](super::layout::ROOTFS_SIZE) with busybox and its applet links,
//!   the static aarch64 bascule, `/etc/bascule/system.toml` (the health checks are the
//!   image's: [`Release::healthy`]), the keyring, `/boot/Image` + `/boot/initrd.img`,
//!   the app's self-test and [`GUEST_INIT`].
//!
//! [`GUEST_INIT`] is one boot: print `bg-boot`, mount the data slot, run `bascule
//! health` (a failure runs `on_failure`, which reboots through `/sbin/bg-reboot`), do
//! the per-boot instruction the harness passed with `-fw_cfg` (`install FILE` from the
//! bundle disk, or nothing), print `bascule status` and `bascule history`, power off.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cache::GuestParts;
use super::config::guest_system_toml;
use super::layout::ROOTFS_SIZE;

/// Modules the initramfs loads, in order (the cloud kernel's `.ko` files).
pub const MODULES: [&str; 8] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_mmio",
    "drivers/block/virtio_blk",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/firmware/qemu_fw_cfg",
];

/// Busybox applets linked in the rootfs's `/bin`.
pub const APPLETS: [&str; 14] = [
    "sh", "mount", "umount", "cat", "echo", "sed", "poweroff", "reboot", "sleep", "mkdir", "ls",
    "sync", "dmesg", "tail",
];

/// The initramfs's `/init`.
pub const INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
for m in $($b cat /lib/modules/order); do
  $b insmod /lib/modules/$m.ko || echo "bg-initramfs: insmod $m failed"
done
root=$($b sed -n 's/.* root=\([^ ]*\).*/\1/p' /proc/cmdline)
i=0
while [ ! -b "$root" ] && [ $i -lt 200 ]; do $b sleep 0.05; i=$((i+1)); done
if ! $b mount -t ext4 -o ro "$root" /newroot; then
  echo "bg-error the initramfs cannot mount root $root"
  $b poweroff -f
fi
$b mount --move /dev /newroot/dev
$b umount /proc /sys
exec $b switch_root /newroot /sbin/init
"#;

/// The rootfs's `/sbin/init`: one boot (see the module docs).
pub const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
slot=$(sed -n 's/.*bascule\.slot=\([AB]\).*/\1/p' /proc/cmdline)
echo "bg-boot slot=$slot version=$(cat /etc/bascule-version)"
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/bascule
cmd=$(cat $fwcfg/cmd/raw 2>/dev/null)
pause=$(cat $fwcfg/pause/raw 2>/dev/null)
[ -n "$pause" ] && [ "$pause" != none ] && export BASCULE_TEST_PAUSE="$pause"
if ! mount -t ext4 /dev/vda5 /data; then
  echo "bg-error the data slot does not mount"
  poweroff -f
fi
echo "bg-health begin"
bascule health
echo "bg-health end rc=$?"
case "$cmd" in
  "install "*)
    mount -t ext4 -o ro /dev/vdb /bundles || echo "bg-error the bundle disk does not mount"
    echo "bg-install begin"
    bascule install --progress log "${cmd#install }"
    echo "bg-install end rc=$?"
    umount /bundles
    ;;
  ""|none) ;;
  *) echo "bg-error unknown instruction: $cmd" ;;
esac
echo "bg-status begin"
bascule status
echo "bg-status end"
echo "bg-history begin"
bascule history
echo "bg-history end"
umount /data
echo "bg-poweroff"
poweroff -f
"#;

/// `reboot_command` of the guest's `[health]`: a marker, then a hard reboot (QEMU
/// runs with `-no-reboot`, so the run ends and the harness starts the next boot).
pub const GUEST_REBOOT: &str = "#!/bin/sh\necho \"bg-reboot on_failure\"\nexec reboot -f\n";

/// One release of the guest's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its version (`/etc/bascule-version`, the bundle's version).
    pub version: &'static str,
    /// Whether its app self-test (the health check) passes.
    pub healthy: bool,
}

/// v1 (factory), v2 (healthy update), v3 (its self-test fails).
pub const V1: Release = Release {
    version: "1.0.0",
    healthy: true,
};
pub const V2: Release = Release {
    version: "2.0.0",
    healthy: true,
};
pub const V3: Release = Release {
    version: "3.0.0",
    healthy: false,
};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: String, stderr: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Io { what, source }
}

/// Writes the initramfs (a `newc` cpio, uncompressed) to `out`.
pub fn write_initramfs(parts: &GuestParts, out: &Path) -> Result<(), RootfsError> {
    write_initramfs_with(parts, &MODULES, out)
}

/// [`write_initramfs`] loading `modules` (paths under the kernel's `kernel/`, without
/// `.ko`) in this order: another platform's list.
pub fn write_initramfs_with(
    parts: &GuestParts,
    modules: &[&str],
    out: &Path,
) -> Result<(), RootfsError> {
    let mut cpio = Newc::default();
    for dir in ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"] {
        cpio.dir(dir);
    }
    let busybox = fs::read(&parts.busybox).map_err(io("reading busybox"))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("init", 0o755, INITRAMFS_INIT.as_bytes());
    let mut order = String::new();
    for module in modules {
        let path = parts.modules.join("kernel").join(format!("{module}.ko"));
        let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let name = module.rsplit('/').next().unwrap_or(module);
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &bytes);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, order.as_bytes());
    fs::write(out, cpio.finish()).map_err(io(format!("writing {}", out.display())))
}

/// What every rootfs image holds besides its release.
pub struct RootfsInputs<'a> {
    pub parts: &'a GuestParts,
    pub bascule: &'a Path,
    pub initramfs: &'a Path,
    /// The public key file of the release signing key.
    pub public_key: &'a Path,
}

/// Builds the ext4 image of `release` at `out`, staging its tree in `work`.
pub fn build_rootfs(
    inputs: &RootfsInputs,
    release: &Release,
    work: &Path,
    out: &Path,
) -> Result<(), RootfsError> {
    let tree = work.join(format!("tree-{}", release.version));
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(io(format!("removing {}", tree.display())))?;
    }
    stage_tree(inputs, release, &tree)?;
    let _ = fs::remove_file(out);
    let res = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d"])
        .arg(&tree)
        .arg(out)
        .arg(format!("{}k", ROOTFS_SIZE / 1024))
        .output()
        .map_err(io("running mkfs.ext4 (e2fsprogs)"))?;
    fs::remove_dir_all(&tree).map_err(io(format!("removing {}", tree.display())))?;
    if !res.status.success() {
        return Err(RootfsError::Tool {
            tool: "mkfs.ext4".into(),
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(())
}

fn stage_tree(inputs: &RootfsInputs, release: &Release, tree: &Path) -> Result<(), RootfsError> {
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "etc/bascule/keys",
        "boot",
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
    let copy = |from: &Path, to: &str| -> Result<(), RootfsError> {
        fs::copy(from, tree.join(to))
            .map(|_| ())
            .map_err(io(format!("copying {} to {to}", from.display())))
    };
    copy(&inputs.parts.busybox, "bin/busybox")?;
    copy(inputs.bascule, "bin/bascule")?;
    copy(&inputs.parts.kernel, "boot/Image")?;
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
    write_exec(tree, "sbin/init", GUEST_INIT)?;
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

pub fn write_exec(tree: &Path, path: &str, text: &str) -> Result<(), RootfsError> {
    use std::os::unix::fs::PermissionsExt;
    let full: PathBuf = tree.join(path);
    fs::write(&full, text)
        .and_then(|()| fs::set_permissions(&full, fs::Permissions::from_mode(0o755)))
        .map_err(io(format!("writing {path}")))
}

/// A `newc` cpio archive written in memory (what the kernel unpacks as initramfs).
#[derive(Default)]
struct Newc {
    out: Vec<u8>,
    ino: u32,
}

impl Newc {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_end_with_the_trailer() {
        let mut c = Newc::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        let out = c.finish();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
        let trailer = out.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some());
        // Header of "init": 110 bytes + "init\0" padded to 4, then the data.
        let init = out.windows(5).position(|w| w == b"init\0").unwrap();
        assert_eq!((init - 110) % 4, 0);
    }
}

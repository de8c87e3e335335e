//! The guest's root filesystem images and its initramfs, built on the host.
//!
//! - **initramfs** ([`write_initramfs`]): busybox, the cloud kernel's modules that
//!   are not built in ([`modules`]: virtio, virtio-blk and `qemu_fw_cfg` on both, FAT
//!   for the ESP on x86_64; ext4 is built in), loaded in that order, and
//!   [`INITRAMFS_INIT`]. Written as a `newc` cpio here.
//! - **rootfs** ([`build_rootfs`]): an ext4 image (`mkfs.ext4 -d`) of
//!   [`ROOTFS_SIZE`] with busybox and its applet links,
//!   the static bascule, `/etc/bascule/system.toml` (the health checks are the
//!   image's: [`Release::healthy`]), the keyring, the kernel and `/boot/initrd.img`
//!   (where the board's script loads them: `/boot/Image` on arm64, `/boot/vmlinuz` on
//!   x86_64, as the shipped `grub.cfg` says), the app's self-test, the platform's
//!   [`guest_init`] and [`GUEST_REBOOT`].
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cache::GuestParts;
use super::config::guest_system_toml;
use super::init::{guest_init, GUEST_REBOOT, INITRAMFS_INIT};
use super::layout::ROOTFS_SIZE;
use super::platform::Platform;
use super::x86::layout::ESP_MOUNT;

/// Modules the arm64 initramfs loads, in order (the cloud kernel's `.ko` files).
const MODULES_ARM64: [&str; 8] = [
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_mmio",
    "drivers/block/virtio_blk",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/firmware/qemu_fw_cfg",
];

/// Modules the x86_64 initramfs loads, in order (the amd64 cloud kernel's `.ko`).
const MODULES_X86_64: [&str; 12] = [
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

/// The modules the initramfs of `platform` loads (paths under the kernel's
/// `kernel/`, without `.ko`), in order.
pub fn modules(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::Arm64 => &MODULES_ARM64,
        Platform::X86_64 => &MODULES_X86_64,
    }
}

/// Where the rootfs of `platform` holds its kernel (where the board's script loads it).
fn kernel_path(platform: Platform) -> &'static str {
    match platform {
        Platform::Arm64 => "boot/Image",
        Platform::X86_64 => "boot/vmlinuz",
    }
}

/// Busybox applets linked in the rootfs's `/bin`.
pub const APPLETS: [&str; 14] = [
    "sh", "mount", "umount", "cat", "echo", "sed", "poweroff", "reboot", "sleep", "mkdir", "ls",
    "sync", "dmesg", "tail",
];

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

/// Writes the initramfs of `platform` (a `newc` cpio, uncompressed) to `out`.
pub fn write_initramfs(
    platform: Platform,
    parts: &GuestParts,
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
    for module in modules(platform) {
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
    pub platform: Platform,
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
    if inputs.platform == Platform::X86_64 {
        // The ESP's mount point (`/boot/efi`).
        let esp = ESP_MOUNT.trim_start_matches('/');
        fs::create_dir_all(tree.join(esp)).map_err(io(format!("creating {esp}")))?;
    }
    let copy = |from: &Path, to: &str| -> Result<(), RootfsError> {
        fs::copy(from, tree.join(to))
            .map(|_| ())
            .map_err(io(format!("copying {} to {to}", from.display())))
    };
    copy(&inputs.parts.busybox, "bin/busybox")?;
    copy(inputs.bascule, "bin/bascule")?;
    copy(&inputs.parts.kernel, kernel_path(inputs.platform))?;
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
    write_exec(tree, "sbin/init", &guest_init(inputs.platform))?;
    write_exec(tree, "sbin/bg-reboot", GUEST_REBOOT)?;
    write_exec(tree, "usr/bin/app-selftest", &selftest)?;
    let files = [
        ("etc/bascule-version", format!("{}\n", release.version)),
        (
            "etc/bascule/system.toml",
            guest_system_toml(inputs.platform),
        ),
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

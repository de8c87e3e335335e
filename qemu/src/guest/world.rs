//! Everything the scenarios share, built once per run in a work directory under the
//! cache: the guest's bascule, the initramfs, the rootfs images v1-v3, a signing key,
//! the signed bundles of v1-v3 (v2 and v3 on the bundle disk), the board's pflash and
//! boot scripts, and the factory disk (`bascule provision` of v1's bundle). Each scenario boots its own copy of a disk.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bascule::bundle::{create_bundle, keygen, load_signing_key, Compression, CreateOptions};

use super::board::{scripts_partition, write_flash};
use super::cache::{cache_dir, guest_parts, CacheError};
use super::config::COMPATIBLE;
use super::cross::{build_guest_bascule, CrossError};
use super::disk::{build_disk, DiskError, DiskInputs};
use super::host::{HostError, HostView};
use super::machine::{Machine, MachineError};
use super::rootfs::{
    build_rootfs, write_initramfs, Release, RootfsError, RootfsInputs, V1, V2, V3,
};

/// Why the shared parts could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Cross(#[from] CrossError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Uboot(#[from] crate::uboot::UbootError),
    #[error("making the bundle of {version}: {message}")]
    Bundle { version: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{tool} failed: {stderr}")]
    Tool { tool: &'static str, stderr: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WorldError {
    let what = what.into();
    move |source| WorldError::Io { what, source }
}

/// The security version of each release's bundle (v1 is the factory image: 0).
pub fn security_version(release: &Release) -> u32 {
    match release.version {
        "2.0.0" => 1,
        "3.0.0" => 2,
        _ => 0,
    }
}

/// Where the bundle of `release` is inside the guest.
pub fn guest_bundle_path(release: &Release) -> String {
    format!("/bundles/v{}.bundle", &release.version[..1])
}

/// The shared parts.
pub struct World {
    dir: tempfile::TempDir,
    flash: PathBuf,
    bundles: PathBuf,
    factory: PathBuf,
    console_log: Option<PathBuf>,
    /// How long building the parts took (the cross build included).
    pub build_time: Duration,
}

impl World {
    /// Builds every shared part (see the module docs).
    pub fn build() -> Result<World, WorldError> {
        let start = Instant::now();
        let work_root = cache_dir().join("work");
        fs::create_dir_all(&work_root).map_err(io("creating the work directory"))?;
        let dir = tempfile::Builder::new()
            .prefix("guest-")
            .tempdir_in(&work_root)
            .map_err(io("creating the work directory"))?;
        let w = dir.path();
        let parts = guest_parts()?;
        let bascule = build_guest_bascule()?;
        let initramfs = w.join("initrd.img");
        write_initramfs(&parts, &initramfs)?;
        keygen(&w.join("release")).map_err(|e| WorldError::Bundle {
            version: "(key)".into(),
            message: e.to_string(),
        })?;
        let public_key = w.join("release.pub");
        let inputs = RootfsInputs {
            parts: &parts,
            bascule: &bascule,
            initramfs: &initramfs,
            public_key: &public_key,
        };
        let bundle_dir = w.join("bundles");
        fs::create_dir_all(&bundle_dir).map_err(io("creating the bundle directory"))?;
        let factory_bundle = w.join("factory-v1.bundle");
        for release in [&V1, &V2, &V3] {
            let image = w.join(format!("rootfs-{}.ext4", release.version));
            build_rootfs(&inputs, release, w, &image)?;
            // v1 is the factory release: provisioned, never on the bundle disk.
            let out = if release == &V1 {
                factory_bundle.clone()
            } else {
                bundle_dir.join(guest_bundle_path(release).trim_start_matches("/bundles/"))
            };
            make_bundle(release, &image, &w.join("release.key"), &out)?;
            fs::remove_file(&image).map_err(io("removing a bundled rootfs image"))?;
        }
        let bundles = w.join("bundles.ext4");
        make_bundle_disk(&bundle_dir, &bundles)?;
        fs::remove_dir_all(&bundle_dir).map_err(io("removing the staged bundles"))?;
        let flash = w.join("flash1.img");
        write_flash(&flash)?;
        let shipped = fs::read_to_string(crate::uboot::shipped_script_path())
            .map_err(io("reading bootloader/uboot/boot.cmd"))?;
        let scripts = scripts_partition(&shipped, w)?;
        let keyring = w.join("keyring");
        fs::create_dir_all(&keyring).map_err(io("creating the keyring"))?;
        fs::copy(&public_key, keyring.join("release.pub")).map_err(io("filling the keyring"))?;
        let factory = w.join("factory.img");
        build_disk(
            &factory,
            &DiskInputs {
                bundle: &factory_bundle,
                keyring: &keyring,
                scripts: &scripts,
                work: &w.join("factory-work"),
            },
        )?;
        fs::remove_file(&factory_bundle).map_err(io("removing the factory bundle"))?;
        Ok(World {
            flash,
            bundles,
            factory,
            console_log: None,
            build_time: start.elapsed(),
            dir,
        })
    }

    /// Appends the console of every boot to `path`.
    pub fn log_console_to(&mut self, path: PathBuf) {
        self.console_log = Some(path);
    }

    /// A copy of the disk `from` (the factory disk when `None`), named `name`.
    pub fn disk_copy(&self, from: Option<&Path>, name: &str) -> Result<PathBuf, WorldError> {
        let to = self.dir.path().join(format!("{name}.img"));
        let res = Command::new("cp")
            .arg("--sparse=always")
            .arg(from.unwrap_or(&self.factory))
            .arg(&to)
            .output()
            .map_err(io("running cp"))?;
        if !res.status.success() {
            return Err(WorldError::Tool {
                tool: "cp",
                stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
            });
        }
        Ok(to)
    }

    /// The machine over `disk`.
    pub fn machine(&self, disk: &Path) -> Result<Machine, WorldError> {
        let mut m = Machine::new(&self.flash, disk, &self.bundles)?;
        if let Some(log) = &self.console_log {
            m.log_console_to(log.clone());
        }
        Ok(m)
    }

    /// The host's view of `disk`.
    pub fn host(&self, disk: &Path) -> Result<HostView, WorldError> {
        let name = disk.file_stem().unwrap_or_default().to_string_lossy();
        Ok(HostView::new(
            disk,
            &self.dir.path().join(format!("host-{name}")),
        )?)
    }

    /// Removes a disk copy.
    pub fn remove(&self, disk: &Path) -> Result<(), WorldError> {
        fs::remove_file(disk).map_err(io(format!("removing {}", disk.display())))
    }
}

fn make_bundle(release: &Release, image: &Path, key: &Path, out: &Path) -> Result<(), WorldError> {
    let err = |message: String| WorldError::Bundle {
        version: release.version.into(),
        message,
    };
    let opts = CreateOptions {
        version: release
            .version
            .parse()
            .map_err(|e: semver::Error| err(e.to_string()))?,
        compatible: COMPATIBLE.into(),
        security_version: security_version(release),
        build_id: format!("qemu-guest-{}", release.version),
        min_from_version: None,
        images: vec![("rootfs".into(), image.to_path_buf())],
        compression: Compression::Zstd,
        chunk_size: 1 << 20,
        zstd_level: 3,
        xz_level: 6,
    };
    let key = load_signing_key(key).map_err(|e| err(e.to_string()))?;
    create_bundle(&opts, &key, out)
        .map(|_| ())
        .map_err(|e| err(e.to_string()))
}

/// An ext4 image holding the bundles (a filesystem, so each file keeps its exact
/// length: the bundle reader refuses trailing bytes).
pub fn make_bundle_disk(dir: &Path, out: &Path) -> Result<(), WorldError> {
    let bytes: u64 = fs::read_dir(dir)
        .map_err(io("listing the bundles"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let kib = (bytes / 1024) * 5 / 4 + 4096;
    let res = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "bundles", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(out)
        .arg(format!("{kib}k"))
        .output()
        .map_err(io("running mkfs.ext4 (e2fsprogs)"))?;
    if !res.status.success() {
        return Err(WorldError::Tool {
            tool: "mkfs.ext4",
            stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        });
    }
    Ok(())
}

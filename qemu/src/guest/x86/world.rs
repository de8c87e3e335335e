//! Everything the x86_64 scenarios share, built once per run in a work directory under
//! the cache: the static x86_64 bascule, the initramfs, the rootfs images v1-v3, a
//! signing key, the signed bundles of v1-v3 (v2 and v3 on the bundle disk, as for the
//! arm64 guest), `BOOTX64.EFI`, the board's `grub.cfg` and the factory disk
//! (`bascule provision` of v1's bundle). Each scenario boots its own copy of a disk.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bascule::bundle::{create_bundle, keygen, load_signing_key, Compression, CreateOptions};

use super::cache::guest_parts;
use super::config::COMPATIBLE;
use super::disk::{build_disk, DiskInputs};
use super::error::{io, run, X86Error};
use super::grub_board::{board_cfg, build_efi, shipped_cfg_path};
use super::host::HostView;
use super::machine::Machine;
use super::rootfs::{build_rootfs, write_initramfs, RootfsInputs};
use crate::guest::cache::cache_dir;
use crate::guest::cross::{build_bascule_for, X86_64};
use crate::guest::rootfs::{Release, V1, V2, V3};
use crate::guest::world::{guest_bundle_path, make_bundle_disk, security_version};

/// The shared parts.
pub struct World {
    dir: tempfile::TempDir,
    bundles: PathBuf,
    factory: PathBuf,
    console_log: Option<PathBuf>,
    /// How long the cross build of bascule took (seconds when it was up to date).
    pub cross_build_time: Duration,
    /// How long building all the parts took (the cross build included).
    pub build_time: Duration,
}

impl World {
    /// Builds every shared part (see the module docs).
    pub fn build() -> Result<World, X86Error> {
        let start = Instant::now();
        let work_root = cache_dir().join("work");
        fs::create_dir_all(&work_root).map_err(io("creating the work directory"))?;
        let dir = tempfile::Builder::new()
            .prefix("guest-x86-")
            .tempdir_in(&work_root)
            .map_err(io("creating the work directory"))?;
        let w = dir.path();
        let parts = guest_parts()?;
        let bascule = build_bascule_for(&X86_64)?;
        let cross_build_time = start.elapsed();
        let initramfs = w.join("initrd.img");
        write_initramfs(&parts, &initramfs)?;
        keygen(&w.join("release")).map_err(|e| bundle_err("(key)", e.to_string()))?;
        let inputs = RootfsInputs {
            parts: &parts,
            bascule: &bascule,
            initramfs: &initramfs,
            public_key: &w.join("release.pub"),
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
        make_bundle_disk(&bundle_dir, &bundles).map_err(|e| bundle_err("(disk)", e.to_string()))?;
        fs::remove_dir_all(&bundle_dir).map_err(io("removing the staged bundles"))?;
        let efi = build_efi(w)?;
        let shipped = fs::read_to_string(shipped_cfg_path())
            .map_err(io("reading bootloader/grub/grub.cfg"))?;
        let cfg = w.join("grub.cfg");
        fs::write(&cfg, board_cfg(&shipped)?).map_err(io("writing the board's grub.cfg"))?;
        let keyring = w.join("keyring");
        fs::create_dir_all(&keyring).map_err(io("creating the keyring"))?;
        fs::copy(w.join("release.pub"), keyring.join("release.pub"))
            .map_err(io("filling the keyring"))?;
        let factory = w.join("factory.img");
        build_disk(
            &factory,
            &DiskInputs {
                bundle: &factory_bundle,
                keyring: &keyring,
                efi: &efi,
                grub_cfg: &cfg,
                work: &w.join("factory-work"),
            },
        )?;
        fs::remove_file(&factory_bundle).map_err(io("removing the factory bundle"))?;
        Ok(World {
            bundles,
            factory,
            console_log: None,
            cross_build_time,
            build_time: start.elapsed(),
            dir,
        })
    }

    /// Appends the console of every boot to `path`.
    pub fn log_console_to(&mut self, path: PathBuf) {
        self.console_log = Some(path);
    }

    /// A copy of the disk `from` (the factory disk when `None`), named `name`.
    pub fn disk_copy(&self, from: Option<&Path>, name: &str) -> Result<PathBuf, X86Error> {
        let to = self.dir.path().join(format!("{name}.img"));
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(from.unwrap_or(&self.factory))
            .arg(&to))?;
        Ok(to)
    }

    /// The machine over `disk`.
    pub fn machine(&self, disk: &Path) -> Result<Machine, X86Error> {
        let mut m = Machine::new(disk, &self.bundles)?;
        if let Some(log) = &self.console_log {
            m.log_console_to(log.clone());
        }
        Ok(m)
    }

    /// The host's view of `disk`.
    pub fn host(&self, disk: &Path) -> Result<HostView, X86Error> {
        let name = disk.file_stem().unwrap_or_default().to_string_lossy();
        HostView::new(disk, &self.dir.path().join(format!("host-{name}")))
    }

    /// Removes a disk copy.
    pub fn remove(&self, disk: &Path) -> Result<(), X86Error> {
        fs::remove_file(disk).map_err(io(format!("removing {}", disk.display())))
    }
}

fn bundle_err(version: &str, message: String) -> X86Error {
    X86Error::Bundle {
        version: version.into(),
        message,
    }
}

fn make_bundle(release: &Release, image: &Path, key: &Path, out: &Path) -> Result<(), X86Error> {
    let err = |message: String| bundle_err(release.version, message);
    let opts = CreateOptions {
        version: release
            .version
            .parse()
            .map_err(|e: semver::Error| err(e.to_string()))?,
        compatible: COMPATIBLE.into(),
        security_version: security_version(release),
        build_id: format!("qemu-guest-x86_64-{}", release.version),
        min_from_version: None,
        images: vec![("rootfs".into(), image.to_path_buf())],
        compression: Compression::Zstd,
        chunk_size: 1 << 20,
        zstd_level: 3,
        xz_level: 6,
    };
    let key = load_signing_key(key).map_err(|e| err(e.to_string()))?;
    create_bundle(&opts, &key, out)
        .map(drop)
        .map_err(|e| err(e.to_string()))
}

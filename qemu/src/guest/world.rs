//! Everything a platform's scenarios share, built once per run in a work directory
//! under the cache: the guest's bascule, the initramfs, the rootfs images v1-v3, a
//! signing key, the signed bundles of v1-v3 (v2 and v3 on the bundle disk), the
//! board's files ([`super::disk::board_files`]: U-Boot's pflash and boot scripts, or
//! `BOOTX64.EFI` and the board's `grub.cfg`) and the factory disk (`bascule provision`
//! of v1's bundle). Each scenario boots its own copy of a disk.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bascule::bundle::{create_bundle, keygen, load_signing_key, Compression, CreateOptions};

use super::cache::{cache_dir, guest_parts};
use super::cross::build_bascule_for;
use super::disk::{board_files, build_disk, DiskInputs};
use super::error::{io, run, GuestError};
use super::host::HostView;
use super::layout::SCRIPTS;
use super::machine::Machine;
use super::platform::Platform;
use super::rootfs::{build_rootfs, write_initramfs, Release, RootfsInputs, V1, V2, V3};

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
    pub platform: Platform,
    dir: tempfile::TempDir,
    flash: Option<PathBuf>,
    torn_save_scripts: Option<PathBuf>,
    bundles: PathBuf,
    factory: PathBuf,
    console_log: Option<PathBuf>,
    /// How long the cross build of bascule took (seconds when it was up to date).
    pub cross_build_time: Duration,
    /// How long building all the parts took (the cross build included).
    pub build_time: Duration,
}

impl World {
    /// Builds every shared part of `platform` (see the module docs).
    pub fn build(platform: Platform) -> Result<World, GuestError> {
        let start = Instant::now();
        let work_root = cache_dir().join("work");
        fs::create_dir_all(&work_root).map_err(io("creating the work directory"))?;
        let prefix = match platform {
            Platform::Arm64 => "guest-",
            Platform::X86_64 => "guest-x86-",
        };
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&work_root)
            .map_err(io("creating the work directory"))?;
        let w = dir.path();
        let bascule = build_bascule_for(platform.cross())?;
        let cross_build_time = start.elapsed();
        let factory_bundle = w.join("factory-v1.bundle");
        let bundles = w.join("bundles.ext4");
        make_releases(platform, &bascule, w, &factory_bundle, &bundles)?;
        let board = board_files(platform, w)?;
        let keyring = w.join("keyring");
        fs::create_dir_all(&keyring).map_err(io("creating the keyring"))?;
        fs::copy(w.join("release.pub"), keyring.join("release.pub"))
            .map_err(io("filling the keyring"))?;
        let factory = w.join("factory.img");
        let inputs = DiskInputs {
            platform,
            bundle: &factory_bundle,
            keyring: &keyring,
            board: &board,
            work: &w.join("factory-work"),
        };
        build_disk(&factory, &inputs)?;
        fs::remove_file(&factory_bundle).map_err(io("removing the factory bundle"))?;
        Ok(World {
            platform,
            flash: board.flash,
            torn_save_scripts: board.torn_save_scripts,
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
    pub fn disk_copy(&self, from: Option<&Path>, name: &str) -> Result<PathBuf, GuestError> {
        let to = self.dir.path().join(format!("{name}.img"));
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(from.unwrap_or(&self.factory))
            .arg(&to))?;
        Ok(to)
    }

    /// The machine over `disk`.
    pub fn machine(&self, disk: &Path) -> Result<Machine, GuestError> {
        let mut m = match &self.flash {
            Some(flash) => Machine::uboot(flash, disk, &self.bundles)?,
            None => Machine::ovmf(disk, &self.bundles)?,
        };
        if let Some(log) = &self.console_log {
            m.log_console_to(log.clone());
        }
        Ok(m)
    }

    /// The host's view of `disk`.
    pub fn host(&self, disk: &Path) -> Result<HostView, GuestError> {
        let name = disk.file_stem().unwrap_or_default().to_string_lossy();
        let work = self.dir.path().join(format!("host-{name}"));
        HostView::new(self.platform, disk, &work)
    }

    /// Gives `disk` the power-cut campaign's board: its U-Boot saves pause between
    /// the first sector of the env copy and the rest (arm64 only).
    pub fn use_torn_save_board(&self, disk: &Path) -> Result<(), GuestError> {
        use std::os::unix::fs::FileExt;
        let scripts = self
            .torn_save_scripts
            .as_ref()
            .ok_or_else(|| GuestError::Unsupported("a torn-save board on x86_64".into()))?;
        let bytes = fs::read(scripts).map_err(io(format!("reading {}", scripts.display())))?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(disk)
            .map_err(io(format!("opening {}", disk.display())))?;
        file.write_all_at(&bytes, SCRIPTS.start)
            .and_then(|()| file.sync_all())
            .map_err(io(format!(
                "writing the torn-save board into {}",
                disk.display()
            )))
    }

    /// Removes a disk copy.
    pub fn remove(&self, disk: &Path) -> Result<(), GuestError> {
        fs::remove_file(disk).map_err(io(format!("removing {}", disk.display())))
    }
}

/// Makes the signing key (`w/release.key`, `.pub`), the rootfs image of each release
/// and its signed bundle: v1's at `factory_bundle`, v2's and v3's on the bundle disk
/// `bundle_disk`.
fn make_releases(
    platform: Platform,
    bascule: &Path,
    w: &Path,
    factory_bundle: &Path,
    bundle_disk: &Path,
) -> Result<(), GuestError> {
    let parts = guest_parts(platform)?;
    let initramfs = w.join("initrd.img");
    write_initramfs(platform, &parts, &initramfs)?;
    keygen(&w.join("release")).map_err(|e| bundle_err("(key)", e.to_string()))?;
    let inputs = RootfsInputs {
        platform,
        parts: &parts,
        bascule,
        initramfs: &initramfs,
        public_key: &w.join("release.pub"),
    };
    let bundle_dir = w.join("bundles");
    fs::create_dir_all(&bundle_dir).map_err(io("creating the bundle directory"))?;
    for release in [&V1, &V2, &V3] {
        let image = w.join(format!("rootfs-{}.ext4", release.version));
        build_rootfs(&inputs, release, w, &image)?;
        // v1 is the factory release: provisioned, never on the bundle disk.
        let out = if release == &V1 {
            factory_bundle.to_path_buf()
        } else {
            bundle_dir.join(guest_bundle_path(release).trim_start_matches("/bundles/"))
        };
        make_bundle(platform, release, &image, &w.join("release.key"), &out)?;
        fs::remove_file(&image).map_err(io("removing a bundled rootfs image"))?;
    }
    make_bundle_disk(&bundle_dir, bundle_disk)?;
    fs::remove_dir_all(&bundle_dir).map_err(io("removing the staged bundles"))
}

fn bundle_err(version: &str, message: String) -> GuestError {
    GuestError::Bundle {
        version: version.into(),
        message,
    }
}

fn make_bundle(
    platform: Platform,
    release: &Release,
    image: &Path,
    key: &Path,
    out: &Path,
) -> Result<(), GuestError> {
    let err = |message: String| bundle_err(release.version, message);
    let build_id = match platform {
        Platform::Arm64 => format!("qemu-guest-{}", release.version),
        Platform::X86_64 => format!("qemu-guest-x86_64-{}", release.version),
    };
    let opts = CreateOptions {
        version: release
            .version
            .parse()
            .map_err(|e: semver::Error| err(e.to_string()))?,
        compatible: platform.compatible().into(),
        security_version: security_version(release),
        build_id,
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

/// An ext4 image holding the bundles (a filesystem, so each file keeps its exact
/// length: the bundle reader refuses trailing bytes).
pub fn make_bundle_disk(dir: &Path, out: &Path) -> Result<(), GuestError> {
    let bytes: u64 = fs::read_dir(dir)
        .map_err(io("listing the bundles"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let kib = (bytes / 1024) * 5 / 4 + 4096;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "bundles", "-E", "root_owner=0:0", "-d"])
        .arg(dir)
        .arg(out)
        .arg(format!("{kib}k")))?;
    Ok(())
}

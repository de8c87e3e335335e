//! The guests' Debian parts in the cache: the cloud kernel (its image and modules)
//! and busybox of each platform, as its fetch script unpacked them from the packages
//! and versions it pins, under [`cache_dir`]:
//!
//! - arm64: `qemu/fetch-guest` from `qemu/guest-packages`, into
//!   `<name>_<version>/` (the kernel an uncompressed `Image`);
//! - x86_64: `qemu/fetch-guest-x86_64` from `qemu/guest-packages-x86_64`, into
//!   `<name>_<version>_amd64/` (the kernel a bzImage).
use std::path::{Path, PathBuf};

use super::platform::Platform;

/// The pinned package lists, shared with the fetch scripts.
const PACKAGES: &str = include_str!("../../guest-packages");
const PACKAGES_X86_64: &str = include_str!("../../guest-packages-x86_64");
const KERNEL_PREFIX: &str = "linux-image-";
const BUSYBOX: &str = "busybox-static";

/// A part of the guest that is not in the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("qemu/guest-packages pins no {0} package")]
    NotPinned(&'static str),
    #[error("{path} is missing: run qemu/fetch-guest (scripts/deps --test runs it)")]
    NotFetched { path: PathBuf },
}

/// Where downloads and builds for the guest are kept (`BASCULE_QEMU_CACHE` or
/// `/var/cache/bascule/qemu`), outside the clone.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BASCULE_QEMU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/bascule/qemu"))
}

/// The unpacked Debian parts of the guest.
#[derive(Debug, Clone)]
pub struct GuestParts {
    /// `boot/vmlinuz-<release>`: an arm64 `Image` or an amd64 bzImage.
    pub kernel: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
    /// The static busybox.
    pub busybox: PathBuf,
    /// The kernel release, e.g. `6.1.0-57-cloud-arm64`.
    pub release: String,
}

/// The pin list of `platform` and the suffix of its unpacked directories.
fn pins(platform: Platform) -> (&'static str, &'static str) {
    match platform {
        Platform::Arm64 => (PACKAGES, ""),
        Platform::X86_64 => (PACKAGES_X86_64, "_amd64"),
    }
}

/// Finds the pinned kernel and busybox of `platform` in the cache.
pub fn guest_parts(platform: Platform) -> Result<GuestParts, CacheError> {
    let (list, suffix) = pins(platform);
    let kernel_pkg = pinned(list, |name| name.starts_with(KERNEL_PREFIX), "linux-image")?;
    let busybox_pkg = pinned(list, |name| name == BUSYBOX, BUSYBOX)?;
    let release = kernel_pkg.0.trim_start_matches(KERNEL_PREFIX).to_string();
    let kdir = unpacked(&kernel_pkg, suffix)?;
    let bdir = unpacked(&busybox_pkg, suffix)?;
    Ok(GuestParts {
        kernel: existing(kdir.join(format!("boot/vmlinuz-{release}")))?,
        modules: existing(kdir.join(format!("lib/modules/{release}")))?,
        busybox: existing(bdir.join("bin/busybox"))?,
        release,
    })
}

/// The (name, version) `list` pins for the first package `matches` accepts.
fn pinned(
    list: &str,
    matches: impl Fn(&str) -> bool,
    what: &'static str,
) -> Result<(String, String), CacheError> {
    list.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(name, _)| matches(name))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .ok_or(CacheError::NotPinned(what))
}

/// The directory the fetch script unpacked a package into (`:` spelled `%3a`).
fn unpacked((name, version): &(String, String), suffix: &str) -> Result<PathBuf, CacheError> {
    let version = version.replace(':', "%3a");
    let dir = cache_dir().join(format!("{name}_{version}{suffix}"));
    existing(dir.join(".unpacked"))?;
    Ok(dir)
}

fn existing(path: PathBuf) -> Result<PathBuf, CacheError> {
    if Path::new(&path).exists() {
        Ok(path)
    } else {
        Err(CacheError::NotFetched { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pin_file_names_its_kernel_and_busybox() {
        for (platform, arch) in [(Platform::Arm64, "arm64"), (Platform::X86_64, "amd64")] {
            let (list, _) = pins(platform);
            let (kernel, kv) = pinned(list, |n| n.starts_with(KERNEL_PREFIX), "k").unwrap();
            assert!(kernel.ends_with(&format!("-cloud-{arch}")), "{kernel}");
            assert!(!kv.is_empty());
            assert_eq!(pinned(list, |n| n == BUSYBOX, BUSYBOX).unwrap().0, BUSYBOX);
        }
    }
}

//! The guest's Debian parts in the cache: the arm64 cloud kernel (its `Image` and
//! modules) and busybox, as `qemu/fetch-guest` unpacked them from the packages and
//! versions pinned in `qemu/guest-packages`, under [`cache_dir`]`/<name>_<version>/`.
use std::path::{Path, PathBuf};

/// The pinned package list, shared with `qemu/fetch-guest`.
const PACKAGES: &str = include_str!("../../guest-packages");
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
    /// `boot/vmlinuz-<release>`: an uncompressed arm64 `Image`.
    pub kernel: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
    /// The static arm64 busybox.
    pub busybox: PathBuf,
    /// The kernel release, e.g. `6.1.0-57-cloud-arm64`.
    pub release: String,
}

/// Finds the pinned kernel and busybox in the cache.
pub fn guest_parts() -> Result<GuestParts, CacheError> {
    let kernel_pkg = pinned(|name| name.starts_with(KERNEL_PREFIX), "linux-image")?;
    let busybox_pkg = pinned(|name| name == BUSYBOX, BUSYBOX)?;
    let release = kernel_pkg.0.trim_start_matches(KERNEL_PREFIX).to_string();
    let kdir = unpacked(&kernel_pkg)?;
    let bdir = unpacked(&busybox_pkg)?;
    Ok(GuestParts {
        kernel: existing(kdir.join(format!("boot/vmlinuz-{release}")))?,
        modules: existing(kdir.join(format!("lib/modules/{release}")))?,
        busybox: existing(bdir.join("bin/busybox"))?,
        release,
    })
}

/// The (name, version) pinned for the first package `matches` accepts.
fn pinned(
    matches: impl Fn(&str) -> bool,
    what: &'static str,
) -> Result<(String, String), CacheError> {
    PACKAGES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(name, _)| matches(name))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .ok_or(CacheError::NotPinned(what))
}

/// The directory `qemu/fetch-guest` unpacked a package into (`:` spelled `%3a`).
fn unpacked((name, version): &(String, String)) -> Result<PathBuf, CacheError> {
    let dir = cache_dir().join(format!("{name}_{}", version.replace(':', "%3a")));
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
    fn the_pin_file_names_a_kernel_and_busybox() {
        let (kernel, kv) = pinned(|n| n.starts_with(KERNEL_PREFIX), "k").unwrap();
        assert!(kernel.ends_with("-cloud-arm64"), "{kernel}");
        assert!(!kv.is_empty());
        assert_eq!(pinned(|n| n == BUSYBOX, BUSYBOX).unwrap().0, BUSYBOX);
    }
}

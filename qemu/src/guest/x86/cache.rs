//! The x86_64 guest's Debian parts in the cache: the amd64 cloud kernel (`vmlinuz`, a
//! bzImage, and its modules) and busybox, as `qemu/fetch-guest-x86_64` unpacked them
//! from the versions pinned in `qemu/guest-packages-x86_64`, under
//! `<cache>/<name>_<version>_amd64/`.
use std::path::PathBuf;

use crate::guest::cache::{cache_dir, CacheError, GuestParts};

const PACKAGES: &str = include_str!("../../../guest-packages-x86_64");
const KERNEL_PREFIX: &str = "linux-image-";
const BUSYBOX: &str = "busybox-static";

/// Finds the pinned amd64 kernel and busybox in the cache.
pub fn guest_parts() -> Result<GuestParts, CacheError> {
    let (kname, kver) = pinned(|n| n.starts_with(KERNEL_PREFIX), "linux-image")?;
    let bpkg = pinned(|n| n == BUSYBOX, BUSYBOX)?;
    let release = kname.trim_start_matches(KERNEL_PREFIX).to_string();
    let kdir = unpacked(&kname, &kver)?;
    let bdir = unpacked(&bpkg.0, &bpkg.1)?;
    Ok(GuestParts {
        kernel: existing(kdir.join(format!("boot/vmlinuz-{release}")))?,
        modules: existing(kdir.join(format!("lib/modules/{release}")))?,
        busybox: existing(bdir.join("bin/busybox"))?,
        release,
    })
}

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

fn unpacked(name: &str, version: &str) -> Result<PathBuf, CacheError> {
    let dir = cache_dir().join(format!("{name}_{}_amd64", version.replace(':', "%3a")));
    existing(dir.join(".unpacked"))?;
    Ok(dir)
}

fn existing(path: PathBuf) -> Result<PathBuf, CacheError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(CacheError::NotFetched { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_file_names_an_amd64_kernel_and_busybox() {
        let (kernel, _) = pinned(|n| n.starts_with(KERNEL_PREFIX), "k").unwrap();
        assert!(kernel.ends_with("-cloud-amd64"), "{kernel}");
        assert_eq!(pinned(|n| n == BUSYBOX, BUSYBOX).unwrap().0, BUSYBOX);
    }
}

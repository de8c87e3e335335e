//! The two `system.toml`s of the x86_64 guest, from [`super::layout`].
//!
//! - [`guest_system_toml`]: bascule inside the guest. The env is the grubenv in the
//!   ESP's `EFI/BOOT` (GRUB's prefix, where the shipped script loads and saves it),
//!   mounted at [`ESP_MOUNT`]; bascule keeps `grubenv.good` beside it. Slots, data and
//!   the health probe as on arm64.
//! - [`host_system_toml`]: bascule on the host over the disk image: slots are windows
//!   of the file, the env is a copy of the ESP's grubenv (and `grubenv.good`) that the
//!   host copies out with mtools before reading and back after writing.
use std::path::Path;

use super::layout::{Part, DATA, ESP_DIR, ESP_MOUNT, ROOTFS_A, ROOTFS_B};
use crate::guest::config::{ATTEMPTS, DATA_MOUNT};

/// The `compatible` of the x86_64 guest board and its bundles.
pub const COMPATIBLE: &str = "bascule-qemu-x86_64";

/// bascule's config inside the guest (the same in every release).
pub fn guest_system_toml() -> String {
    format!(
        r#"compatible = "{COMPATIBLE}"
keyring = "/etc/bascule/keys"

[boot]
attempts = {ATTEMPTS}

[bootenv]
backend = "grub"
path = "{ESP_MOUNT}/{ESP_DIR}/grubenv"

[slots.rootfs.A]
device = "{a}"
[slots.rootfs.B]
device = "{b}"

[data]
device = "{data}"
mount = "{DATA_MOUNT}"

[health]
deadline_secs = 60
on_failure = "reboot"
reboot_command = ["/sbin/bg-reboot"]
[[health.stage]]
name = "app"
[[health.stage.check]]
name = "selftest"
command = ["/usr/bin/app-selftest"]
timeout_secs = 20
"#,
        a = ROOTFS_A.guest_device(),
        b = ROOTFS_B.guest_device(),
        data = DATA.guest_device(),
    )
}

/// bascule's config on the host over the disk image `disk`; `grubenv` is the host's
/// copy of the ESP's grubenv, `state_dir` the data slot's `bascule/` files, `cmdline`
/// a file naming no booted slot.
pub fn host_system_toml(disk: &Path, grubenv: &Path, state_dir: &Path, cmdline: &Path) -> String {
    let window = |p: Part| {
        format!(
            "device = {:?}\noffset = {}\nsize = {}",
            disk, p.start, p.size
        )
    };
    format!(
        r#"compatible = "{COMPATIBLE}"
keyring = {state_dir:?}
state_dir = {state_dir:?}

[boot]
cmdline = {cmdline:?}
attempts = {ATTEMPTS}

[bootenv]
backend = "grub"
path = {grubenv:?}

[slots.rootfs.A]
{a}
[slots.rootfs.B]
{b}
"#,
        a = window(ROOTFS_A),
        b = window(ROOTFS_B),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_and_host_configs_load() {
        let dir = tempfile::tempdir().unwrap();
        let guest = dir.path().join("guest.toml");
        std::fs::write(&guest, guest_system_toml()).unwrap();
        let cfg = bascule::config::SystemConfig::load(&guest).unwrap();
        assert_eq!(cfg.state_dir, Path::new("/data/bascule"));
        let host = dir.path().join("host.toml");
        let p = |n: &str| dir.path().join(n);
        let text = host_system_toml(&p("disk.img"), &p("grubenv"), &p("state"), &p("cmdline"));
        std::fs::write(&host, text).unwrap();
        bascule::config::SystemConfig::load(&host).unwrap();
    }

    #[test]
    fn the_guest_env_is_the_grubenv_in_grubs_prefix_on_the_esp() {
        assert!(guest_system_toml().contains("path = \"/boot/efi/EFI/BOOT/grubenv\""));
    }
}

//! The two `system.toml`s of the guest disk and the host's `fw_env.config`, all from
//! [`super::layout`].
//!
//! - [`guest_system_toml`]: bascule inside the guest. The env is the `uboot-env`
//!   partition (two redundant copies, as the board script reads and writes them), the
//!   slots and the data slot are partitions of `/dev/vda`, and the health probe runs
//!   the image's own `/usr/bin/app-selftest`; `on_failure = "reboot"` runs
//!   `/sbin/bg-reboot` (a marker, then `reboot -f`).
//! - [`host_system_toml`]: bascule on the host, over the disk image file: slots and env
//!   are windows of the file, `state_dir` is a copy of the data slot's `bascule/`
//!   directory, and no slot is booted.
//! - [`fw_env_config`]: `fw_printenv -c` over the same two copies of the image.
use std::path::Path;

use super::layout::{Part, DATA, ENV, ENV_COPY_1, ENV_SIZE, ROOTFS_A, ROOTFS_B};

/// The `compatible` of the guest board and its bundles.
pub const COMPATIBLE: &str = "bascule-qemu-arm64";
/// Boot attempts a new slot gets.
pub const ATTEMPTS: u8 = 3;
/// Where the guest mounts the data slot.
pub const DATA_MOUNT: &str = "/data";

/// bascule's config inside the guest (the same in every release).
pub fn guest_system_toml() -> String {
    format!(
        r#"compatible = "{COMPATIBLE}"
keyring = "/etc/bascule/keys"

[boot]
attempts = {ATTEMPTS}

[bootenv]
backend = "uboot"
path = "/dev/vda{env}"
offset = 0
size = {ENV_SIZE:#x}
redundant_offset = {ENV_COPY_1:#x}

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
        env = ENV.number,
        a = ROOTFS_A.guest_device(),
        b = ROOTFS_B.guest_device(),
        data = DATA.guest_device(),
    )
}

/// bascule's config on the host over the disk image `disk`; `state_dir` holds the
/// data slot's `bascule/` files, `cmdline` is a file naming no booted slot, and
/// `defaults` the board's default env (for `init-env`).
pub fn host_system_toml(disk: &Path, state_dir: &Path, cmdline: &Path, defaults: &Path) -> String {
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
backend = "uboot"
path = {disk:?}
offset = {env}
size = {ENV_SIZE}
redundant_offset = {env1}
defaults = {defaults:?}

[slots.rootfs.A]
{a}
[slots.rootfs.B]
{b}
"#,
        env = ENV.start,
        env1 = ENV.start + ENV_COPY_1,
        a = window(ROOTFS_A),
        b = window(ROOTFS_B),
    )
}

/// `fw_env.config` for `fw_printenv -c` over the disk image `disk`.
pub fn fw_env_config(disk: &Path) -> String {
    format!(
        "{d} {:#x} {ENV_SIZE:#x}\n{d} {:#x} {ENV_SIZE:#x}\n",
        ENV.start,
        ENV.start + ENV_COPY_1,
        d = disk.display()
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
        let disk = dir.path().join("disk.img");
        let state = dir.path().join("state");
        let cmdline = dir.path().join("cmdline");
        let defaults = dir.path().join("defaults");
        let host = dir.path().join("host.toml");
        std::fs::write(&host, host_system_toml(&disk, &state, &cmdline, &defaults)).unwrap();
        bascule::config::SystemConfig::load(&host).unwrap();
    }

    #[test]
    fn fw_env_config_names_both_copies() {
        let text = fw_env_config(Path::new("/d.img"));
        assert_eq!(text, "/d.img 0x100000 0x4000\n/d.img 0x104000 0x4000\n");
    }
}

//! The two `system.toml`s of a guest disk and the host's `fw_env.config`. The body is
//! the same on both platforms; the `[bootenv]` part is the platform's.
//!
//! - [`guest_system_toml`]: bascule inside the guest. The slots and the data slot are
//!   partitions of `/dev/vda`, and the health probe runs the image's own
//!   `/usr/bin/app-selftest`; `on_failure = "reboot"` runs `/sbin/bg-reboot` (a
//!   marker, then `reboot -f`). The env on arm64 is the `uboot-env` partition (two
//!   redundant copies, as the board script reads and writes them); on x86_64 the
//!   grubenv in the ESP's `EFI/BOOT` (GRUB's prefix, where the shipped script loads
//!   and saves it), mounted at [`ESP_MOUNT`]; bascule keeps `grubenv.good` beside it.
//! - [`host_system_toml`]: bascule on the host, over the disk image file: the slots
//!   are windows of the file, `state_dir` is a copy of the data slot's `bascule/`
//!   directory, and no slot is booted. The env is a window of the file on arm64
//!   ([`host_uboot_env`]), a copy of the ESP's grubenv on x86_64 ([`host_grub_env`]).
//! - [`fw_env_config`]: `fw_printenv -c` over the two U-Boot env copies of the image.
use std::path::Path;

use bascule_partitions::SlotName;

use super::layout::{Part, ENV, ENV_COPY_1, ENV_SIZE};
use super::platform::Platform;
use super::x86::layout::{ESP_DIR, ESP_MOUNT};

/// Boot attempts a new slot gets.
pub const ATTEMPTS: u8 = 3;
/// Where the guest mounts the data slot.
pub const DATA_MOUNT: &str = "/data";

/// The `[bootenv]` part of the guest's config.
fn guest_bootenv(platform: Platform) -> String {
    match platform {
        Platform::Arm64 => format!(
            "backend = \"uboot\"\npath = \"/dev/vda{env}\"\noffset = 0\n\
             size = {ENV_SIZE:#x}\nredundant_offset = {ENV_COPY_1:#x}\n",
            env = ENV.number
        ),
        Platform::X86_64 => {
            format!("backend = \"grub\"\npath = \"{ESP_MOUNT}/{ESP_DIR}/grubenv\"\n")
        }
    }
}

/// bascule's config inside the guest (the same in every release).
pub fn guest_system_toml(platform: Platform) -> String {
    format!(
        r#"compatible = "{compatible}"
keyring = "/etc/bascule/keys"

[boot]
attempts = {ATTEMPTS}

[bootenv]
{bootenv}
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
        compatible = platform.compatible(),
        bootenv = guest_bootenv(platform),
        a = platform.rootfs(SlotName::A).guest_device(),
        b = platform.rootfs(SlotName::B).guest_device(),
        data = platform.data().guest_device(),
    )
}

/// The host's `[bootenv]` over the U-Boot env copies of `disk`; `defaults` is the
/// board's default env (for `init-env`).
pub fn host_uboot_env(disk: &Path, defaults: &Path) -> String {
    format!(
        "backend = \"uboot\"\npath = {disk:?}\noffset = {env}\nsize = {ENV_SIZE}\n\
         redundant_offset = {env1}\ndefaults = {defaults:?}\n",
        env = ENV.start,
        env1 = ENV.start + ENV_COPY_1,
    )
}

/// The host's `[bootenv]` over `grubenv`, the host's copy of the ESP's grubenv.
pub fn host_grub_env(grubenv: &Path) -> String {
    format!("backend = \"grub\"\npath = {grubenv:?}\n")
}

/// bascule's config on the host over the disk image `disk`; `state_dir` holds the
/// data slot's `bascule/` files, `cmdline` is a file naming no booted slot, and
/// `bootenv` the `[bootenv]` part ([`host_uboot_env`], [`host_grub_env`]).
pub fn host_system_toml(
    platform: Platform,
    disk: &Path,
    state_dir: &Path,
    cmdline: &Path,
    bootenv: &str,
) -> String {
    let window = |p: Part| {
        format!(
            "device = {:?}\noffset = {}\nsize = {}",
            disk, p.start, p.size
        )
    };
    format!(
        r#"compatible = "{compatible}"
keyring = {state_dir:?}
state_dir = {state_dir:?}

[boot]
cmdline = {cmdline:?}
attempts = {ATTEMPTS}

[bootenv]
{bootenv}
[slots.rootfs.A]
{a}
[slots.rootfs.B]
{b}
"#,
        compatible = platform.compatible(),
        a = window(platform.rootfs(SlotName::A)),
        b = window(platform.rootfs(SlotName::B)),
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
    use bascule::config::SystemConfig;

    #[test]
    fn guest_and_host_configs_load_on_both_platforms() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        for (platform, bootenv) in [
            (
                Platform::Arm64,
                host_uboot_env(&p("disk.img"), &p("defaults")),
            ),
            (Platform::X86_64, host_grub_env(&p("grubenv"))),
        ] {
            std::fs::write(p("guest.toml"), guest_system_toml(platform)).unwrap();
            let cfg = SystemConfig::load(&p("guest.toml")).unwrap();
            assert_eq!(cfg.state_dir, Path::new("/data/bascule"));
            let text = host_system_toml(
                platform,
                &p("disk.img"),
                &p("state"),
                &p("cmdline"),
                &bootenv,
            );
            std::fs::write(p("host.toml"), text).unwrap();
            SystemConfig::load(&p("host.toml")).unwrap();
        }
    }

    #[test]
    fn each_guest_reads_its_own_env_and_partitions() {
        let arm = guest_system_toml(Platform::Arm64);
        assert!(
            arm.contains("backend = \"uboot\"\npath = \"/dev/vda1\""),
            "{arm}"
        );
        assert!(
            arm.contains("device = \"/dev/vda5\"\nmount = \"/data\""),
            "{arm}"
        );
        let x86 = guest_system_toml(Platform::X86_64);
        assert!(
            x86.contains("path = \"/boot/efi/EFI/BOOT/grubenv\""),
            "{x86}"
        );
        assert!(
            x86.contains("[slots.rootfs.A]\ndevice = \"/dev/vda2\""),
            "{x86}"
        );
    }

    #[test]
    fn fw_env_config_names_both_copies() {
        let text = fw_env_config(Path::new("/d.img"));
        assert_eq!(text, "/d.img 0x100000 0x4000\n/d.img 0x104000 0x4000\n");
    }
}

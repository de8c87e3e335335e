//! The guest's scripts, the same on both platforms but for the partitions.
//!
//! - [`INITRAMFS_INIT`]: loads the modules in `/lib/modules/order`, mounts the `root=`
//!   of the command line read-only and switches to it.
//! - [`guest_init`], the rootfs's `/sbin/init`, is one boot: print `bg-boot`, mount the
//!   data slot (and on x86_64 the ESP, read-write: bascule commits the grubenv there),
//!   run `bascule health` (a failure runs `on_failure`, which reboots through
//!   [`GUEST_REBOOT`]), do the per-boot instruction the harness passed with `-fw_cfg`
//!   (`install FILE` from the bundle disk, or nothing), print `bascule status` and
//!   `bascule history`, power off.
use super::platform::Platform;
use super::x86::layout::{ESP, ESP_MOUNT};

/// The initramfs's `/init`.
pub const INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
b=/bin/busybox
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev
for m in $($b cat /lib/modules/order); do
  $b insmod /lib/modules/$m.ko || echo "bg-initramfs: insmod $m failed"
done
root=$($b sed -n 's/.* root=\([^ ]*\).*/\1/p' /proc/cmdline)
i=0
while [ ! -b "$root" ] && [ $i -lt 200 ]; do $b sleep 0.05; i=$((i+1)); done
if ! $b mount -t ext4 -o ro "$root" /newroot; then
  echo "bg-error the initramfs cannot mount root $root"
  $b poweroff -f
fi
$b mount --move /dev /newroot/dev
$b umount /proc /sys
exec $b switch_root /newroot /sbin/init
"#;

/// The rootfs's `/sbin/init` ([`guest_init`] fills in the platform's lines).
const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
slot=$(sed -n 's/.*bascule\.slot=\([AB]\).*/\1/p' /proc/cmdline)
echo "bg-boot slot=$slot version=$(cat /etc/bascule-version)"
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/bascule
cmd=$(cat $fwcfg/cmd/raw 2>/dev/null)
pause=$(cat $fwcfg/pause/raw 2>/dev/null)
[ -n "$pause" ] && [ "$pause" != none ] && export BASCULE_TEST_PAUSE="$pause"
if ! mount -t ext4 @DATA@ /data; then
  echo "bg-error the data slot does not mount"
  poweroff -f
fi
@MOUNT_ESP@echo "bg-health begin"
bascule health
echo "bg-health end rc=$?"
case "$cmd" in
  "install "*)
    mount -t ext4 -o ro /dev/vdb /bundles || echo "bg-error the bundle disk does not mount"
    echo "bg-install begin"
    bascule install --progress log "${cmd#install }"
    echo "bg-install end rc=$?"
    umount /bundles
    ;;
  ""|none) ;;
  *) echo "bg-error unknown instruction: $cmd" ;;
esac
echo "bg-status begin"
bascule status
echo "bg-status end"
echo "bg-history begin"
bascule history
echo "bg-history end"
umount /data
@UMOUNT_ESP@echo "bg-poweroff"
poweroff -f
"#;

/// `reboot_command` of the guest's `[health]`: a marker, then a hard reboot (QEMU
/// runs with `-no-reboot`, so the run ends and the harness starts the next boot).
pub const GUEST_REBOOT: &str = "#!/bin/sh\necho \"bg-reboot on_failure\"\nexec reboot -f\n";

/// The rootfs's `/sbin/init` of `platform` (see the module docs).
pub fn guest_init(platform: Platform) -> String {
    let (mount_esp, umount_esp) = match platform {
        Platform::Arm64 => (String::new(), String::new()),
        Platform::X86_64 => (
            format!(
                "mkdir -p {ESP_MOUNT}\n\
                 if ! mount -t vfat {dev} {ESP_MOUNT}; then\n  \
                 echo \"bg-error the ESP does not mount\"\n  poweroff -f\nfi\n",
                dev = ESP.guest_device()
            ),
            format!("umount {ESP_MOUNT}\n"),
        ),
    };
    GUEST_INIT
        .replace("@DATA@", &platform.data().guest_device())
        .replace("@MOUNT_ESP@", &mount_esp)
        .replace("@UMOUNT_ESP@", &umount_esp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arm64_init_mounts_its_data_slot_and_no_esp() {
        let init = guest_init(Platform::Arm64);
        assert!(
            init.contains("if ! mount -t ext4 /dev/vda5 /data; then"),
            "{init}"
        );
        assert!(!init.contains('@') && !init.contains("vfat"), "{init}");
        assert!(init.contains("fi\necho \"bg-health begin\""), "{init}");
    }

    #[test]
    fn the_x86_init_mounts_its_data_slot_and_the_esp_before_the_probe() {
        let init = guest_init(Platform::X86_64);
        assert!(init.contains("mount -t ext4 /dev/vda4 /data"), "{init}");
        assert!(!init.contains("/dev/vda5") && !init.contains('@'));
        let esp = init.find("mount -t vfat /dev/vda1 /boot/efi").unwrap();
        assert!(esp < init.find("bascule health").unwrap());
        assert!(init.contains("umount /data\numount /boot/efi\n"));
    }
}

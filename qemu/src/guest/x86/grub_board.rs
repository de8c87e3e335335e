//! The board of the x86_64 guest: Debian's GRUB (`grub-mkimage`, x86_64-efi) as the
//! removable-media loader `EFI/BOOT/BOOTX64.EFI` with its prefix `/EFI/BOOT`, and the
//! shipped `bootloader/grub/grub.cfg` with the lines the script leaves to the board.
//!
//! [`board_cfg`] changes the shipped text only as follows, each change checked to
//! apply exactly once (a changed script fails loudly instead of running half-adapted):
//! 1. a preamble sets `bascule_root_A`/`bascule_root_B` (the script says: "Set
//!    bascule_root_A/B ... for your disk");
//! 2. `set timeout=3` becomes `set timeout=0` (no menu countdown at every boot);
//! 3. the serial console (`console=ttyS0`) is added to `CMDLINE`;
//! 4. every menu entry first prints `bascule: booting slot X` (the marker the arm64
//!    U-Boot script prints, read by [`crate::guest::console::Markers`]); the entry must
//!    load its kernel from the slot's partition of [`super::layout`].
//!
//! The kernel paths of the entries (`/boot/vmlinuz`, `/boot/initrd.img` in the slot's
//! partition) are the shipped ones: the rootfs images put the kernel there.
use std::path::{Path, PathBuf};
use std::process::Command;

use super::layout::{ESP_DIR, ROOTFS_A, ROOTFS_B};
use crate::guest::error::{run, GuestError};

/// GRUB modules the shipped script and its entries need.
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "configfile",
    "loadenv",
    "test",
    "true",
    "echo",
    "halt",
    "reboot",
    "linux",
    "efi_gop",
];
/// The serial console the kernel's messages and the guest's markers go to.
pub const CONSOLE: &str = "console=ttyS0";

/// The shipped `bootloader/grub/grub.cfg` of this checkout.
pub fn shipped_cfg_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootloader/grub/grub.cfg")
}

/// The shipped script with the board's lines (see the module docs).
pub fn board_cfg(shipped: &str) -> Result<String, GuestError> {
    let mut out = vec![
        "# Board lines (qemu x86_64 guest): the slots' root devices.".to_string(),
        format!("set bascule_root_A={}", ROOTFS_A.guest_device()),
        format!("set bascule_root_B={}", ROOTFS_B.guest_device()),
    ];
    let (mut timeout, mut cmdline, mut entries) = (0, 0, Vec::new());
    let mut in_entry = false;
    for line in shipped.lines() {
        let t = line.trim();
        if t == "set timeout=3" {
            out.push("set timeout=0".into());
            timeout += 1;
        } else if let Some(rest) = t.strip_prefix("set CMDLINE=\"") {
            let value = rest
                .strip_suffix('"')
                .ok_or_else(|| cfg("CMDLINE is not quoted"))?;
            out.push(format!("set CMDLINE=\"{value} {CONSOLE}\""));
            cmdline += 1;
        } else if t.starts_with("menuentry ") && t.ends_with('{') {
            out.push(line.into());
            in_entry = true;
            entries.push(Vec::new());
        } else if in_entry && t == "}" {
            let body = entries.last().expect("inside an entry");
            let slot = entry_slot(body)?;
            out.push(format!("    echo \"bascule: booting slot {slot}\""));
            out.extend(body.iter().cloned());
            out.push(line.into());
            in_entry = false;
        } else if in_entry {
            entries
                .last_mut()
                .expect("inside an entry")
                .push(line.to_string());
        } else {
            out.push(line.into());
        }
    }
    if timeout != 1 || cmdline != 1 || entries.len() != 2 || in_entry {
        return Err(cfg(&format!(
            "expected one `set timeout=3`, one `set CMDLINE=`, two closed menu entries; \
             found {timeout}, {cmdline}, {} (last one open: {in_entry})",
            entries.len()
        )));
    }
    Ok(out.join("\n") + "\n")
}

/// The slot an entry boots (its `bascule.slot=`), checked to load its kernel and
/// initrd from that slot's partition.
fn entry_slot(body: &[String]) -> Result<char, GuestError> {
    let text = body.join("\n");
    let slot = text
        .split("bascule.slot=")
        .nth(1)
        .and_then(|r| r.chars().next())
        .filter(|c| *c == 'A' || *c == 'B')
        .ok_or_else(|| cfg("a menu entry passes no bascule.slot=A or =B"))?;
    let part = if slot == 'A' { ROOTFS_A } else { ROOTFS_B };
    let dev = format!("(hd0,gpt{})", part.number);
    if text.matches(&dev).count() != 2 {
        return Err(cfg(&format!(
            "the entry of slot {slot} should load vmlinuz and initrd.img from {dev}"
        )));
    }
    Ok(slot)
}

fn cfg(what: &str) -> GuestError {
    GuestError::GrubCfg(what.to_string())
}

/// Builds `BOOTX64.EFI` in `work`.
pub fn build_efi(work: &Path) -> Result<PathBuf, GuestError> {
    let efi = work.join("BOOTX64.EFI");
    run(Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", &format!("/{ESP_DIR}"), "-o"])
        .arg(&efi)
        .args(GRUB_MODULES))?;
    Ok(efi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn shipped() -> String {
        fs::read_to_string(shipped_cfg_path()).unwrap()
    }

    #[test]
    fn the_shipped_script_gets_the_board_lines() {
        let cfg = board_cfg(&shipped()).unwrap();
        assert!(cfg.contains("set bascule_root_A=/dev/vda2\n"), "{cfg}");
        assert!(cfg.contains("set timeout=0\n"));
        assert!(!cfg.contains("set timeout=3"));
        assert!(cfg.contains("console=ttyS0\"\n"));
        let a = cfg.find("echo \"bascule: booting slot A\"").unwrap();
        let linux_a = cfg.find("linux (hd0,gpt2)/boot/vmlinuz").unwrap();
        assert!(a < linux_a);
        assert!(cfg.contains("echo \"bascule: booting slot B\""));
    }

    #[test]
    fn a_script_without_its_timeout_line_is_refused() {
        let text = shipped().replace("set timeout=3", "set timeout=5");
        assert!(matches!(board_cfg(&text), Err(GuestError::GrubCfg(_))));
    }

    #[test]
    fn an_entry_booting_another_partition_is_refused() {
        let text = shipped().replace("(hd0,gpt3)", "(hd0,gpt4)");
        assert!(matches!(board_cfg(&text), Err(GuestError::GrubCfg(_))));
    }
}

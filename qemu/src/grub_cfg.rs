//! The shipped `bootloader/grub/grub.cfg`, made observable for the differential run.
//!
//! The harness runs the shipped script unchanged except for these transformations,
//! each checked to apply exactly once (so a changed script fails loudly instead of
//! being run half-transformed):
//!
//! 1. `set timeout=3` (the first `set timeout=` line) becomes `set timeout=0`, so the
//!    default entry boots at once instead of after the menu's countdown;
//! 2. the body of every `menuentry` is replaced by `echo "<marker> <slot>"` and
//!    `halt`, where `<slot>` is the `bascule.slot=` value the entry passes to the
//!    kernel: the serial console then names the slot GRUB picked, and `halt` (EFI
//!    reset-system shutdown) ends QEMU. The entry's title is kept.
//!
//! Where the environment is loaded and stored is NOT changed: the script's plain
//! `load_env`/`save_env` use `grubenv` in the directory of `grub.cfg`, and the fallback
//! `load_env -f` names `grubenv.good` in `$prefix`; the harness puts `grub.cfg`,
//! `grubenv` and `grubenv.good` in the ESP's `/EFI/BOOT`, GRUB's prefix.
//!
//! The script's `reboot` (no slot left) is not changed either: QEMU runs with
//! `-no-reboot`, so a reboot ends QEMU without a marker, and the harness boots again to
//! see the next decision, as a real machine would.
use bascule_partitions::SlotName;

/// Start of the line a transformed menu entry prints on the serial console.
pub const BOOT_MARKER: &str = "@@grub-diff boot";

/// Why the shipped script could not be transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfgError {
    #[error("grub.cfg has no `set timeout=` line to set to 0")]
    NoTimeout,
    #[error("grub.cfg has no menuentry")]
    NoMenuEntry,
    #[error("grub.cfg: the menuentry at line {line} never closes with a `}}` line")]
    UnclosedEntry { line: usize },
    #[error("grub.cfg: the menuentry at line {line} passes no bascule.slot=A or =B")]
    EntryWithoutSlot { line: usize },
}

/// The shipped script with the transformations of the module docs applied.
pub fn transform(shipped: &str) -> Result<String, CfgError> {
    let lines: Vec<&str> = shipped.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut timeout_done = false;
    let mut entries = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if !timeout_done && trimmed.starts_with("set timeout=") {
            out.push("set timeout=0".to_string());
            timeout_done = true;
        } else if trimmed.starts_with("menuentry ") && trimmed.ends_with('{') {
            let end = entry_end(&lines, i)?;
            let slot =
                entry_slot(&lines[i + 1..end]).ok_or(CfgError::EntryWithoutSlot { line: i + 1 })?;
            out.push(line.to_string());
            out.push(format!("    echo \"{BOOT_MARKER} {slot}\""));
            out.push("    halt".to_string());
            out.push(lines[end].to_string());
            entries += 1;
            i = end;
        } else {
            out.push(line.to_string());
        }
        i += 1;
    }
    if !timeout_done {
        return Err(CfgError::NoTimeout);
    }
    if entries == 0 {
        return Err(CfgError::NoMenuEntry);
    }
    Ok(out.join("\n") + "\n")
}

/// Index of the `}` line closing the entry opened at `start`.
fn entry_end(lines: &[&str], start: usize) -> Result<usize, CfgError> {
    lines[start + 1..]
        .iter()
        .position(|l| l.trim() == "}")
        .map(|p| start + 1 + p)
        .ok_or(CfgError::UnclosedEntry { line: start + 1 })
}

/// The slot named by `bascule.slot=` in an entry's body.
fn entry_slot(body: &[&str]) -> Option<SlotName> {
    body.iter()
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix("bascule.slot="))
        .and_then(|v| v.parse().ok())
}

/// The slot named by the boot marker in a serial console transcript, if any.
pub fn booted_slot(serial: &str) -> Option<SlotName> {
    serial.lines().find_map(|l| {
        let rest = l.split(BOOT_MARKER).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../bootloader/grub/grub.cfg");

    #[test]
    fn shipped_script_transforms_and_keeps_its_logic() {
        let cfg = transform(SHIPPED).unwrap();
        assert!(cfg.contains("set timeout=0\n"));
        assert!(!cfg.contains("set timeout=3"));
        assert!(cfg.contains(&format!("echo \"{BOOT_MARKER} A\"")));
        assert!(cfg.contains(&format!("echo \"{BOOT_MARKER} B\"")));
        assert!(!cfg.contains("linux "), "entry bodies replaced");
        for logic in [
            "load_env",
            "save_env A_TRY B_TRY",
            "reboot",
            "for SLOT in $ORDER",
        ] {
            assert!(cfg.contains(logic), "{logic} kept");
        }
    }

    #[test]
    fn transform_refuses_what_it_cannot_apply() {
        assert_eq!(
            transform("menuentry x {\n bascule.slot=A\n}\n"),
            Err(CfgError::NoTimeout)
        );
        assert_eq!(transform("set timeout=3\n"), Err(CfgError::NoMenuEntry));
        assert_eq!(
            transform("set timeout=3\nmenuentry x {\n linux /v\n"),
            Err(CfgError::UnclosedEntry { line: 2 })
        );
        assert_eq!(
            transform("set timeout=3\nmenuentry x {\n linux /v\n}\n"),
            Err(CfgError::EntryWithoutSlot { line: 2 })
        );
    }

    #[test]
    fn marker_is_found_among_console_noise() {
        let serial = "\x1b[2J  Booting `Slot B'\r\n\r@@grub-diff boot B\r\n";
        assert_eq!(booted_slot(serial), Some(SlotName::B));
        assert_eq!(booted_slot("Welcome to GRUB!\r\n"), None);
    }
}

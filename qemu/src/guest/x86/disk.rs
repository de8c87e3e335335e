//! Makes a fresh x86_64 guest disk: the factory image with v1 in slot A, by
//! `bascule provision` from `qemu/layouts/x86_64.toml` ([`crate::guest::factory`]):
//! the ESP as FAT holding `BOOTX64.EFI`, the board's `grub.cfg`, and the `grubenv`
//! (with its fallback `grubenv.good`) that provisioning's env step writes with A good.
use std::path::Path;

use super::error::X86Error;
use crate::guest::factory::{provision_disk, Factory};

/// The layout's file name in `qemu/layouts/`.
pub const LAYOUT: &str = "x86_64.toml";

/// What goes on the factory disk.
pub struct DiskInputs<'a> {
    /// The signed bundle of the factory release, for slot A.
    pub bundle: &'a Path,
    /// A directory holding the release key's `*.pub`.
    pub keyring: &'a Path,
    /// `BOOTX64.EFI` and the board's `grub.cfg`.
    pub efi: &'a Path,
    pub grub_cfg: &'a Path,
    /// For temporary files.
    pub work: &'a Path,
}

/// Makes the factory disk at `out`.
pub fn build_disk(out: &Path, inputs: &DiskInputs) -> Result<(), X86Error> {
    provision_disk(
        out,
        &Factory {
            layout: LAYOUT,
            files: &[("BOOTX64.EFI", inputs.efi), ("grub.cfg", inputs.grub_cfg)],
            bundle: inputs.bundle,
            keyring: inputs.keyring,
            defaults: None,
            work: inputs.work,
        },
    )?;
    Ok(())
}

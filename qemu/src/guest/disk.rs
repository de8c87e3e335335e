//! Makes a fresh guest disk: the factory image with v1 in slot A, by `bascule
//! provision` from the platform's layout in `qemu/layouts/` ([`super::factory`]),
//! with the board's files ([`board_files`]) as the layout's sources:
//!
//! - arm64 (`arm64.toml`): the boot-scripts partition's content (the board script and
//!   the shipped `boot.cmd` as `boot.scr`) as the raw image `boot-scripts.bin`, and
//!   the board's default env (`u-boot-initial-env`) kept in the first env, as on a
//!   real board; U-Boot's built-in env goes on a pflash image beside the disk;
//! - x86_64 (`x86_64.toml`): the ESP as FAT holding `BOOTX64.EFI` and the board's
//!   `grub.cfg`; provisioning's env step writes the `grubenv` (with its fallback
//!   `grubenv.good`) with A good.
use std::fs;
use std::path::{Path, PathBuf};

use super::board::{initial_env_text, scripts_partition, write_flash, SaveWrites};
use super::error::{io, GuestError};
use super::factory::{provision_disk, Factory};
use super::platform::Platform;
use super::x86::grub_board::{board_cfg, build_efi, shipped_cfg_path};

/// The board's files, made once per run.
pub struct BoardFiles {
    /// U-Boot's built-in env as a pflash image (arm64 only).
    pub flash: Option<PathBuf>,
    /// The sources the layout names: (name beside the layout, file).
    pub sources: Vec<(&'static str, PathBuf)>,
    /// The board's default env, kept by provisioning (arm64 only).
    pub defaults: Option<PathBuf>,
    /// The boot-scripts partition of the power-cut campaign's board, whose saves
    /// pause between two writes (arm64 only, [`SaveWrites::TornPause`]).
    pub torn_save_scripts: Option<PathBuf>,
}

/// Makes the board's files of `platform` in `work` (see the module docs).
pub fn board_files(platform: Platform, work: &Path) -> Result<BoardFiles, GuestError> {
    match platform {
        Platform::Arm64 => {
            let flash = work.join("flash1.img");
            write_flash(&flash)?;
            let shipped = fs::read_to_string(crate::uboot::shipped_script_path())
                .map_err(io("reading bootloader/uboot/boot.cmd"))?;
            let scripts = work.join("boot-scripts.bin");
            let torn = work.join("boot-scripts-torn-save.bin");
            let defaults = work.join("u-boot-initial-env");
            for (path, bytes) in [
                (
                    &scripts,
                    scripts_partition(&shipped, work, SaveWrites::Whole)?,
                ),
                (
                    &torn,
                    scripts_partition(&shipped, work, SaveWrites::TornPause)?,
                ),
                (&defaults, initial_env_text().into_bytes()),
            ] {
                fs::write(path, bytes).map_err(io(format!("writing {}", path.display())))?;
            }
            Ok(BoardFiles {
                flash: Some(flash),
                sources: vec![("boot-scripts.bin", scripts)],
                defaults: Some(defaults),
                torn_save_scripts: Some(torn),
            })
        }
        Platform::X86_64 => {
            let efi = build_efi(work)?;
            let shipped = fs::read_to_string(shipped_cfg_path())
                .map_err(io("reading bootloader/grub/grub.cfg"))?;
            let cfg = work.join("grub.cfg");
            fs::write(&cfg, board_cfg(&shipped)?).map_err(io("writing the board's grub.cfg"))?;
            Ok(BoardFiles {
                flash: None,
                sources: vec![("BOOTX64.EFI", efi), ("grub.cfg", cfg)],
                defaults: None,
                torn_save_scripts: None,
            })
        }
    }
}

/// What goes on the factory disk.
pub struct DiskInputs<'a> {
    pub platform: Platform,
    /// The signed bundle of the factory release, for slot A.
    pub bundle: &'a Path,
    /// A directory holding the release key's `*.pub`.
    pub keyring: &'a Path,
    pub board: &'a BoardFiles,
    /// For temporary files.
    pub work: &'a Path,
}

/// Makes the factory disk at `out`.
pub fn build_disk(out: &Path, inputs: &DiskInputs) -> Result<(), GuestError> {
    let sources: Vec<(&str, &Path)> = inputs
        .board
        .sources
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    provision_disk(
        out,
        &Factory {
            layout: inputs.platform.layout(),
            files: &sources,
            bundle: inputs.bundle,
            keyring: inputs.keyring,
            defaults: inputs.board.defaults.as_deref(),
            work: inputs.work,
        },
    )?;
    Ok(())
}

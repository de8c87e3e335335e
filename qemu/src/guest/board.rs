//! The board: what a U-Boot board of this layout would have built in, made of
//! Debian's `qemu_arm64` U-Boot and three pieces this module writes.
//!
//! 1. **Built-in env** (a read-only pflash image, U-Boot's stored env on this
//!    machine): `bootdelay=0` and a `bootcmd` that reads the board script from the
//!    `boot-scripts` partition and `source`s it. The same variables are the board's
//!    default env (`u-boot-initial-env`) that `bascule init-env` writes into the blank
//!    env: U-Boot on a real board needs its `bootcmd` there.
//! 2. **Board script** ([`board_script`]): loads the *redundant* env from the
//!    `uboot-env` partition as U-Boot's `env_import_redund` and libubootenv do (a
//!    copy with a bad CRC is ignored; of two valid copies the larger flags byte wins,
//!    0x00 beats 0xff, copy 0 wins a tie), defines the board specifics the shipped
//!    script expects (`bascule_load_x`, `bascule_root_x`, `default_bootargs`,
//!    `bascule_boot`) and `bh_save`, then `source`s the shipped script. This U-Boot
//!    cannot keep an env itself (its flash does not save under TCG), so the board
//!    script stands in for `CONFIG_ENV_REDUNDANT` on a block device.
//! 3. **The shipped `bootloader/uboot/boot.cmd`** with `saveenv` replaced by
//!    `run bh_save` ([`crate::uboot::wrap_script`], the only change to its text).
//!    `bh_save` exports the env (`env export -c`), lays it out as a redundant copy with
//!    flags = current + 1 and writes it over the copy that is not current.
//!
//! U-Boot's shell looks a name up in the env before its own locals, so the scratch
//! names all start with `bh_`; they end up saved in the env (as a board's run-time
//! variables do) and are set again on every boot before they are read.
use std::fs;
use std::path::Path;

use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;

use super::layout::{
    ENV, ENV_COPY_1, ENV_SIZE, ROOTFS_A, ROOTFS_B, SCRIPTS, SCRIPT_SECTORS, SECTOR,
};
use crate::uboot::{mkimage_script, wrap_script, UbootError};

/// Where the board script is loaded.
const BOARD_ADDR: u64 = 0x4f00_0000;
/// Where the shipped script is loaded.
const SHIPPED_ADDR: u64 = 0x4f10_0000;
/// Both raw env copies, as read from the disk.
const RAW_ADDR: u64 = 0x5000_0000;
/// Each copy as a single-copy image (CRC + data) that `env import -c` takes.
const SINGLE_ADDR: u64 = 0x5010_0000;
/// `env export -c` output, and the redundant copy built from it.
const EXPORT_ADDR: u64 = 0x5030_0000;
const OUT_ADDR: u64 = 0x5040_0000;
/// Where the kernel `Image` and the initramfs are loaded (the board's stored env
/// replaces U-Boot's compiled-in one, so `kernel_addr_r` and the like are not set).
const KERNEL_ADDR: u64 = 0x4040_0000;
const RAMDISK_ADDR: u64 = 0x4800_0000;
/// U-Boot's `CONFIG_ENV_SIZE` for qemu_arm64: its env at the start of pflash 1.
const FLASH_ENV_SIZE: usize = 0x40000;
const FLASH_SIZE: u64 = 64 << 20;
/// The kernel command line before the shipped script adds the root and the slot.
pub const DEFAULT_BOOTARGS: &str = "console=ttyAMA0 panic=-1 rdinit=/init";

/// The board's built-in env: also its default env for `init-env`.
pub fn builtin_env() -> EnvVars {
    let mut vars = EnvVars::new();
    vars.insert("bootdelay", "0");
    vars.insert(
        "bootcmd",
        format!(
            "virtio scan; part start virtio 0 {} bh_scr_lba; \
             virtio read {BOARD_ADDR:#x} ${{bh_scr_lba}} {SCRIPT_SECTORS:#x}; \
             source {BOARD_ADDR:#x}; echo bh-board: the board script failed; poweroff",
            SCRIPTS.number
        ),
    );
    vars
}

/// The default env as a `u-boot-initial-env` file (`name=value` lines).
pub fn initial_env_text() -> String {
    builtin_env()
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}\n",
                String::from_utf8_lossy(k.as_ref()),
                String::from_utf8_lossy(v.as_ref())
            )
        })
        .collect()
}

/// Writes the read-only pflash image that holds the built-in env.
pub fn write_flash(path: &Path) -> Result<(), UbootError> {
    let codec = UbootCodec::new(FLASH_ENV_SIZE, false).expect("a valid env size");
    let env = codec
        .encode(&builtin_env(), 0)
        .expect("the built-in env fits its flash");
    let file = fs::File::create(path).map_err(|source| UbootError::Io {
        what: format!("creating {}", path.display()),
        source,
    })?;
    use std::io::Write;
    (&file)
        .write_all(&env)
        .and_then(|()| file.set_len(FLASH_SIZE))
        .map_err(|source| UbootError::Io {
            what: format!("writing {}", path.display()),
            source,
        })
}

/// Sectors of one env copy; its data length in a single-copy image (`size - 1`:
/// without the flags byte).
const ENV_SECTORS: u64 = ENV_SIZE / SECTOR;
const SINGLE_LEN: u64 = ENV_SIZE - 1;
const DATA_LEN: u64 = ENV_SIZE - 5;

/// Picks the current copy into `bh_cur` (0, 1 or `none`) and its flags into
/// `bh_curf`, from the raw copies in memory only (so it can run again after the
/// import, which may bring stale `bh_` values from the saved env).
fn choose_copy() -> String {
    let s0 = SINGLE_ADDR;
    let s1 = SINGLE_ADDR + ENV_COPY_1;
    let f0 = RAW_ADDR + 4;
    let f1 = RAW_ADDR + ENV_COPY_1 + 4;
    format!(
        "setenv bh_v0 0\nsetenv bh_v1 0\n\
         if env import -c {s0:#x} {SINGLE_LEN:#x} bh_probe; then setenv bh_v0 1; fi\n\
         if env import -c {s1:#x} {SINGLE_LEN:#x} bh_probe; then setenv bh_v1 1; fi\n\
         setexpr.b bh_f0 *{f0:#x}\nsetexpr.b bh_f1 *{f1:#x}\n\
         setenv bh_cur none\n\
         if test ${{bh_v0}} = 1 && test ${{bh_v1}} = 1; then\n\
         \x20 if itest ${{bh_f0}} -eq 0xff && itest ${{bh_f1}} -eq 0; then setenv bh_cur 1\n\
         \x20 elif itest ${{bh_f1}} -eq 0xff && itest ${{bh_f0}} -eq 0; then setenv bh_cur 0\n\
         \x20 elif itest ${{bh_f1}} -gt ${{bh_f0}}; then setenv bh_cur 1\n\
         \x20 else setenv bh_cur 0; fi\n\
         elif test ${{bh_v0}} = 1; then setenv bh_cur 0\n\
         elif test ${{bh_v1}} = 1; then setenv bh_cur 1\n\
         fi\n\
         if test ${{bh_cur}} = 0; then setenv bh_curf ${{bh_f0}}\n\
         elif test ${{bh_cur}} = 1; then setenv bh_curf ${{bh_f1}}\n\
         else setenv bh_curf 0; fi\n"
    )
}

/// The board script (see the module docs), its saves written as `writes` says.
pub fn board_script(writes: SaveWrites) -> String {
    let copy1_data = RAW_ADDR + ENV_COPY_1;
    let single1 = SINGLE_ADDR + ENV_COPY_1;
    let mut s = format!(
        "echo bh-board: loading the env\n\
         part start virtio 0 {env} bh_env_lba\n\
         virtio read {RAW_ADDR:#x} ${{bh_env_lba}} {both:#x}\n\
         cp.l {RAW_ADDR:#x} {SINGLE_ADDR:#x} 1\n\
         cp.b {src0:#x} {dst0:#x} {DATA_LEN:#x}\n\
         cp.l {copy1_data:#x} {single1:#x} 1\n\
         cp.b {src1:#x} {dst1:#x} {DATA_LEN:#x}\n",
        env = ENV.number,
        both = 2 * ENV_SECTORS,
        src0 = RAW_ADDR + 5,
        dst0 = SINGLE_ADDR + 4,
        src1 = copy1_data + 5,
        dst1 = single1 + 4,
    );
    s.push_str(&choose_copy());
    s.push_str(&format!(
        "if test ${{bh_cur}} = 0; then env import -c {SINGLE_ADDR:#x} {SINGLE_LEN:#x}\n\
         elif test ${{bh_cur}} = 1; then env import -c {single1:#x} {SINGLE_LEN:#x}\n\
         else echo bh-board: no valid env copy, U-Boot runs on its built-in env; fi\n"
    ));
    // Again: the import may have brought the previous boot's bh_ values.
    s.push_str(&choose_copy());
    s.push_str("echo bh-board: env copy ${bh_cur} flags ${bh_curf}\n");
    s.push_str(&board_specifics(writes));
    s.push_str(&format!(
        "setexpr bh_shipped_lba ${{bh_scr_lba}} + {SCRIPT_SECTORS:#x}\n\
         virtio read {SHIPPED_ADDR:#x} ${{bh_shipped_lba}} {SCRIPT_SECTORS:#x}\n\
         source {SHIPPED_ADDR:#x}\n\
         echo bh-board: the shipped script returned without booting\n\
         poweroff\n"
    ));
    s
}

/// How the board's `bh_save` writes the env copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveWrites {
    /// One `virtio write` of the whole copy: the board as shipped to the tests.
    Whole,
    /// The power-cut campaign's board: the copy's first sector (CRC, flags and the
    /// first variables), then [`TORN_SAVE_MARKER`] and a pause of
    /// [`TORN_SAVE_PAUSE_SECS`], then the rest. A cut in the pause leaves the copy
    /// torn, as a power loss in the middle of a real flash write does.
    TornPause,
}

/// What the torn-pause board prints between the two writes of a save.
pub const TORN_SAVE_MARKER: &str = "bh-board: torn save: first sector written";
/// The torn-pause board's pause between the two writes, in seconds.
pub const TORN_SAVE_PAUSE_SECS: u32 = 1;
/// What every save prints when its copy is written.
pub const SAVED_MARKER: &str = "bh-board: env saved";

/// The `virtio write` commands of one save of the copy at `${bh_lba}`.
fn save_writes(writes: SaveWrites) -> String {
    match writes {
        SaveWrites::Whole => format!("virtio write {OUT_ADDR:#x} ${{bh_lba}} {ENV_SECTORS:#x}; "),
        SaveWrites::TornPause => format!(
            "virtio write {OUT_ADDR:#x} ${{bh_lba}} 1; echo {TORN_SAVE_MARKER}; \
             sleep {TORN_SAVE_PAUSE_SECS}; setexpr bh_lba2 ${{bh_lba}} + 1; \
             virtio write {rest_addr:#x} ${{bh_lba2}} {rest:#x}; ",
            rest_addr = OUT_ADDR + SECTOR,
            rest = ENV_SECTORS - 1,
        ),
    }
}

/// What the shipped script expects the board to define, and `bh_save`.
fn board_specifics(writes: SaveWrites) -> String {
    let load = |n: u32| {
        format!(
            "setenv bascule_load_{slot} 'load virtio 0:{n} {KERNEL_ADDR:#x} /boot/Image; \
             load virtio 0:{n} {RAMDISK_ADDR:#x} /boot/initrd.img; \
             setenv bh_rd_size ${{filesize}}'\n",
            slot = if n == ROOTFS_A.number { "A" } else { "B" },
        )
    };
    let mut s = load(ROOTFS_A.number);
    s.push_str(&load(ROOTFS_B.number));
    s.push_str(&format!(
        "setenv bascule_root_A {}\nsetenv bascule_root_B {}\n\
         setenv default_bootargs '{DEFAULT_BOOTARGS}'\n\
         setenv bascule_boot 'booti {KERNEL_ADDR:#x} {RAMDISK_ADDR:#x}:${{bh_rd_size}} \
         ${{fdtcontroladdr}}'\n",
        ROOTFS_A.guest_device(),
        ROOTFS_B.guest_device(),
    ));
    s.push_str(&format!(
        "setenv bh_save 'env export -c -s {SINGLE_LEN:#x} {EXPORT_ADDR:#x}; \
         cp.l {EXPORT_ADDR:#x} {OUT_ADDR:#x} 1; \
         cp.b {exp_data:#x} {out_data:#x} {DATA_LEN:#x}; \
         setexpr bh_nf ${{bh_curf}} + 1; mw.b {out_flag:#x} ${{bh_nf}}; \
         if test ${{bh_cur}} = 0; then setexpr bh_lba ${{bh_env_lba}} + {c1:#x}; setenv bh_cur 1; \
         else setenv bh_lba ${{bh_env_lba}}; setenv bh_cur 0; fi; \
         {writes}setenv bh_curf ${{bh_nf}}; echo {SAVED_MARKER}'\n",
        writes = save_writes(writes),
        exp_data = EXPORT_ADDR + 4,
        out_data = OUT_ADDR + 5,
        out_flag = OUT_ADDR + 4,
        c1 = ENV_COPY_1 / SECTOR,
    ));
    s
}

/// The `boot-scripts` partition's content: the board script (its saves written as
/// `writes` says), then the wrapped shipped script, each as a `mkimage` script image
/// in its own area.
pub fn scripts_partition(
    shipped: &str,
    work: &Path,
    writes: SaveWrites,
) -> Result<Vec<u8>, UbootError> {
    let mkimage = crate::tools::MKIMAGE.find()?;
    let board = mkimage_script(&mkimage, work, "board", &board_script(writes))?;
    let boot = mkimage_script(&mkimage, work, "boot", &wrap_script(shipped))?;
    let area = (SCRIPT_SECTORS * SECTOR) as usize;
    for (what, image) in [("the board script", &board), ("the boot script", &boot)] {
        if image.len() > area {
            return Err(UbootError::TooLarge {
                what,
                len: image.len(),
                max: area,
            });
        }
    }
    let mut out = vec![0u8; 2 * area];
    out[..board.len()].copy_from_slice(&board);
    out[area..area + boot.len()].copy_from_slice(&boot);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_save_writes_the_copy_that_is_not_current() {
        let s = board_specifics(SaveWrites::Whole);
        assert!(s.contains("if test ${bh_cur} = 0; then setexpr bh_lba ${bh_env_lba} + 0x20"));
        assert!(s.contains(&format!("virtio write {OUT_ADDR:#x} ${{bh_lba}} 0x20")));
        assert!(!s.contains("sleep"));
    }

    /// The torn-pause board writes the same 32 sectors, in two writes around its
    /// marker and pause.
    #[test]
    fn the_torn_pause_save_writes_the_copy_in_two_parts() {
        let s = board_specifics(SaveWrites::TornPause);
        let first = s
            .find(&format!("virtio write {OUT_ADDR:#x} ${{bh_lba}} 1;"))
            .unwrap();
        let marker = s.find(TORN_SAVE_MARKER).unwrap();
        let pause = s.find(&format!("sleep {TORN_SAVE_PAUSE_SECS};")).unwrap();
        let rest = s
            .find(&format!(
                "virtio write {:#x} ${{bh_lba2}} 0x1f;",
                OUT_ADDR + 0x200
            ))
            .unwrap();
        let saved = s.find(SAVED_MARKER).unwrap();
        assert!(
            first < marker && marker < pause && pause < rest && rest < saved,
            "{s}"
        );
    }

    #[test]
    fn the_default_env_has_a_bootcmd() {
        let text = initial_env_text();
        assert!(text.contains("bootcmd=virtio scan;"), "{text}");
        assert!(text.contains("bootdelay=0\n"), "{text}");
    }
}

//! Interoperability of `GptAttrEnv` with ChromeOS `cgpt` (Debian package `cgpt`) and
//! `sgdisk` (Debian `gdisk`) on disk-image files: what bascule commits, `cgpt show`
//! reads; what `cgpt add` writes, bascule loads (and bascule's `BASCULE_*` selector
//! survives it); after bascule's commits, `sgdisk -v` and `cgpt show` find both GPT
//! copies and their CRCs valid. A test whose tool is missing fails (see `tool`).
#[path = "gpt_disk.rs"]
mod gpt_disk;
#[path = "tool/mod.rs"]
mod tool;

use std::path::Path;
use std::process::Command;

use bascule_hal::gpt::GptAttrEnv;
use bascule_hal::{EnvStore, EnvVars, FileBlock};
use gpt_disk::{boot_vars, disk, layout};

/// Runs `tool args...`; panics with its output when it fails.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {text}");
    text
}

fn open(path: &Path) -> GptAttrEnv<FileBlock> {
    let dev = FileBlock::open(path, 0, None, true).unwrap();
    GptAttrEnv::new(dev, layout(true)).unwrap()
}

/// `cgpt show -i N -P|-T|-S FILE` for partition `n`: [priority, tries, successful].
fn cgpt_fields(path: &Path, n: u32) -> [u8; 3] {
    let file = path.to_str().unwrap();
    let index = n.to_string();
    ["-P", "-T", "-S"].map(|flag| {
        let out = run("cgpt", &["show", "-i", &index, flag, file]);
        out.trim().parse().unwrap()
    })
}

fn image_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    tmp
}

fn with_bascule(mut v: EnvVars) -> EnvVars {
    v.insert("BASCULE_PENDING", "B");
    v.insert("BASCULE_B_VERSION", "2.0.0");
    v
}

#[test]
fn cgpt_reads_what_bascule_commits() {
    if !tool::require("cgpt", "cgpt") {
        return;
    }
    let tmp = image_file(&disk(512, true));
    let mut env = open(tmp.path());
    env.commit(&with_bascule(boot_vars([3, 7, 0], [1, 0, 1])))
        .unwrap();
    assert_eq!(cgpt_fields(tmp.path(), 1), [3, 7, 0]);
    assert_eq!(cgpt_fields(tmp.path(), 2), [1, 0, 1]);
    env.commit(&with_bascule(boot_vars([15, 15, 1], [0, 0, 0])))
        .unwrap();
    assert_eq!(cgpt_fields(tmp.path(), 1), [15, 15, 1]);
    assert_eq!(cgpt_fields(tmp.path(), 2), [0, 0, 0]);
    let show = run("cgpt", &["show", tmp.path().to_str().unwrap()]);
    assert!(
        !show.contains("INVALID") && !show.contains("WARNING"),
        "{show}"
    );
}

#[test]
fn bascule_reads_what_cgpt_writes_and_keeps_its_own_vars() {
    if !tool::require("cgpt", "cgpt") {
        return;
    }
    let tmp = image_file(&disk(512, true));
    let file = tmp.path().to_str().unwrap();
    let mine = with_bascule(boot_vars([1, 0, 1], [0, 0, 0]));
    open(tmp.path()).commit(&mine).unwrap();
    // The firmware's and cgpt's changes rewrite both tables; the bascule-env
    // selector bit (another entry) must survive them.
    run(
        "cgpt",
        &["add", "-i", "2", "-P", "2", "-T", "5", "-S", "0", file],
    );
    let mut expected = with_bascule(boot_vars([1, 0, 1], [2, 5, 0]));
    assert_eq!(open(tmp.path()).load().unwrap(), expected);
    run("cgpt", &["prioritize", "-i", "1", file]);
    let loaded = open(tmp.path()).load().unwrap();
    assert_eq!(loaded["GPT_A_PRIORITY"], "2");
    assert_eq!(loaded["GPT_B_PRIORITY"], "1");
    expected.insert("GPT_A_PRIORITY", "2");
    expected.insert("GPT_B_PRIORITY", "1");
    assert_eq!(loaded, expected);
}

#[test]
fn sgdisk_finds_no_problem_after_bascule_commits() {
    if !tool::require("sgdisk", "gdisk") || !tool::require("cgpt", "cgpt") {
        return;
    }
    let tmp = tempfile::NamedTempFile::new().unwrap();
    tmp.as_file().set_len(4 << 20).unwrap();
    let file = tmp.path().to_str().unwrap();
    run(
        "sgdisk",
        &[
            "-o",
            "-n",
            "1:2048:+512K",
            "-c",
            "1:rootfs-a",
            "-t",
            "1:7f00",
            "-n",
            "2:0:+512K",
            "-c",
            "2:rootfs-b",
            "-t",
            "2:7f00",
            "-n",
            "3:0:+64K",
            "-c",
            "3:bascule-env",
            "-t",
            "3:8301",
            "-n",
            "4:0:+256K",
            "-c",
            "4:data",
            "-A",
            "1:set:2",
            "-A",
            "4:set:63",
            file,
        ],
    );
    let before = run("sgdisk", &["-A", "1:show", "-A", "4:show", file]);
    for state in [
        with_bascule(boot_vars([2, 0, 1], [1, 0, 1])),
        with_bascule(boot_vars([1, 0, 1], [2, 6, 0])),
        with_bascule(boot_vars([0, 0, 0], [3, 0, 1])),
    ] {
        let mut env = open(tmp.path());
        env.commit(&state).unwrap();
        assert_eq!(env.load().unwrap(), state);
        let verify = run("sgdisk", &["-v", file]);
        assert!(verify.contains("No problems found"), "{verify}");
        for bad in ["Warning", "Caution", "ERROR", "CRC", "Problem"] {
            assert!(!verify.contains(bad), "sgdisk -v says {bad}: {verify}");
        }
    }
    // Foreign attribute bits (legacy BIOS bootable, bit 63) are untouched.
    let after = run("sgdisk", &["-A", "1:show", "-A", "4:show", file]);
    assert!(
        before.contains("1:2:1") && after.contains("1:2:1"),
        "{after}"
    );
    assert!(after.contains("4:63:1"), "{after}");
    assert_eq!(cgpt_fields(tmp.path(), 1), [0, 0, 0]);
    assert_eq!(cgpt_fields(tmp.path(), 2), [3, 0, 1]);
}

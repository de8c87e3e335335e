//! Which copy of a redundant U-Boot env is current: bascule-hal's `UbootEnv::load`
//! against Debian's `fw_printenv` (libubootenv), over flag orders, the 0xff/0x00 wrap,
//! equal flags, torn copies and a newer copy holding a non-UTF-8 byte. The shipped
//! boot script reads one copy only (`env import -c`), so this is checked without QEMU.
//! (Single-copy and tool round trips are in hal/tests/uboot_interop.rs.)
//! Fails, never skips, when `fw_printenv` is missing.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bascule_hal::env::codec::crc32;
use bascule_hal::env::uboot::{UbootEnv, UbootLayout};
use bascule_hal::{EnvStore, FileBlock};
use bascule_qemu::tools::FW_PRINTENV;

const SIZE: usize = 0x1000;
const LAYOUT: UbootLayout = UbootLayout {
    offset: 0x2000,
    size: SIZE,
    redundant_offset: Some(0x4000),
};

type ByteVars = BTreeMap<Vec<u8>, Vec<u8>>;

/// One stored copy: valid with these entries and flags, or torn (bad CRC).
#[derive(Clone, Copy)]
enum Copy {
    Valid(&'static [&'static [u8]], u8),
    Torn(&'static [&'static [u8]], u8),
}

const OLD: &[&[u8]] = &[b"BOOT_ORDER=A B", b"BOOT_A_LEFT=3", b"copy=old"];
const NEW: &[&[u8]] = &[b"BOOT_ORDER=B A", b"BOOT_B_LEFT=3", b"copy=new"];
const NEW_LATIN1: &[&[u8]] = &[b"BOOT_ORDER=B A", b"copy=new", b"vendor_note=caf\xe9"];

/// A redundant copy built byte by byte (any byte in a value).
fn copy_bytes(copy: Copy) -> Vec<u8> {
    let (entries, flags, torn) = match copy {
        Copy::Valid(e, f) => (e, f, false),
        Copy::Torn(e, f) => (e, f, true),
    };
    let mut data = Vec::new();
    for entry in entries {
        data.extend_from_slice(entry);
        data.push(0);
    }
    data.push(0);
    data.resize(SIZE - 5, 0);
    let mut out = crc32(&data).to_le_bytes().to_vec();
    out.push(flags);
    out.extend_from_slice(&data);
    if torn {
        out[SIZE / 2] ^= 0xa5;
    }
    out
}

fn write_image(path: &Path, copies: [Copy; 2]) {
    let mut image = vec![0u8; 0x8000];
    for (offset, copy) in LAYOUT.copies().into_iter().zip(copies) {
        let at = offset as usize;
        image[at..at + SIZE].copy_from_slice(&copy_bytes(copy));
    }
    std::fs::write(path, image).unwrap();
}

/// `fw_printenv`'s variables, or its error message.
fn fw_printenv(config: &Path) -> Result<ByteVars, String> {
    let tool = FW_PRINTENV.find().unwrap();
    let out = Command::new(tool).arg("-c").arg(config).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let eq = line.iter().position(|&b| b == b'=')?;
            Some((line[..eq].to_vec(), line[eq + 1..].to_vec()))
        })
        .collect())
}

fn bascule_load(image: &Path) -> Result<ByteVars, String> {
    let dev = FileBlock::open(image, 0, None, false).unwrap();
    let mut env = UbootEnv::new(dev, LAYOUT).unwrap();
    env.load()
        .map(|vars| {
            vars.into_iter()
                .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
                .collect()
        })
        .map_err(|e| e.to_string())
}

fn show(vars: &Result<ByteVars, String>) -> String {
    match vars {
        Ok(vars) => vars
            .iter()
            .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), v.escape_ascii()))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("error: {}", e.trim()),
    }
}

#[test]
fn bascule_and_fw_printenv_pick_the_same_redundant_copy() {
    let cases: &[(&str, [Copy; 2])] = &[
        ("flags 0/1", [Copy::Valid(OLD, 0), Copy::Valid(NEW, 1)]),
        ("flags 1/0", [Copy::Valid(NEW, 1), Copy::Valid(OLD, 0)]),
        ("flags 5/6", [Copy::Valid(OLD, 5), Copy::Valid(NEW, 6)]),
        (
            "flags 0xff/0x00 wrap",
            [Copy::Valid(OLD, 0xff), Copy::Valid(NEW, 0)],
        ),
        (
            "flags 0x00/0xff wrap",
            [Copy::Valid(NEW, 0), Copy::Valid(OLD, 0xff)],
        ),
        (
            "flags 0xfe/0xff",
            [Copy::Valid(OLD, 0xfe), Copy::Valid(NEW, 0xff)],
        ),
        (
            "equal flags 3/3",
            [Copy::Valid(OLD, 3), Copy::Valid(NEW, 3)],
        ),
        ("newer copy torn", [Copy::Valid(OLD, 1), Copy::Torn(NEW, 2)]),
        ("older copy torn", [Copy::Torn(OLD, 1), Copy::Valid(NEW, 2)]),
        ("both torn", [Copy::Torn(OLD, 1), Copy::Torn(NEW, 2)]),
        (
            "newer copy non-UTF-8",
            [Copy::Valid(OLD, 1), Copy::Valid(NEW_LATIN1, 2)],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("env.img");
    let config = dir.path().join("fw_env.config");
    std::fs::write(&config, LAYOUT.fw_env_config(image.to_str().unwrap(), None)).unwrap();
    let mut disagreements = Vec::new();
    for (name, copies) in cases {
        write_image(&image, *copies);
        let theirs = fw_printenv(&config);
        let ours = bascule_load(&image);
        let agree = match (&theirs, &ours) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if !agree {
            disagreements.push(format!(
                "{name}:\n  fw_printenv: {}\n  bascule:     {}",
                show(&theirs),
                show(&ours)
            ));
        }
    }
    println!(
        "redundant envs {}, disagreements {}",
        cases.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

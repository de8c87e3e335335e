//! Installing streams: the installer's peak resident memory stays a few chunks,
//! whatever the image size. Installs a large random-ish image (runs of random bytes
//! and runs of zeros) with each compression and measures the child's peak RSS.
//!
//! The image size is `BASCULE_MEM_TEST_MIB` MiB (default 256); the slot is that
//! size too. Peak RSS comes from `/usr/bin/time -f %M` when present, else from
//! polling `VmHWM` in `/proc/<pid>/status`.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bascule::slot::SlotState;
use bascule_partitions::SlotName;
use common::{BundleOpts, Fixture, XorShift};

/// The installer must stay below this, in KiB.
const RSS_LIMIT_KIB: u64 = 32 * 1024;
const DEFAULT_MIB: u64 = 256;
const SEGMENT: usize = 64 << 10;

fn image_mib() -> u64 {
    match std::env::var("BASCULE_MEM_TEST_MIB") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("BASCULE_MEM_TEST_MIB={v:?} is not a number of MiB")),
        Err(_) => DEFAULT_MIB,
    }
}

/// Writes `len` bytes in 64 KiB segments, streamed to disk without holding the image
/// in memory: about a fifth of them zeros, the rest drawn from a small pool of
/// xorshift segments (cheap to make in a debug build), each stamped with its index so
/// no two segments are equal.
fn write_image(path: &Path, len: u64, seed: u64) {
    const POOL: usize = 16;
    let file = std::fs::File::create(path).expect("create image");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let pool: Vec<Vec<u8>> = (0..POOL as u64)
        .map(|i| common::xorshift_bytes(seed ^ (i << 32), SEGMENT))
        .collect();
    let mut rng = XorShift::new(seed);
    let mut segment = vec![0u8; SEGMENT];
    let (mut left, mut index) = (len, 0u64);
    while left > 0 {
        let n = left.min(SEGMENT as u64) as usize;
        let r = rng.next_u64();
        if r.is_multiple_of(5) {
            segment.fill(0);
        } else {
            segment.copy_from_slice(&pool[(r >> 8) as usize % POOL]);
            segment[..8].copy_from_slice(&index.to_le_bytes());
        }
        out.write_all(&segment[..n]).expect("write image");
        left -= n as u64;
        index += 1;
    }
    out.flush().expect("flush image");
}

/// Runs `cmd` and returns (exit success, stderr, peak RSS in KiB).
fn run_measured(fx: &Fixture, args: &[&str]) -> (bool, String, u64) {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let report = fx.path("rss.txt");
        let mut cmd = Command::new(time);
        cmd.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&report)
            .arg(env!("CARGO_BIN_EXE_bascule"))
            .args(args)
            .env("BASCULE_CONFIG", fx.config())
            .stdin(Stdio::null());
        let out = cmd.output().expect("spawn /usr/bin/time");
        let text = std::fs::read_to_string(&report).expect("read rss report");
        let kib = text
            .lines()
            .rev()
            .find_map(|l| l.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no RSS figure in {text:?}"));
        return (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            kib,
        );
    }
    let mut child = fx
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bascule");
    let status_path = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().expect("wait bascule") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        drop(e.read_to_string(&mut stderr));
    }
    (status.success(), stderr, peak)
}

fn install_large(compress: &'static str) {
    let mib = image_mib();
    let len = mib << 20;
    let fx = Fixture::with_slot_size(len);
    let image = fx.path("images/large.img");
    write_image(&image, len, 0x5eed);
    let bundle = fx.bundle(
        &image,
        &BundleOpts::default().compress(compress).chunk_size(1 << 20),
    );
    let a_head = fx.slot_head(SlotName::A, common::PROVISION_RANDOM_MAX.min(len) as usize);
    let bundle_arg = bundle.display().to_string();
    let (ok, stderr, kib) = run_measured(&fx, &["install", &bundle_arg, "--progress", "none"]);
    assert!(ok, "install failed:\n{stderr}");
    eprintln!("peak RSS installing {mib} MiB ({compress}): {kib} KiB");
    assert!(kib > 0, "no RSS measured");
    assert!(
        kib < RSS_LIMIT_KIB,
        "installing {mib} MiB ({compress}) peaked at {kib} KiB, limit {RSS_LIMIT_KIB} KiB"
    );
    assert!(
        fx.slot_holds(SlotName::B, &image),
        "slot B does not hold the image"
    );
    assert!(
        fx.slot_head(SlotName::A, a_head.len()) == a_head,
        "booted slot A was modified"
    );
    assert_eq!(
        fx.slot_state(SlotName::B),
        SlotState::Pending {
            tries_left: common::ATTEMPTS
        }
    );
}

#[test]
fn large_zstd_install_stays_under_32_mib() {
    install_large("zstd");
}

#[test]
fn large_xz_install_stays_under_32_mib() {
    install_large("xz");
}

#[test]
fn large_uncompressed_install_stays_under_32_mib() {
    install_large("none");
}

/// `bascule provision` of an image file whose slot A receives the large image (the
/// bundle read twice: checked in full, then written; the slot hashed back).
#[test]
fn large_provision_stays_under_32_mib() {
    let mib = image_mib();
    let len = mib << 20;
    let fx = Fixture::new();
    let image = fx.path("images/large.img");
    write_image(&image, len, 0x5eed);
    let bundle = fx.bundle(&image, &BundleOpts::default().chunk_size(1 << 20));
    let layout = format!(
        "compatible = {:?}\n[disk]\nsize = \"{}MiB\"\n\
         [[partition]]\nname = \"rootfs-a\"\ntype = \"linux\"\nsize = \"{mib}MiB\"\n\
         [[partition]]\nname = \"rootfs-b\"\ntype = \"linux\"\nsize = \"1MiB\"\n\
         [[partition]]\nname = \"data\"\ntype = \"linux\"\nsize = \"rest\"\n\
         [slots.rootfs]\nA = \"rootfs-a\"\nB = \"rootfs-b\"\n[data]\npartition = \"data\"\n\
         [bootenv]\nbackend = \"native\"\noffset = \"512KiB\"\nsecond_offset = \"768KiB\"\nsize = \"16KiB\"\n",
        common::COMPATIBLE,
        mib + 16
    );
    std::fs::write(fx.path("layout.toml"), layout).unwrap();
    let (layout, disk) = (fx.path("layout.toml"), fx.path("provisioned.img"));
    let bundle_arg = format!("rootfs={}", bundle.display());
    let args = [
        "provision",
        "--layout",
        &layout.display().to_string(),
        "--disk",
        &disk.display().to_string(),
        "--bundle",
        &bundle_arg,
        "--keyring",
        &fx.path("keyring").display().to_string(),
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stderr, kib) = run_measured(&fx, &args);
    assert!(ok, "provision failed:\n{stderr}");
    eprintln!("peak RSS provisioning {mib} MiB: {kib} KiB");
    assert!(kib > 0, "no RSS measured");
    assert!(
        kib < RSS_LIMIT_KIB,
        "provisioning {mib} MiB peaked at {kib} KiB, limit {RSS_LIMIT_KIB} KiB"
    );
    let mut a = std::fs::File::open(&disk).unwrap();
    let mut head = vec![0u8; 1 << 20];
    use std::io::{Read, Seek};
    a.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
    a.read_exact(&mut head).unwrap();
    let mut want = vec![0u8; 1 << 20];
    std::fs::File::open(&image)
        .unwrap()
        .read_exact(&mut want)
        .unwrap();
    assert!(head == want, "slot A does not start with the image");
}

//! What `bascule provision` refuses, each leaving the disk as it was: a truncated,
//! corrupt, foreign-key or wrong-board bundle; a disk holding another partition table
//! (without `--force`); a mounted device, or an image file mounted through a loop
//! device (even with `--force`); a missing target of a "device"-sized layout; and each
//! bad layout, with a message naming the partition. A missing tool fails the test.
mod common;
mod provision_station;
#[path = "../hal/tests/tool/mod.rs"]
mod tool;

use std::path::{Path, PathBuf};
use std::process::Command;

use provision_station::*;

/// A file system this test mounted; unmounted when dropped (which also detaches the
/// loop device `mount -o loop` attached).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.0).status();
        assert!(
            done.is_ok_and(|s| s.success()),
            "umount {}",
            self.0.display()
        );
    }
}

#[test]
fn a_bad_bundle_leaves_the_disk_untouched() {
    let st = Station::new(LAYOUT);
    let bytes = std::fs::read(st.path("v1.bascule")).unwrap();
    std::fs::write(st.path("short.bascule"), &bytes[..bytes.len() - 1000]).unwrap();
    st.set_disk(&vec![0u8; 64 << 20]);
    st.provision_with("short.bascule", &[])
        .fails_with(&["short.bascule"]);
    assert!(
        st.disk().iter().all(|&b| b == 0),
        "a truncated bundle wrote to the disk"
    );

    st.bascule(&["keygen", "--out", &st.p("other")]).ok();
    let image = format!("rootfs={}", st.p("root.img"));
    let args = [
        "bundle",
        "create",
        "--key",
        &st.p("other.key"),
        "--version",
        "1.0.0",
    ];
    let mut all = args.to_vec();
    all.extend([
        "--compatible",
        COMPATIBLE,
        "--image",
        &image,
        "--out",
        "foreign.bascule",
    ]);
    st.bascule(&all).ok();
    st.provision_with("foreign.bascule", &[])
        .fails_with(&["foreign.bascule", "key"]);
    st.bundle("root.img", "1.0.0", "other,board", "other.bascule");
    st.provision_with("other.bascule", &[])
        .fails_with(&["compatible"]);
    assert!(
        st.disk().iter().all(|&b| b == 0),
        "a refused bundle wrote to the disk"
    );
}

#[test]
fn a_foreign_disk_is_refused_without_force() {
    if !tool::require("mkfs.ext4", "e2fsprogs") || !tool::require("sgdisk", "gdisk") {
        return;
    }
    let st = Station::new(LAYOUT);
    st.set_disk(&vec![0u8; 64 << 20]);
    tool_output("mkfs.ext4", &["-q", "-F", "disk.img"], st.dir.path());
    let before = st.disk();
    st.provision(&[]).fails_with(&["ext4", "--force"]);
    assert!(st.disk() == before, "a refused disk was written");

    tool_output(
        "sgdisk",
        &["-o", "-n", "1:2048:+1M", "-c", "1:other", "disk.img"],
        st.dir.path(),
    );
    let before = st.disk();
    st.provision(&[])
        .fails_with(&["GPT that is not this layout", "other", "--force"]);
    assert!(st.disk() == before, "a refused disk was written");
    st.provision(&["--force"]).ok();
    st.verify().ok();
}

#[test]
fn a_mounted_or_missing_target_is_refused() {
    let st = Station::new(&LAYOUT.replace("size = \"64MiB\"", "size = \"device\""));
    st.provision(&[])
        .fails_with(&["does not exist", "\"device\""]);
    // The block device holding the tests' own working directory is mounted.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounted = mountinfo.lines().find_map(|l| {
        let source = l.split(" - ").nth(1)?.split(' ').nth(1)?;
        source.starts_with("/dev/").then(|| source.to_string())
    });
    let Some(dev) = mounted.filter(|d| Path::new(d).exists()) else {
        tool::skip_or_fail("no mounted block device to try");
        return;
    };
    st.provision_disk(&dev, &["--force"])
        .fails_with(&["refusing", "mounted", "even with --force"]);
}

#[test]
fn bad_layouts_are_refused_naming_the_partition() {
    let st = Station::new(LAYOUT);
    let cases = [
        (
            "name = \"rootfs-b\"",
            "name = \"rootfs-b\"\nstart = \"20MiB\"",
            "partition \"rootfs-a\" overlaps partition \"rootfs-b\"",
        ),
        (
            "name = \"rootfs-b\"",
            "name = \"rootfs-b\"\nstart = \"25700KiB\"",
            "partition \"rootfs-b\": start 26316800 is not aligned",
        ),
        (
            "name = \"rootfs-b\"",
            "name = \"rootfs-a\"",
            "partition \"rootfs-a\": the name appears twice",
        ),
        (
            "size = \"8MiB\"",
            "size = \"1MiB\"\nimage = \"root.img\"",
            "partition \"boot\" holds 1048576 bytes, too small for its image",
        ),
        (
            "redundant_offset = \"768KiB\"",
            "redundant_offset = \"1020KiB\"",
            "overlaps partition \"boot\"",
        ),
    ];
    for (from, to, message) in cases {
        assert!(LAYOUT.contains(from));
        std::fs::write(st.path("layout.toml"), LAYOUT.replacen(from, to, 1)).unwrap();
        st.provision(&[]).fails_with(&[message]);
    }
}

/// An image file mounted through a loop device is in service like a mounted disk:
/// refused even with `--force`, the message naming the loop device, the file left as
/// it was. Once unmounted, `--force` overwrites it.
#[test]
fn an_image_file_mounted_through_a_loop_device_is_refused() {
    if !tool::require("mount", "mount") || !tool::require("mkfs.ext4", "e2fsprogs") {
        return;
    }
    let st = Station::new(LAYOUT);
    st.set_disk(&vec![0u8; 64 << 20]);
    tool_output("mkfs.ext4", &["-q", "-F", "disk.img"], st.dir.path());
    let mnt = st.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop"])
        .arg(st.path("disk.img"))
        .arg(&mnt)
        .output()
        .unwrap();
    if !out.status.success() {
        tool::skip_or_fail(&format!(
            "mount -o loop failed here: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return;
    }
    let mount = Mount(mnt);
    let before = st.disk();
    st.provision(&["--force"]).fails_with(&[
        "refusing",
        "the loop device backed by this file",
        "is mounted on",
        "even with --force",
    ]);
    assert!(st.disk() == before, "a mounted image file was written");
    drop(mount);
    st.provision(&["--force"]).ok();
    st.verify().ok();
}

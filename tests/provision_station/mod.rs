//! The provisioning station the `provision*` tests share: a directory with a signing
//! key and keyring, the v1 bundle of a 3 MB image, an SPL, a boot script, the device's
//! `system.toml`, the board's default env and a layout; `bascule provision` of its
//! `disk.img` through the binary, and the report it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{xorshift_bytes, Run};

pub const COMPATIBLE: &str = "acme,board";
pub const IMAGE_LEN: usize = 3_000_000;
/// Where slot A (rootfs-a) starts: after the 8 MiB boot partition at 1 MiB.
pub const SLOT_A: u64 = 9 << 20;
pub const ENV_A: u64 = 512 << 10;

pub const LAYOUT: &str = r#"
compatible = "acme,board"
[disk]
size = "64MiB"
[[partition]]
name = "boot"
type = "linux"
size = "8MiB"
[[partition]]
name = "rootfs-a"
type = "linux"
size = "16MiB"
[[partition]]
name = "rootfs-b"
type = "linux"
size = "16MiB"
[[partition]]
name = "data"
type = "linux"
size = "rest"
attributes = [60]
[slots.rootfs]
A = "rootfs-a"
B = "rootfs-b"
[data]
partition = "data"
[bootenv]
backend = "uboot"
offset = "512KiB"
redundant_offset = "768KiB"
size = "16KiB"
[boot]
partition = "boot"
filesystem = "vfat"
[[boot.file]]
source = "boot.scr"
path = "boot.scr"
[[boot.file]]
source = "boot.scr"
path = "extlinux/boot.scr"
[[raw]]
image = "spl.bin"
offset = "32KiB"
[device_config]
partition = "data"
system_toml = "system.toml"
"#;

pub const DEVICE_TOML: &str = r#"
compatible = "acme,board"
keyring = "/data/etc/bascule/keyring"
[bootenv]
backend = "uboot"
path = "/dev/mmcblk0"
offset = 524288
redundant_offset = 786432
size = 16384
[slots.rootfs.A]
device = "/dev/disk/by-partlabel/rootfs-a"
[slots.rootfs.B]
device = "/dev/disk/by-partlabel/rootfs-b"
[data]
device = "/dev/disk/by-partlabel/data"
mount = "/data"
"#;

/// A station directory: keys, a bundle, the board's files and the layout.
pub struct Station {
    pub dir: tempfile::TempDir,
}

impl Station {
    pub fn new(layout: &str) -> Station {
        let st = Station {
            dir: tempfile::tempdir().unwrap(),
        };
        st.bascule(&["keygen", "--out", &st.p("k")]).ok();
        std::fs::create_dir(st.path("keys")).unwrap();
        std::fs::copy(st.path("k.pub"), st.path("keys/k.pub")).unwrap();
        std::fs::write(st.path("root.img"), xorshift_bytes(7, IMAGE_LEN)).unwrap();
        st.bundle("root.img", "1.0.0", COMPATIBLE, "v1.bascule");
        std::fs::write(st.path("spl.bin"), xorshift_bytes(9, 5000)).unwrap();
        std::fs::write(st.path("boot.scr"), "echo booting\n").unwrap();
        std::fs::write(st.path("system.toml"), DEVICE_TOML).unwrap();
        std::fs::write(
            st.path("initial-env"),
            "bootcmd=run distro_bootcmd\nbootdelay=2\nboard_name=acme\n",
        )
        .unwrap();
        std::fs::write(st.path("layout.toml"), layout).unwrap();
        st
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    pub fn bascule(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_bascule"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        Run::from_output(out)
    }

    pub fn bundle(&self, image: &str, version: &str, compatible: &str, out: &str) {
        let image = format!("rootfs={}", self.p(image));
        let args = [
            "bundle",
            "create",
            "--key",
            &self.p("k.key"),
            "--version",
            version,
        ];
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--compatible", compatible, "--image", &image, "--out", out]);
        self.bascule(&all).ok();
    }

    /// `bascule provision` of `disk` with v1's bundle and the keyring, plus `extra`.
    pub fn provision_disk(&self, disk: &str, extra: &[&str]) -> Run {
        self.provision_bundle(disk, "v1.bascule", extra)
    }

    fn provision_bundle(&self, disk: &str, bundle: &str, extra: &[&str]) -> Run {
        let bundle = format!("rootfs={bundle}");
        let mut args = vec!["provision", "--layout", "layout.toml", "--disk", disk];
        args.extend(["--bundle", &bundle, "--keyring", "keys"]);
        args.extend(extra);
        self.bascule(&args)
    }

    /// `bascule provision` of disk.img with bundle `bundle`, the board's defaults and
    /// the report, plus `extra`.
    pub fn provision_with(&self, bundle: &str, extra: &[&str]) -> Run {
        let mut args = vec!["--defaults", "initial-env", "--report", "report.json"];
        args.extend(extra);
        self.provision_bundle("disk.img", bundle, &args)
    }

    pub fn provision(&self, extra: &[&str]) -> Run {
        self.provision_with("v1.bascule", extra)
    }

    pub fn verify(&self) -> Run {
        let args = [
            "provision",
            "--layout",
            "layout.toml",
            "--disk",
            "disk.img",
            "--verify",
        ];
        let mut all = args.to_vec();
        all.extend(["--report", "report.json"]);
        self.bascule(&all)
    }

    pub fn disk(&self) -> Vec<u8> {
        std::fs::read(self.path("disk.img")).unwrap()
    }

    pub fn set_disk(&self, bytes: &[u8]) {
        std::fs::write(self.path("disk.img"), bytes).unwrap();
    }

    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("report.json")).unwrap()).unwrap()
    }
}

/// Runs `tool args`, returns stdout; panics with its output when it fails.
pub fn tool_output(tool: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

//! Interoperability of bascule's U-Boot env with the real tools: `fw_printenv` and
//! `fw_setenv` (libubootenv-tool) and `mkenvimage` (u-boot-tools). A test whose tool is
//! missing fails (see `tool`).
#[path = "tool/mod.rs"]
mod tool;

use std::path::{Path, PathBuf};
use std::process::Command;

use bascule_hal::env::uboot::{UbootCodec, UbootEnv, UbootLayout};
use bascule_hal::{BlockDevice, EnvStore, EnvVars, FileBlock};

const SIZE: usize = 0x1000;

fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs.iter().copied().collect()
}

fn sample() -> EnvVars {
    vars(&[
        ("BOOT_ORDER", "A B"),
        ("BOOT_A_LEFT", "3"),
        ("BOOT_B_LEFT", "0"),
        (
            "bootargs",
            "console=ttyS0,115200 root=/dev/mmcblk0p2 rauc.slot=A",
        ),
        ("empty", ""),
    ])
}

fn single() -> UbootLayout {
    UbootLayout {
        offset: 0x2000,
        size: SIZE,
        redundant_offset: None,
    }
}

fn redundant() -> UbootLayout {
    UbootLayout {
        offset: 0x2000,
        size: SIZE,
        redundant_offset: Some(0x4000),
    }
}

/// A zeroed image file and an `fw_env.config` for `layout` on it.
struct Fixture {
    _dir: tempfile::TempDir,
    image: PathBuf,
    config: PathBuf,
    layout: UbootLayout,
}

impl Fixture {
    fn new(layout: UbootLayout) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("env.img");
        std::fs::write(&image, vec![0u8; 0x8000]).unwrap();
        let config = dir.path().join("fw_env.config");
        let text = layout.fw_env_config(image.to_str().unwrap(), None);
        std::fs::write(&config, text).unwrap();
        Fixture {
            _dir: dir,
            image,
            config,
            layout,
        }
    }

    fn env(&self) -> UbootEnv<FileBlock> {
        let dev = FileBlock::open(&self.image, 0, None, true).unwrap();
        UbootEnv::new(dev, self.layout).unwrap()
    }

    fn printenv(&self) -> EnvVars {
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fw_printenv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_printenv(&out.stdout)
    }

    fn setenv(&self, args: &[&str]) {
        let out = Command::new("fw_setenv")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fw_setenv {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn copy_flags(&self) -> Vec<Option<u8>> {
        let codec = UbootCodec::new(SIZE, true).unwrap();
        let bytes = std::fs::read(&self.image).unwrap();
        self.layout
            .copies()
            .iter()
            .map(|&o| {
                codec
                    .decode(&bytes[o as usize..o as usize + SIZE])
                    .ok()
                    .and_then(|c| c.flags)
            })
            .collect()
    }
}

/// Parses `name=value` lines, as bytes; debug builds of libubootenv also print
/// "Environment OK".
fn parse_printenv(out: &[u8]) -> EnvVars {
    out.split(|&b| b == b'\n')
        .filter_map(|l| {
            let eq = l.iter().position(|&b| b == b'=')?;
            Some((&l[..eq], &l[eq + 1..]))
        })
        .collect()
}

fn mkenvimage(args: &[&str], input: &str, dir: &Path) -> Vec<u8> {
    let txt = dir.join("in.txt");
    let out = dir.join("out.bin");
    std::fs::write(&txt, input).unwrap();
    let status = Command::new("mkenvimage")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(&txt)
        .status()
        .unwrap();
    assert!(status.success(), "mkenvimage {args:?}");
    std::fs::read(out).unwrap()
}

fn as_mkenvimage_input(v: &EnvVars) -> String {
    v.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn bascule_writes_fw_printenv_reads_single_and_redundant() {
    if !tool::require("fw_printenv", "libubootenv-tool") {
        return;
    }
    for layout in [single(), redundant()] {
        let fx = Fixture::new(layout);
        let mut env = fx.env();
        env.commit(&sample()).unwrap();
        assert_eq!(fx.printenv(), sample(), "{layout:?}");
        let mut next = sample();
        next.insert("BOOT_ORDER", "B A");
        env.commit(&next).unwrap();
        assert_eq!(fx.printenv(), next, "{layout:?} second commit");
    }
}

#[test]
fn fw_setenv_writes_bascule_reads_single_and_redundant() {
    if !tool::require("fw_setenv", "libubootenv-tool") {
        return;
    }
    for layout in [single(), redundant()] {
        let fx = Fixture::new(layout);
        fx.env().commit(&sample()).unwrap();
        let mut expected = sample();
        let mut last_flags = fx.copy_flags();
        for i in 0..5 {
            let value = format!("value {i} with spaces = and more");
            fx.setenv(&[&format!("var{i}"), &value]);
            expected.insert(format!("var{i}"), value);
            fx.setenv(&["BOOT_A_LEFT", &format!("{}", 2 - i.min(2))]);
            expected.insert("BOOT_A_LEFT", format!("{}", 2 - i.min(2)));
            assert_eq!(
                fx.env().load().unwrap(),
                expected,
                "{layout:?} after fw_setenv #{i}"
            );
            if layout.redundant_offset.is_some() {
                let flags = fx.copy_flags();
                assert_ne!(
                    flags, last_flags,
                    "fw_setenv must advance the redundant flag"
                );
                last_flags = flags;
            }
        }
        fx.setenv(&["empty"]);
        expected.remove("empty");
        assert_eq!(fx.env().load().unwrap(), expected);
        // And bascule's commit on top of fw_setenv's is what fw_printenv sees.
        expected.insert("BOOT_ORDER", "B");
        fx.env().commit(&expected).unwrap();
        assert_eq!(
            fx.printenv(),
            expected,
            "{layout:?} bascule after fw_setenv"
        );
    }
}

#[test]
fn mkenvimage_output_is_read_single_and_redundant() {
    if !tool::require("mkenvimage", "u-boot-tools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = as_mkenvimage_input(&sample());
    let size = format!("{SIZE:#x}");
    for (flag, layout) in [(None, single()), (Some("-r"), redundant())] {
        let mut args = vec!["-s", size.as_str()];
        args.extend(flag);
        let image = mkenvimage(&args, &input, dir.path());
        assert_eq!(image.len(), SIZE);
        let mut dev = bascule_hal::MemBlock::new("img", 0x8000);
        dev.write_at(layout.offset, &image).unwrap();
        let mut env = UbootEnv::new(dev, layout).unwrap();
        assert_eq!(env.load().unwrap(), sample(), "{flag:?}");
    }
}

#[test]
fn bascule_output_equals_mkenvimage_byte_for_byte() {
    if !tool::require("mkenvimage", "u-boot-tools") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = as_mkenvimage_input(&sample());
    let size = format!("{SIZE:#x}");
    // mkenvimage pads with 0xff by default, -p 0 with zeros; -r writes flags = 1.
    for (args, pad, redundant) in [
        (vec!["-s", &size], 0xff, false),
        (vec!["-s", &size, "-p", "0"], 0x00, false),
        (vec!["-s", &size, "-r"], 0xff, true),
    ] {
        let theirs = mkenvimage(&args, &input, dir.path());
        let codec = UbootCodec::new(SIZE, redundant).unwrap().with_padding(pad);
        let ours = codec.encode(&sample(), 1).unwrap();
        assert!(ours == theirs, "bascule and mkenvimage {args:?} differ");
    }
}

//! Unit tests of the U-Boot codec and store (interop with the real tools is in
//! `hal/tests/uboot_interop.rs`, power cuts in `hal/tests/env_power_cut.rs`).
use super::*;
use crate::block::MemBlock;

use crate::env::test_vars as vars;

#[test]
fn encode_matches_the_documented_layout() {
    let codec = UbootCodec::new(32, false).unwrap();
    let img = codec.encode(&vars(&[("a", "1"), ("b", "x y")]), 0).unwrap();
    assert_eq!(&img[4..16], b"a=1\0b=x y\0\0\0");
    assert_eq!(img.len(), 32);
    assert_eq!(le_u32(&img, 0), Some(crc32(&img[4..])));
}

#[test]
fn decode_roundtrips_and_accepts_ff_padding() {
    for redundant in [false, true] {
        for padding in [0x00, 0xff] {
            let codec = UbootCodec::new(64, redundant)
                .unwrap()
                .with_padding(padding);
            let v = vars(&[("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3"), ("e", "")]);
            let img = codec.encode(&v, 7).unwrap();
            let copy = UbootCodec::new(64, redundant)
                .unwrap()
                .decode(&img)
                .unwrap();
            assert_eq!(copy.vars, v);
            assert_eq!(copy.flags, redundant.then_some(7));
        }
    }
}

#[test]
fn decode_reports_crc_with_both_values() {
    let codec = UbootCodec::new(32, false).unwrap();
    let mut img = codec.encode(&vars(&[("a", "1")]), 0).unwrap();
    img[5] = b'X';
    match codec.decode(&img) {
        Err(DecodeError::Crc { stored, computed }) => {
            assert_eq!(stored, le_u32(&img, 0).unwrap());
            assert_eq!(computed, crc32(&img[4..]));
        }
        other => panic!("expected a CRC error, got {other:?}"),
    }
}

#[test]
fn decode_refuses_unterminated_and_wrong_size() {
    let codec = UbootCodec::new(8, false).unwrap();
    let mut img = vec![0u8; 8];
    img[4..].copy_from_slice(b"a=12");
    let crc = crc32(&img[4..]);
    img[..4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        codec.decode(&img),
        Err(DecodeError::Unterminated { offset: 4 })
    );
    assert!(matches!(
        codec.decode(&img[..7]),
        Err(DecodeError::WrongSize { .. })
    ));
}

#[test]
fn decode_skips_entries_without_name_or_equals() {
    let codec = UbootCodec::new(32, false).unwrap();
    let mut img = vec![0u8; 32];
    img[4..20].copy_from_slice(b"junk\0=v\0a=1\0a=2\0");
    let crc = crc32(&img[4..]);
    img[..4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(codec.decode(&img).unwrap().vars, vars(&[("a", "2")]));
}

#[test]
fn encode_refuses_bad_names_and_overflow() {
    let codec = UbootCodec::new(16, false).unwrap();
    for (name, value) in [("", "x"), ("a=b", "x"), ("a", "x\0y")] {
        let err = codec.encode(&vars(&[(name, value)]), 0).unwrap_err();
        assert!(matches!(err, EncodeError::InvalidVar { .. }), "{name:?}");
    }
    let err = codec
        .encode(&vars(&[("long", "0123456789")]), 0)
        .unwrap_err();
    assert_eq!(
        err,
        EncodeError::TooLarge {
            needed: 21,
            available: 16
        }
    );
}

#[test]
fn codec_refuses_silly_sizes() {
    assert!(UbootCodec::new(4, false).is_none());
    assert!(UbootCodec::new(5, true).is_none());
    assert!(UbootCodec::new(UBOOT_MAX_ENV_SIZE + 1, false).is_none());
}

#[test]
fn select_copy_follows_libubootenv() {
    assert_eq!(select_copy([None, None]), None);
    assert_eq!(select_copy([Some(3), None]), Some(0));
    assert_eq!(select_copy([None, Some(3)]), Some(1));
    assert_eq!(select_copy([Some(3), Some(4)]), Some(1));
    assert_eq!(select_copy([Some(4), Some(3)]), Some(0));
    assert_eq!(select_copy([Some(4), Some(4)]), Some(0));
    assert_eq!(select_copy([Some(0xff), Some(0)]), Some(1));
    assert_eq!(select_copy([Some(0), Some(0xff)]), Some(0));
}

fn redundant_layout() -> UbootLayout {
    UbootLayout {
        offset: 0x1000,
        size: 0x200,
        redundant_offset: Some(0x2000),
    }
}

#[test]
fn redundant_commits_alternate_and_advance_the_flag() {
    let mut env = UbootEnv::new(MemBlock::new("mmc", 0x4000), redundant_layout()).unwrap();
    for i in 0..300u32 {
        let v = vars(&[("n", &alloc::format!("{i}"))]);
        env.commit(&v).unwrap();
        assert_eq!(env.load().unwrap(), v);
    }
    let dev = env.into_inner();
    let codec = UbootCodec::new(0x200, true).unwrap();
    let a = codec.decode(&dev.durable()[0x1000..0x1200]).unwrap();
    let b = codec.decode(&dev.durable()[0x2000..0x2200]).unwrap();
    // 300 commits: the first wrote copy 0 with flag 1; the flag wrapped past 0xff.
    assert_eq!((a.flags, b.flags), (Some(43), Some(44)));
    assert_eq!(b.vars, vars(&[("n", "299")]));
}

#[test]
fn load_of_erased_copies_is_blank() {
    for fill in [0x00, 0xff] {
        let mut dev = MemBlock::new("mmc", 0x4000);
        dev.write_at(0, &[fill; 0x4000]).unwrap();
        let mut env = UbootEnv::new(dev, redundant_layout()).unwrap();
        assert!(
            matches!(env.load(), Err(HalError::EnvBlank { .. })),
            "fill {fill:#x}"
        );
    }
}

#[test]
fn load_of_corrupt_copies_names_each_copy() {
    let mut dev = MemBlock::new("mmc", 0x4000);
    dev.write_at(0x1010, b"x").unwrap();
    let mut env = UbootEnv::new(dev, redundant_layout()).unwrap();
    let msg = alloc::format!("{}", env.load().unwrap_err());
    assert!(
        msg.starts_with("U-Boot env mmc @0x1000: no valid copy"),
        "{msg}"
    );
    assert!(
        msg.contains("copy 0 @0x1000: CRC32 mismatch: stored 0x00000000"),
        "{msg}"
    );
    assert!(msg.contains("copy 1 @0x2000: CRC32 mismatch"), "{msg}");
}

#[test]
fn layout_errors_are_reported() {
    let dev = || MemBlock::new("mmc", 0x4000);
    let bad = [
        UbootLayout {
            offset: 0x3f00,
            size: 0x200,
            redundant_offset: None,
        },
        UbootLayout {
            offset: 0,
            size: 0x200,
            redundant_offset: Some(0x100),
        },
        UbootLayout {
            offset: 0,
            size: 2,
            redundant_offset: None,
        },
    ];
    for layout in bad {
        let err = UbootEnv::new(dev(), layout).unwrap_err();
        assert!(matches!(err, HalError::BadLayout { .. }), "{layout:?}");
    }
}

#[test]
fn describe_warns_about_single_copy() {
    let layout = UbootLayout {
        offset: 0,
        size: 0x200,
        redundant_offset: None,
    };
    let env = UbootEnv::new(MemBlock::new("mmc", 0x4000), layout).unwrap();
    assert!(!env.is_power_safe());
    assert!(env.describe().contains("NOT power-safe"));
    let env = UbootEnv::new(MemBlock::new("mmc", 0x4000), redundant_layout()).unwrap();
    assert!(env.is_power_safe());
    assert!(env.describe().contains("redundant"));
}

#[test]
fn fw_env_config_lines() {
    assert_eq!(
        redundant_layout().fw_env_config("/dev/mmcblk0", Some(0x200)),
        "/dev/mmcblk0 0x1000 0x200 0x200\n/dev/mmcblk0 0x2000 0x200 0x200\n"
    );
    let single = UbootLayout {
        offset: 0,
        size: 0x4000,
        redundant_offset: None,
    };
    assert_eq!(
        single.fw_env_config("env.img", None),
        "env.img 0x0 0x4000\n"
    );
}

#[test]
fn commit_refuses_invalid_vars_without_writing() {
    let mut env = UbootEnv::new(MemBlock::new("mmc", 0x4000), redundant_layout()).unwrap();
    let err = env.commit(&vars(&[("a=b", "1")])).unwrap_err();
    assert!(matches!(err, HalError::EnvInvalidVar { .. }));
    assert!(env.into_inner().durable().iter().all(|&b| b == 0));
}

#[test]
fn newer_copy_with_non_utf8_value_is_current() {
    let codec = UbootCodec::new(0x200, true).unwrap();
    let mut dev = MemBlock::new("mmc", 0x4000);
    let older = codec.encode(&vars(&[("BOOT_ORDER", "A")]), 1).unwrap();
    let mut newer_vars = vars(&[("BOOT_ORDER", "B A")]);
    newer_vars.insert("note", &b"caf\xe9"[..]);
    let newer = codec.encode(&newer_vars, 2).unwrap();
    dev.write_at(0x1000, &older).unwrap();
    dev.write_at(0x2000, &newer).unwrap();
    let mut env = UbootEnv::new(dev, redundant_layout()).unwrap();
    assert_eq!(env.load().unwrap(), newer_vars);
    env.commit(&newer_vars).unwrap();
    let dev = env.into_inner();
    let rewritten = codec.decode(&dev.durable()[0x1000..0x1200]).unwrap();
    assert_eq!((rewritten.vars, rewritten.flags), (newer_vars, Some(3)));
}

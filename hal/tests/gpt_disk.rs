//! Test disks for the GPT attribute store, built with gptman (an implementation
//! independent of bascule's), shared by the `gpt_*` tests through `#[path]`.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::io::Cursor;

use bascule_hal::gpt::{GptAttrLayout, PartitionRef, BASCULE_ENV_PARTITION};
use bascule_hal::EnvVars;

/// ChromeOS kernel partition type (FE3A2A5D-4F32-41A7-B725-ACCC3285A309), mixed-endian.
pub const CROS_KERNEL: [u8; 16] = [
    0x5d, 0x2a, 0x3a, 0xfe, 0x32, 0x4f, 0xa7, 0x41, 0xb7, 0x25, 0xac, 0xcc, 0x32, 0x85, 0xa3, 0x09,
];
/// Linux reserved (8DA63339-0007-60C0-C436-083AC8230908), used for `bascule-env`.
pub const LINUX_RESERVED: [u8; 16] = [
    0x39, 0x33, 0xa6, 0x8d, 0x07, 0x00, 0xc0, 0x60, 0xc4, 0x36, 0x08, 0x3a, 0xc8, 0x23, 0x09, 0x08,
];
/// Linux filesystem data (0FC63DAF-8483-4772-8E79-3D69D8477DE4).
pub const LINUX_DATA: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];

/// Attribute bits the store must never touch: legacy-bootable (2), bit 47 just below
/// the priority field, bit 57 just above successful, and bit 63.
pub const FOREIGN_BITS: u64 = (1 << 2) | (1 << 47) | (1 << 57) | (1 << 63);

/// A disk of `sectors` sectors of `ss` bytes with a protective MBR and a GPT:
/// 1 `rootfs-a` (ChromeOS kernel, foreign bits set, P2 T0 S1), 2 `rootfs-b` (P1 T0 S1),
/// 3 `bascule-env` (16 KiB, when `with_env`), 4 `data` (foreign bits set).
pub fn disk(ss: u64, with_env: bool) -> Vec<u8> {
    let sectors: u64 = if ss == 512 { 512 } else { 96 };
    let mut cur = Cursor::new(vec![0u8; (sectors * ss) as usize]);
    let mut gpt = gptman::GPT::new_from(&mut cur, ss, [0x42; 16]).unwrap();
    let kib = |n: u64| n * 1024 / ss;
    let first = gpt.header.first_usable_lba.next_multiple_of(kib(4).max(1));
    let mut start = first;
    let mut add = |i: u32, ty: [u8; 16], name: &str, len: u64, attrs: u64| {
        gpt[i] = gptman::GPTPartitionEntry {
            partition_type_guid: ty,
            unique_partition_guid: [i as u8; 16],
            starting_lba: start,
            ending_lba: start + len - 1,
            attribute_bits: attrs,
            partition_name: name.into(),
        };
        start += len;
    };
    let p2s1 = (2 << 48) | (1 << 56);
    let p1s1 = (1 << 48) | (1 << 56);
    add(1, CROS_KERNEL, "rootfs-a", kib(32), FOREIGN_BITS | p2s1);
    add(2, CROS_KERNEL, "rootfs-b", kib(32), p1s1);
    if with_env {
        add(3, LINUX_RESERVED, BASCULE_ENV_PARTITION, kib(16), 0);
    }
    add(4, LINUX_DATA, "data", kib(16), FOREIGN_BITS);
    gpt.write_into(&mut cur).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut cur, ss).unwrap();
    cur.into_inner()
}

/// Slots A and B by name, `bascule-env` by name when `with_env`.
pub fn layout(with_env: bool) -> GptAttrLayout {
    let mut slots = BTreeMap::new();
    slots.insert("A".to_string(), PartitionRef::Name("rootfs-a".into()));
    slots.insert("B".to_string(), PartitionRef::Name("rootfs-b".into()));
    GptAttrLayout {
        slots,
        bascule_env: with_env.then(|| PartitionRef::Name(BASCULE_ENV_PARTITION.into())),
    }
}

/// Variables from `(name, value)` pairs.
pub fn vars(pairs: &[(&str, &str)]) -> EnvVars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The boot fields of both slots as variables: `[p, t, s]` for A then B.
pub fn boot_vars(a: [u8; 3], b: [u8; 3]) -> EnvVars {
    let mut v = EnvVars::new();
    for (slot, f) in [("A", a), ("B", b)] {
        v.insert(format!("GPT_{slot}_PRIORITY"), f[0].to_string());
        v.insert(format!("GPT_{slot}_TRIES"), f[1].to_string());
        v.insert(format!("GPT_{slot}_SUCCESSFUL"), f[2].to_string());
    }
    v
}

/// The GPT of `bytes` as gptman reads it (primary, or backup if the primary is bad).
pub fn gptman_read(bytes: &[u8], ss: u64) -> gptman::GPT {
    gptman::GPT::read_from(&mut Cursor::new(bytes.to_vec()), ss).unwrap()
}

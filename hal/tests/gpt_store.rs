//! `GptAttrEnv` over in-memory disks built by gptman: what `load` exposes, what
//! `commit` changes (only bits 48..=56 of the slot entries, plus the `bascule-env`
//! selector), what it refuses, the order of its writes, and reading a degraded disk.
#[path = "gpt_disk.rs"]
mod gpt_disk;

use bascule_hal::block::BlockOp;
use bascule_hal::gpt::table::read_tables;
use bascule_hal::gpt::{GptAttrEnv, PartitionRef, ENV_SELECT_BIT};
use bascule_hal::{EnvStore, FaultyBlock, HalError, MemBlock};
use gpt_disk::{boot_vars, disk, gptman_read, layout, FOREIGN_BITS};

fn open(bytes: Vec<u8>, with_env: bool) -> GptAttrEnv<MemBlock> {
    GptAttrEnv::new(MemBlock::from_bytes("disk", bytes), layout(with_env)).unwrap()
}

#[test]
fn load_exposes_priority_tries_successful_per_slot() {
    let mut env = open(disk(512, false), false);
    assert_eq!(env.load().unwrap(), boot_vars([2, 0, 1], [1, 0, 1]));
}

#[test]
fn commit_changes_only_the_boot_bits_in_both_tables() {
    let before = disk(512, false);
    let mut env = open(before.clone(), false);
    let new = boot_vars([0, 0, 0], [15, 7, 0]);
    env.commit(&new).unwrap();
    assert_eq!(env.load().unwrap(), new);
    let after = env.into_inner().durable().to_vec();

    let (old, now) = (gptman_read(&before, 512), gptman_read(&after, 512));
    assert_eq!(now.header.disk_guid, old.header.disk_guid);
    for i in 1..=old.header.number_of_partition_entries {
        let (o, n) = (&old[i], &now[i]);
        let mut expected = o.clone();
        expected.attribute_bits = n.attribute_bits;
        assert_eq!(n, &expected, "entry {i}: only attribute bits may change");
        let changed = o.attribute_bits ^ n.attribute_bits;
        assert_eq!(changed & !(0x1ff << 48), 0, "entry {i}: {changed:#x}");
    }
    assert_eq!(now[1].attribute_bits, FOREIGN_BITS);
    assert_eq!(now[2].attribute_bits, (15 << 48) | (7 << 52));
    assert_eq!(now[4].attribute_bits, FOREIGN_BITS);

    let mut dev = MemBlock::from_bytes("disk", after.clone());
    let tables = read_tables(&mut dev, 512).unwrap();
    let (p, b) = (tables.primary.unwrap(), tables.backup.unwrap());
    assert_eq!(p.entries(), b.entries());
    assert_eq!((p.my_lba(), p.alternate_lba()), (1, 511));
    assert_eq!((b.my_lba(), b.alternate_lba()), (511, 1));
    assert_eq!(&after[..512], &before[..512], "protective MBR untouched");
}

#[test]
fn bascule_vars_live_in_the_env_partition_selected_by_bit_48() {
    let mut env = open(disk(512, true), true);
    assert_eq!(env.load().unwrap(), boot_vars([2, 0, 1], [1, 0, 1]));
    let mut selectors = Vec::new();
    for i in 0..3 {
        let mut v = boot_vars([1, 0, 1], [2, 3, 0]);
        v.insert("BASCULE_PENDING", "B");
        v.insert("BASCULE_B_VERSION", format!("2.0.{i}"));
        env.commit(&v).unwrap();
        assert_eq!(env.load().unwrap(), v);
        let bytes = env.into_inner();
        let gpt = gptman_read(bytes.durable(), 512);
        selectors.push((gpt[3].attribute_bits >> ENV_SELECT_BIT) & 1);
        env = GptAttrEnv::new(bytes, layout(true)).unwrap();
    }
    assert_eq!(selectors, [1, 0, 1]);
}

#[test]
fn commit_refuses_foreign_missing_and_out_of_range_vars() {
    let mut env = open(disk(512, true), true);
    let name_of = |r: Result<(), HalError>| match r {
        Err(HalError::EnvInvalidVar { name, .. }) => name,
        other => panic!("{other:?}"),
    };
    let with = |k: &str, v: &str| {
        let mut v2 = boot_vars([1, 0, 1], [2, 3, 0]);
        v2.insert(k, v);
        v2
    };
    assert_eq!(
        name_of(env.commit(&with("BOOT_ORDER", "A B"))),
        "BOOT_ORDER"
    );
    assert_eq!(
        name_of(env.commit(&with("GPT_C_TRIES", "1"))),
        "GPT_C_TRIES"
    );
    assert_eq!(
        name_of(env.commit(&with("GPT_A_TRIES", "16"))),
        "GPT_A_TRIES"
    );
    assert_eq!(
        name_of(env.commit(&with("GPT_A_PRIORITY", "+1"))),
        "GPT_A_PRIORITY"
    );
    assert_eq!(
        name_of(env.commit(&with("GPT_A_SUCCESSFUL", "2"))),
        "GPT_A_SUCCESSFUL"
    );
    let mut missing = boot_vars([1, 0, 1], [2, 3, 0]);
    missing.remove("GPT_B_TRIES");
    assert_eq!(name_of(env.commit(&missing)), "GPT_B_TRIES");
    // Nothing was written by the refused commits.
    assert_eq!(env.load().unwrap(), boot_vars([2, 0, 1], [1, 0, 1]));

    let mut no_env = open(disk(512, true), false);
    let msg = no_env
        .commit(&with("BASCULE_PENDING", "B"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("BASCULE_PENDING") && msg.contains("bascule-env"),
        "{msg}"
    );
}

#[test]
fn commit_writes_env_copy_then_backup_then_primary_each_synced() {
    let base = disk(512, true);
    let mut dev = FaultyBlock::new("disk", base);
    let mut env = GptAttrEnv::new(&mut dev, layout(true)).unwrap();
    let mut v = boot_vars([1, 0, 1], [2, 3, 0]);
    v.insert("BASCULE_PENDING", "B");
    env.commit(&v).unwrap();
    let entries = 128 * 128;
    let env_copy1 = (40 + 64 + 64) * 512 + 4096;
    assert_eq!(
        dev.ops(),
        [
            BlockOp::Write {
                offset: env_copy1,
                len: 4096
            },
            BlockOp::Sync,
            BlockOp::Write {
                offset: 479 * 512,
                len: entries + 512
            },
            BlockOp::Sync,
            BlockOp::Write {
                offset: 512,
                len: 512 + entries
            },
            BlockOp::Sync,
        ]
    );
}

#[test]
fn corrupt_primary_loads_backup_and_commit_repairs_primary_first() {
    let mut bytes = disk(512, false);
    bytes[512 + 40] ^= 0xff; // first usable LBA, covered by the header CRC
    let mut dev = FaultyBlock::new("disk", bytes);
    let mut env = GptAttrEnv::new(&mut dev, layout(false)).unwrap();
    assert_eq!(env.load().unwrap(), boot_vars([2, 0, 1], [1, 0, 1]));
    env.commit(&boot_vars([3, 1, 0], [1, 0, 1])).unwrap();
    assert_eq!(
        dev.ops()[0],
        BlockOp::Write {
            offset: 512,
            len: 512 + 128 * 128
        }
    );
    let mut mem = dev.after_cut();
    let tables = read_tables(&mut mem, 512).unwrap();
    assert_eq!(
        tables.primary.unwrap().entries(),
        tables.backup.unwrap().entries()
    );
}

#[test]
fn both_tables_corrupt_is_reported_with_both_causes() {
    let mut bytes = disk(512, false);
    bytes[512 + 40] ^= 1;
    let n = bytes.len();
    bytes[n - 512 + 16] ^= 1;
    let msg = match GptAttrEnv::new(MemBlock::from_bytes("disk", bytes), layout(false)) {
        Ok(_) => panic!("a disk with no valid GPT opened"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("primary GPT @LBA 1: header CRC-32"), "{msg}");
    assert!(msg.contains("backup GPT @LBA 511: header CRC-32"), "{msg}");
}

#[test]
fn layout_errors_name_the_partition() {
    let bad = |l| GptAttrEnv::new(MemBlock::from_bytes("disk", disk(512, false)), l).unwrap_err();
    let mut l = layout(false);
    l.slots
        .insert("B".into(), PartitionRef::Name("rootfs-c".into()));
    assert!(bad(l)
        .to_string()
        .contains("no partition named \"rootfs-c\""));
    let mut l = layout(false);
    l.slots.insert("B".into(), PartitionRef::Index(1));
    assert!(bad(l).to_string().contains("share partition 1"));
    let mut l = layout(false);
    l.slots.insert("B".into(), PartitionRef::Index(3));
    assert!(bad(l).to_string().contains("no partition 3"));
    let mut l = layout(false);
    l.bascule_env = Some(PartitionRef::Name("bascule-env".into()));
    assert!(bad(l)
        .to_string()
        .contains("no partition named \"bascule-env\""));
    let mut l = layout(false);
    l.slots.insert("B-1".into(), PartitionRef::Index(2));
    assert!(matches!(bad(l), HalError::BadLayout { .. }));
    let blank = GptAttrEnv::new(MemBlock::new("blank", 1 << 18), layout(false)).unwrap_err();
    assert!(blank.to_string().contains("no GPT signature"), "{blank}");
}

#[test]
fn slots_by_index_and_4096_byte_sectors() {
    let mut l = layout(true);
    l.slots.insert("A".into(), PartitionRef::Index(1));
    l.slots.insert("B".into(), PartitionRef::Index(2));
    let mut env = GptAttrEnv::new(MemBlock::from_bytes("disk4k", disk(4096, true)), l).unwrap();
    assert_eq!(env.sector_size(), 4096);
    let mut v = boot_vars([5, 15, 0], [0, 0, 0]);
    v.insert("BASCULE_A_VERSION", "1.2.3");
    env.commit(&v).unwrap();
    assert_eq!(env.load().unwrap(), v);
    let gpt = gptman_read(env.into_inner().durable(), 4096);
    assert_eq!(gpt[1].attribute_bits, FOREIGN_BITS | (5 << 48) | (15 << 52));
}

#[test]
fn describe_names_disk_slots_and_env_partition() {
    let env = GptAttrEnv::new(MemBlock::from_bytes("d", disk(512, true)), layout(true)).unwrap();
    let d = env.describe();
    assert!(
        d.starts_with("GPT attributes on d (512-byte sectors; "),
        "{d}"
    );
    assert!(d.contains("A = partition named \"rootfs-a\""), "{d}");
    assert!(
        d.contains("BASCULE_* in partition named \"bascule-env\""),
        "{d}"
    );
}

#[test]
fn too_many_bascule_vars_is_env_too_large() {
    let mut env = open(disk(512, true), true);
    let mut v = boot_vars([1, 0, 1], [2, 3, 0]);
    v.insert("BASCULE_BIG", "x".repeat(5000));
    assert!(matches!(env.commit(&v), Err(HalError::EnvTooLarge { .. })));
}

//! The whole-table writer of factory provisioning (`gpt::create::write_table`):
//! gptman (an independent reader) and `sgdisk -v` read what it writes; a power-cut
//! campaign cuts it before and after every write and sync and tears every write by
//! prefix and by sectors, from a blank disk, from a disk with another table, and from
//! a disk whose primary is corrupt: after each cut the table in use (the primary if
//! valid, else the backup) is the old or the new one, and running the writer again
//! leaves both copies new.
#[path = "gpt_disk.rs"]
mod gpt_disk;
#[path = "tool/mod.rs"]
mod tool;

use std::io::Cursor;
use std::process::Command;

use bascule_hal::block::cut_plans;
use bascule_hal::gpt::create::{copy_in_use, write_table, Guid, NewPartition, NewTable};
use bascule_hal::gpt::table::read_tables;
use bascule_hal::{FaultyBlock, MemBlock};

const SECTORS: u64 = 512;

fn part(n: u8, name: &str, first: u64, last: u64, attributes: u64) -> NewPartition {
    NewPartition {
        type_guid: Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4").unwrap(),
        unique_guid: Guid([n; 16]),
        first_lba: first,
        last_lba: last,
        attributes,
        name: name.into(),
    }
}

fn table(tag: u8) -> NewTable {
    let step = u64::from(tag) * 8;
    NewTable {
        sector_size: 512,
        sectors: SECTORS,
        disk_guid: Guid([tag; 16]),
        partitions: vec![
            part(1, "rootfs-a", 64, 127 + step, 1 << 2),
            part(2, "rootfs-b", 192, 255, 0),
            part(3, "data", 256, 400 - step, 1 << 60),
        ],
    }
}

/// The entries of the copy readers take, or `None` when neither copy is valid.
fn in_use(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut dev = MemBlock::from_bytes("disk", bytes.to_vec());
    let t = read_tables(&mut dev, 512).unwrap();
    match copy_in_use(&t)? {
        true => Some(t.primary.unwrap().entries().to_vec()),
        false => Some(t.backup.unwrap().entries().to_vec()),
    }
}

fn entries_of(t: &NewTable) -> Vec<u8> {
    t.encode_entries().unwrap()
}

fn written(base: Vec<u8>, t: &NewTable) -> Vec<u8> {
    let mut dev = MemBlock::from_bytes("disk", base);
    write_table(&mut dev, t).unwrap();
    dev.durable().to_vec()
}

#[test]
fn gptman_reads_what_the_writer_writes() {
    let bytes = written(vec![0; (SECTORS * 512) as usize], &table(1));
    let gpt = gptman::GPT::find_from(&mut Cursor::new(bytes.clone())).unwrap();
    assert_eq!(gpt.header.disk_guid, [1; 16]);
    let a = &gpt[1];
    assert_eq!(a.partition_name.as_str(), "rootfs-a");
    assert_eq!((a.starting_lba, a.ending_lba), (64, 135));
    assert_eq!(a.attribute_bits, 1 << 2);
    assert_eq!(gpt[3].attribute_bits, 1 << 60);
    assert!(!gpt[4].is_used());
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    assert_eq!(bytes[450], 0xee);
}

#[test]
fn guids_parse_and_print_in_gpt_byte_order() {
    let text = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    let g = Guid::parse(text).unwrap();
    assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2a, 0xc1]);
    assert_eq!(g.to_string(), text);
    assert_eq!(Guid::parse(&text.to_lowercase()), Some(g));
    for bad in [
        "",
        "C12A7328F81F11D2BA4B00A0C93EC93B",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93",
        "X12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    ] {
        assert_eq!(Guid::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn overlapping_or_outside_partitions_are_refused() {
    let mut t = table(1);
    t.partitions[1].first_lba = 100;
    assert!(t.encode_entries().is_err());
    let mut t = table(1);
    t.partitions[2].last_lba = SECTORS - 2;
    assert!(t.encode_entries().is_err());
}

#[test]
fn sgdisk_finds_no_problem_in_a_written_table() {
    if !tool::require("sgdisk", "gdisk") {
        return;
    }
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        tmp.path(),
        written(vec![0; (SECTORS * 512) as usize], &table(2)),
    )
    .unwrap();
    let out = Command::new("sgdisk")
        .arg("-v")
        .arg(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("No problems found"), "{text}");
}

/// Writes `new` over `base` under every cut plan; checks old-or-new and the repair.
fn campaign(label: &str, base: &[u8], new: &NewTable) -> [usize; 2] {
    let old = in_use(base);
    let want = Some(entries_of(new));
    let mut clean = FaultyBlock::new("disk", base.to_vec());
    write_table(&mut clean, new).unwrap();
    let plans = cut_plans(clean.ops(), 97, 512);
    let mut seen = [0, 0];
    for (i, plan) in plans.iter().enumerate() {
        let mut dev = FaultyBlock::new("disk", base.to_vec());
        dev.arm(*plan);
        let result = write_table(&mut dev, new);
        let after = dev.after_cut().durable().to_vec();
        match in_use(&after) {
            got if got == want => seen[1] += 1,
            got if got == old && result.is_err() => seen[0] += 1,
            got => panic!("{label} cut #{i} {plan:?} ({result:?}): table in use {got:?}"),
        }
        let repaired = written(after, new);
        let mut dev = MemBlock::from_bytes("disk", repaired);
        let t = read_tables(&mut dev, 512).unwrap();
        let both = matches!((&t.primary, &t.backup),
            (Ok(p), Ok(b)) if p.entries() == b.entries() && Some(p.entries().to_vec()) == want);
        assert!(
            both,
            "{label} cut #{i} {plan:?}: a re-run did not repair both copies"
        );
    }
    println!(
        "{label}: {} cuts, {} old, {} new",
        plans.len(),
        seen[0],
        seen[1]
    );
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "{label}: both outcomes must occur"
    );
    seen
}

#[test]
fn table_write_is_old_or_new_at_every_cut() {
    let blank = vec![0u8; (SECTORS * 512) as usize];
    campaign("blank disk", &blank, &table(1));
    let other = written(blank.clone(), &table(3));
    campaign("disk with another table", &other, &table(1));
    let mut degraded = other.clone();
    degraded[512 + 40] ^= 0xff;
    campaign("primary corrupt", &degraded, &table(1));
}

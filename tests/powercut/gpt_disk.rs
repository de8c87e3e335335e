//! The GPT disk of the ChromeOS backend ([`super::EnvBackend::Gpt`]): a blank disk
//! with the two slot kernel partitions and `bascule-env`, built with the hal's table
//! code, and the slot layout the GPT attribute store reads it with.
use bascule_hal::env::codec::crc32;
use bascule_hal::gpt::table::Table;
use bascule_hal::gpt::{GptAttrLayout, PartitionRef, BASCULE_ENV_PARTITION};

/// Logical sector size of the GPT disk.
const GPT_SECTOR: usize = 512;
/// Sectors of the GPT disk (64 KiB): MBR, primary header, 32 sectors of entries,
/// partitions in LBAs 34..=94, backup entries in 95..=126, backup header at 127.
const GPT_SECTORS: u64 = 128;
/// 128 entries of 128 bytes, as `sgdisk` and gptman make them.
const GPT_ENTRIES: usize = 128;
const GPT_ENTRY_SIZE: usize = 128;
/// ChromeOS kernel partition type (FE3A2A5D-4F32-41A7-B725-ACCC3285A309), mixed-endian.
const CROS_KERNEL: [u8; 16] = [
    0x5d, 0x2a, 0x3a, 0xfe, 0x32, 0x4f, 0xa7, 0x41, 0xb7, 0x25, 0xac, 0xcc, 0x32, 0x85, 0xa3, 0x09,
];
/// Linux reserved (8DA63339-0007-60C0-C436-083AC8230908), for `bascule-env`.
const LINUX_RESERVED: [u8; 16] = [
    0x39, 0x33, 0xa6, 0x8d, 0x07, 0x00, 0xc0, 0x60, 0xc4, 0x36, 0x08, 0x3a, 0xc8, 0x23, 0x09, 0x08,
];
/// Legacy BIOS bootable, an attribute bit the store must keep.
const LEGACY_BOOTABLE: u64 = 1 << 2;

/// A blank GPT disk with a protective MBR: 1 `rootfs-a` and 2 `rootfs-b` (ChromeOS
/// kernels, all boot bits 0) and 3 `bascule-env` (16 KiB, never written). Built with
/// the hal's own table code: gptman is a dev-dependency of bascule-hal only, and the
/// root crate's tests cannot use it (hal/tests/gpt_*.rs cross-check this code against
/// gptman). The slot entries only carry the boot attributes here: the slots' bytes
/// are the rail's slot devices, as a separate disk per slot would be.
pub fn blank_gpt_disk() -> Vec<u8> {
    let ss = GPT_SECTOR as u64;
    let entry_sectors = (GPT_ENTRIES * GPT_ENTRY_SIZE) as u64 / ss;
    let last_lba = GPT_SECTORS - 1;
    let backup_entries = last_lba - entry_sectors;
    let (first_usable, last_usable) = (2 + entry_sectors, backup_entries - 1);
    let mut entries = vec![0u8; GPT_ENTRIES * GPT_ENTRY_SIZE];
    let parts: [(&[u8; 16], &str, u64, u64, u64); 3] = [
        (&CROS_KERNEL, "rootfs-a", 40, 47, LEGACY_BOOTABLE),
        (&CROS_KERNEL, "rootfs-b", 48, 55, 0),
        (&LINUX_RESERVED, BASCULE_ENV_PARTITION, 56, 87, 0),
    ];
    for (i, (ty, name, first, last, attrs)) in parts.into_iter().enumerate() {
        assert!(first_usable <= first && last <= last_usable);
        let e = &mut entries[i * GPT_ENTRY_SIZE..(i + 1) * GPT_ENTRY_SIZE];
        e[..16].copy_from_slice(ty);
        e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e[48..56].copy_from_slice(&attrs.to_le_bytes());
        for (k, unit) in name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let mut header = vec![0u8; 92];
    header[..8].copy_from_slice(b"EFI PART");
    header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    header[12..16].copy_from_slice(&92u32.to_le_bytes());
    header[40..48].copy_from_slice(&first_usable.to_le_bytes());
    header[48..56].copy_from_slice(&last_usable.to_le_bytes());
    header[56..72].copy_from_slice(&[0x42; 16]);
    header[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
    header[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
    header[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
    let table = Table::with_entries(header, entries.clone()).expect("GPT table");
    let mut disk = vec![0u8; GPT_SECTORS as usize * GPT_SECTOR];
    let mut put = |lba: u64, bytes: &[u8]| {
        let at = (lba * ss) as usize;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(1, &table.encode_header(GPT_SECTOR, 1, last_lba, 2));
    put(2, &entries);
    put(backup_entries, &entries);
    put(
        last_lba,
        &table.encode_header(GPT_SECTOR, last_lba, 1, backup_entries),
    );
    // Protective MBR: one 0xEE partition over the whole disk.
    let mut mbr = [0u8; GPT_SECTOR];
    mbr[446 + 4] = 0xee;
    mbr[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    mbr[446 + 12..446 + 16].copy_from_slice(&((GPT_SECTORS - 1) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    put(0, &mbr);
    disk
}

/// Slots A and B and `bascule-env`, by GPT name.
pub fn gpt_layout() -> GptAttrLayout {
    GptAttrLayout {
        slots: [("A", "rootfs-a"), ("B", "rootfs-b")]
            .into_iter()
            .map(|(s, p)| (s.to_string(), PartitionRef::Name(p.into())))
            .collect(),
        bascule_env: Some(PartitionRef::Name(BASCULE_ENV_PARTITION.into())),
    }
}

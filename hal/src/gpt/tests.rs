//! Pure unit tests of the attribute fields, variable names and header checks.
use alloc::vec;

use super::table::{Table, TableError};
use super::*;
use crate::env::codec::crc32;

#[test]
fn boot_attrs_use_bits_48_to_56_and_keep_the_rest() {
    let bits = !(0x1ffu64 << 48);
    let a = BootAttrs {
        priority: 0xa,
        tries: 0x5,
        successful: true,
    };
    let set = a.apply(bits);
    assert_eq!(set, bits | (0xa << 48) | (0x5 << 52) | (1 << 56));
    assert_eq!(BootAttrs::from_bits(set), a);
    assert_eq!(BootAttrs::default().apply(u64::MAX), bits);
}

#[test]
fn slot_var_names_and_values() {
    assert!(is_slot_var("GPT_A_PRIORITY", "A"));
    assert!(is_slot_var("GPT_ROOT_A_SUCCESSFUL", "ROOT_A"));
    assert!(!is_slot_var("GPT_A_PRIORITY", "B"));
    assert!(!is_slot_var("GPT_A_LEFT", "A"));
    assert!(!is_slot_var("GPT_AB_TRIES", "A"));
    assert_eq!(parse_small("15", 15), Some(15));
    assert_eq!(parse_small("07", 15), Some(7));
    for bad in ["16", "", "+1", " 1", "1 ", "0x1", "100", "-0"] {
        assert_eq!(parse_small(bad, 15), None, "{bad:?}");
    }
    assert_eq!(parse_small("2", 1), None);
}

/// A valid header sector (512 bytes) at `lba` over `entries`.
fn header(lba: u64, entries: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&lba.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&((entries.len() / 128) as u32).to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(entries).to_le_bytes());
    let crc = crc32(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn header_checks_in_order_and_entries_crc() {
    let entries = vec![0u8; 4 * 128];
    let good = header(1, &entries);
    let (h, lba, bytes) = Table::check_header(&good, 1).unwrap();
    assert_eq!((lba, bytes), (2, 512));
    let mut t = Table::with_entries(h.clone(), entries.clone()).unwrap();
    t.set_attributes(3, 1 << 56);
    let reencoded = t.encode_header(512, 1, 9, 2);
    let (h2, _, _) = Table::check_header(&reencoded, 1).unwrap();
    assert!(Table::with_entries(h2, t.entries().to_vec()).is_ok());
    assert_eq!(reencoded[32..40], 9u64.to_le_bytes());

    let with = |at: usize, byte: u8| {
        let mut b = good.clone();
        b[at] = byte;
        Table::check_header(&b, 1).unwrap_err()
    };
    assert_eq!(with(0, b'X'), TableError::Signature);
    assert!(matches!(
        with(12, 91),
        TableError::HeaderSize { found: 91, .. }
    ));
    let mut past_header = good.clone();
    past_header[100] = 1; // beyond the 92 bytes the CRC covers
    assert!(Table::check_header(&past_header, 1).is_ok());
    assert!(matches!(with(40, 1), TableError::HeaderCrc { .. }));
    assert!(matches!(
        Table::check_header(&good, 7),
        Err(TableError::MyLba {
            found: 1,
            expected: 7
        })
    ));
    assert!(matches!(
        Table::with_entries(h, vec![1u8; 512]),
        Err(TableError::EntriesCrc { .. })
    ));
}

//! Property tests of the pure env codecs: arbitrary bytes never panic a decoder (a
//! stand-in until the fuzzer targets the same `decode` functions), and every encodable
//! environment, names and values of arbitrary bytes, decodes back to itself byte for
//! byte.
use bascule_hal::env::codec::crc32;
use bascule_hal::env::grub::GrubCodec;
use bascule_hal::env::native::NativeCodec;
use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;
use proptest::prelude::*;

/// Byte strings of `len` bytes none of which is in `banned`.
fn bytes_without(
    banned: &'static [u8],
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("banned byte", |b| !banned.contains(b)),
        len,
    )
}

fn env_strategy(
    name: impl Strategy<Value = Vec<u8>>,
    value: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = EnvVars> {
    proptest::collection::btree_map(name, value, 0..12).prop_map(|m| m.into_iter().collect())
}

/// U-Boot: names of any bytes but NUL and `=`, values of any bytes but NUL.
fn uboot_env() -> impl Strategy<Value = EnvVars> {
    env_strategy(bytes_without(b"\0=", 1..16), bytes_without(b"\0", 0..40))
}

/// GRUB: names without NUL, `=`, newline, backslash, not starting with `#`; values of
/// any bytes but NUL.
fn grub_env() -> impl Strategy<Value = EnvVars> {
    let name = bytes_without(b"\0=\n\\", 1..16).prop_filter("comment", |n| n[0] != b'#');
    env_strategy(name, bytes_without(b"\0", 0..20))
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = UbootCodec::new(bytes.len().max(6), true).map(|c| c.decode(&bytes));
        let _ = UbootCodec::new(bytes.len().max(5), false).map(|c| c.decode(&bytes));
        let _ = GrubCodec::decode(&bytes);
        let _ = NativeCodec::decode(&bytes);
    }

    #[test]
    fn grub_decoder_survives_signature_plus_junk(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut block = b"# GRUB Environment Block\n".to_vec();
        block.extend(tail);
        let _ = GrubCodec::decode(&block);
    }

    #[test]
    fn uboot_roundtrip(vars in uboot_env(),
                       redundant in any::<bool>(), pad in prop_oneof![Just(0u8), Just(0xffu8)]) {
        let codec = UbootCodec::new(0x1000, redundant).unwrap().with_padding(pad);
        let image = codec.encode(&vars, 9).unwrap();
        prop_assert_eq!(codec.decode(&image).unwrap().vars, vars);
    }

    #[test]
    fn grub_roundtrip(vars in grub_env()) {
        let codec = GrubCodec::new(4096).unwrap();
        let block = codec.encode(&vars).unwrap();
        prop_assert_eq!(GrubCodec::decode(&block).unwrap(), vars);
    }

    #[test]
    fn native_roundtrip(vars in env_strategy(bytes_without(b"", 0..16), bytes_without(b"", 0..40)),
                        generation in any::<u64>()) {
        let block = NativeCodec::new(0x2000).unwrap().encode(&vars, generation).unwrap();
        let copy = NativeCodec::decode(&block).unwrap();
        prop_assert_eq!((copy.vars, copy.generation), (vars, generation));
    }

    /// Any entries of non-NUL bytes under a good CRC decode (as `fw_printenv` reads
    /// them), and a commit of what was read writes every variable back unchanged.
    #[test]
    fn uboot_reads_any_bytes_under_a_good_crc(
        entries in proptest::collection::vec(bytes_without(b"\0", 1..24), 0..10),
    ) {
        let size = 0x400;
        let mut image = vec![0u8; 4];
        for entry in &entries {
            image.extend_from_slice(entry);
            image.push(0);
        }
        image.resize(size, 0);
        let crc = crc32(&image[4..]);
        image[..4].copy_from_slice(&crc.to_le_bytes());
        let codec = UbootCodec::new(size, false).unwrap();
        let vars = codec.decode(&image).unwrap().vars;
        let mut expected = EnvVars::new();
        for entry in &entries {
            if let Some(eq) = entry.iter().position(|&b| b == b'=').filter(|&eq| eq > 0) {
                expected.insert(&entry[..eq], &entry[eq + 1..]);
            }
        }
        prop_assert_eq!(&vars, &expected);
        let again = codec.decode(&codec.encode(&vars, 0).unwrap()).unwrap().vars;
        prop_assert_eq!(again, vars);
    }
}

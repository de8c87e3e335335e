//! Property tests of the pure env codecs: arbitrary bytes never panic a decoder (a
//! stand-in until the fuzzer targets the same `decode` functions), and every encodable
//! environment decodes back to itself.
use bascule_hal::env::grub::GrubCodec;
use bascule_hal::env::native::NativeCodec;
use bascule_hal::env::uboot::UbootCodec;
use bascule_hal::EnvVars;
use proptest::prelude::*;

fn env_strategy(name: &'static str, value: &'static str) -> impl Strategy<Value = EnvVars> {
    proptest::collection::btree_map(name, value, 0..12)
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
    fn uboot_roundtrip(vars in env_strategy("[A-Za-z_.][A-Za-z0-9_.]{0,15}", "[^\\x00]{0,40}"),
                       redundant in any::<bool>(), pad in prop_oneof![Just(0u8), Just(0xffu8)]) {
        let codec = UbootCodec::new(0x1000, redundant).unwrap().with_padding(pad);
        let image = codec.encode(&vars, 9).unwrap();
        prop_assert_eq!(codec.decode(&image).unwrap().vars, vars);
    }

    #[test]
    fn grub_roundtrip(vars in env_strategy("[A-Za-z_][A-Za-z0-9_]{0,15}", "[^\\x00]{0,20}")) {
        let codec = GrubCodec::new(4096).unwrap();
        let block = codec.encode(&vars).unwrap();
        prop_assert_eq!(GrubCodec::decode(&block).unwrap(), vars);
    }

    #[test]
    fn native_roundtrip(vars in env_strategy(".{0,16}", ".{0,40}"), generation in any::<u64>()) {
        let block = NativeCodec::new(0x2000).unwrap().encode(&vars, generation).unwrap();
        let copy = NativeCodec::decode(&block).unwrap();
        prop_assert_eq!((copy.vars, copy.generation), (vars, generation));
    }
}

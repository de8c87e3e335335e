//! bascule's native env codec over one arbitrary copy: never a panic, and what decodes
//! re-encodes (same size, same generation) and decodes to the same copy.
#![no_main]
use bascule_hal::env::NativeCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(copy) = NativeCodec::decode(data) else { return };
    let codec = NativeCodec::new(data.len()).expect("a decodable copy has a valid size");
    let bytes = codec.encode(&copy.vars, copy.generation).expect("decoded vars re-encode in the same size");
    assert_eq!(NativeCodec::decode(&bytes).as_ref(), Ok(&copy), "native env copy does not round-trip");
});

//! The U-Boot env codec over one copy of arbitrary bytes, single and redundant layout:
//! never a panic, and what decodes re-encodes (same size) and decodes to the same
//! variables and flags.
#![no_main]
use bascule_hal::env::UbootCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for redundant in [false, true] {
        let Some(codec) = UbootCodec::new(data.len(), redundant) else { continue };
        let Ok(copy) = codec.decode(data) else { continue };
        let flags = copy.flags.unwrap_or(0);
        let bytes = codec.encode(&copy.vars, flags).expect("decoded vars re-encode in the same size");
        let again = codec.decode(&bytes).expect("re-encoded copy decodes");
        assert_eq!(again, copy, "U-Boot env copy does not round-trip");
    }
});

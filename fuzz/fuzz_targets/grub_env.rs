//! The GRUB env codec over an arbitrary block: never a panic, and variables that
//! decode and re-encode (in a block of the same size) decode back unchanged.
#![no_main]
use bascule_hal::env::GrubCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(vars) = GrubCodec::decode(data) else { return };
    let Some(codec) = GrubCodec::new(data.len()) else { return };
    let Ok(bytes) = codec.encode(&vars) else { return };
    assert_eq!(bytes.len(), data.len());
    assert_eq!(GrubCodec::decode(&bytes).as_ref(), Ok(&vars), "GRUB env does not round-trip");
});

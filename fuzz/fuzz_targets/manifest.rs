//! Manifest decoding and validation over arbitrary bytes: never a panic, and a
//! manifest that decodes encodes and decodes back to itself.
#![no_main]
use bascule::bundle::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::decode(data) else { return };
    let valid = manifest.validate().is_ok();
    let again = Manifest::decode(&manifest.encode()).expect("re-encoded manifest decodes");
    assert_eq!(again, manifest, "manifest does not round-trip");
    assert_eq!(again.validate().is_ok(), valid);
    if valid {
        // Payload arithmetic of a valid manifest must not overflow or panic.
        let _ = manifest.payload_len();
        assert_eq!(manifest.chunk_refs().count(), manifest.images.iter().map(|i| i.chunks.len()).sum::<usize>());
    }
});

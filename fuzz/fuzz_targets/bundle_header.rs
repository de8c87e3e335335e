//! The fixed 32-byte bundle header: `parse_header` never panics, and a header it
//! accepts encodes back to the same bytes.
#![no_main]
use bascule::bundle::{parse_header, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.get(..HEADER_LEN) else { return };
    let bytes: &[u8; HEADER_LEN] = bytes.try_into().expect("HEADER_LEN bytes");
    if let Ok(header) = parse_header(bytes) {
        assert_eq!(&header.encode(), bytes, "accepted header does not round-trip");
    }
});

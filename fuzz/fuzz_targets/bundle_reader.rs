//! A whole bundle from arbitrary bytes through the reader (signature not checked, so
//! the fuzzer reaches manifest checks and the payload): open, then read, decode and
//! verify every chunk. Never a panic; allocation stays bounded by the input.
#![no_main]
use std::io::Cursor;

use bascule::bundle::BundleReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = BundleReader::open_unverified(Cursor::new(data)) else { return };
    assert!(!reader.signature_verified());
    if reader.verify_payload().is_ok() {
        assert!(reader.bytes_read() <= data.len() as u64);
    }
});

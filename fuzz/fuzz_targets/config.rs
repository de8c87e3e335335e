//! `system.toml` parsing over arbitrary text: a bad config is an error with a message,
//! never a panic.
#![no_main]
use std::path::Path;

use bascule::config::SystemConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(err) = SystemConfig::parse(text, Path::new("/fuzz/system.toml")) {
        assert!(!err.to_string().is_empty());
    }
});

//! xz chunks: each chunk of an xz image is one independent `.xz` stream (one LZMA2
//! block, no integrity check of its own: the chunk's signed SHA-256 is the check),
//! with a dictionary no larger than the chunk, so decoding needs about one chunk of
//! memory. `xz -dc` decodes a chunk as it is.
//!
//! Decoding is bounded like zstd's: the output is exactly the chunk's raw length, the
//! decoder refuses a stream that asks for more memory than [`decoder_memlimit`], and
//! the stored bytes must be exactly one stream, every byte consumed.
use liblzma::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

/// Smallest LZMA2 dictionary liblzma accepts.
const MIN_DICT: u32 = 4096;
/// Memory the decoder may use beyond the dictionary (its own state, the block
/// decoder; liblzma reports about 32 KiB).
const DECODER_OVERHEAD: u64 = 1 << 20;
/// Stream header and footer (12 bytes each), block header, index and padding, more
/// than liblzma's own bound for one block (`lzma_stream_buffer_bound`).
const STREAM_OVERHEAD: u64 = 256;

/// Compression levels (xz's presets).
pub const LEVELS: std::ops::RangeInclusive<u32> = 0..=9;

/// The most bytes one chunk of `raw_len` bytes takes as an xz stream: LZMA2 stores
/// incompressible data in uncompressed chunks of up to 64 KiB with a 3-byte header.
pub fn max_stored_len(raw_len: u32) -> u64 {
    let raw = u64::from(raw_len);
    raw + raw.div_ceil(1 << 16) * 3 + 1 + STREAM_OVERHEAD
}

/// Decoder memory allowed for an image with chunks of `chunk_size`.
pub fn decoder_memlimit(chunk_size: u32) -> u64 {
    u64::from(chunk_size.max(MIN_DICT)) + DECODER_OVERHEAD
}

/// One chunk as one xz stream at preset `level`, with a dictionary of `chunk_size`.
pub fn compress(raw: &[u8], level: u32, chunk_size: u32) -> Result<Vec<u8>, String> {
    let mut options =
        LzmaOptions::new_preset(level).map_err(|e| format!("xz level {level}: {e}"))?;
    options.dict_size(chunk_size.max(MIN_DICT));
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let mut stream = Stream::new_stream_encoder(&filters, Check::None)
        .map_err(|e| format!("xz encoder: {e}"))?;
    let mut out = Vec::with_capacity(max_stored_len(raw.len() as u32) as usize);
    let mut consumed = 0;
    loop {
        let status = stream
            .process_vec(&raw[consumed..], &mut out, Action::Finish)
            .map_err(|e| format!("xz: {e}"))?;
        consumed = stream.total_in() as usize;
        match status {
            Status::StreamEnd => return Ok(out),
            _ if out.len() == out.capacity() => out.reserve(1 << 16),
            _ => {}
        }
    }
}

/// Decodes the xz stream `stored` into exactly `out.len()` bytes.
pub fn decompress(stored: &[u8], out: &mut [u8], chunk_size: u32) -> Result<(), String> {
    let mut stream = Stream::new_stream_decoder(decoder_memlimit(chunk_size), 0)
        .map_err(|e| format!("xz decoder: {e}"))?;
    let fail = |e: liblzma::stream::Error| match e {
        liblzma::stream::Error::MemLimit => format!(
            "the xz stream needs more than {} bytes of memory to decode",
            decoder_memlimit(chunk_size)
        ),
        e => format!("xz: {e}"),
    };
    loop {
        let (read, written) = (stream.total_in() as usize, stream.total_out() as usize);
        let status = stream
            .process(&stored[read..], &mut out[written..], Action::Finish)
            .map_err(fail)?;
        let (now_read, now_written) = (stream.total_in() as usize, stream.total_out() as usize);
        if status == Status::StreamEnd {
            return match (now_written == out.len(), now_read == stored.len()) {
                (false, _) => Err(format!(
                    "decompressed to {now_written} bytes, expected {}",
                    out.len()
                )),
                (true, false) => Err("stored bytes are not exactly one xz stream".into()),
                (true, true) => Ok(()),
            };
        }
        if (now_read, now_written) == (read, written) {
            return Err(match now_written == out.len() {
                true => format!("the xz stream holds more than {} bytes", out.len()),
                false => "the xz stream is truncated".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_within_the_bound_for_any_content() {
        for raw in [
            vec![0u8; 1 << 20],
            noise(1 << 20),
            noise(4096),
            noise(70_001),
            vec![],
        ] {
            let stored = compress(&raw, 6, 1 << 20).unwrap();
            assert!(
                stored.len() as u64 <= max_stored_len(raw.len() as u32),
                "{} raw",
                raw.len()
            );
            let mut out = vec![0xee; raw.len()];
            decompress(&stored, &mut out, 1 << 20).unwrap();
            assert!(out == raw);
        }
    }

    /// xz-utils (installed by scripts/deps) decodes a chunk as it is.
    #[test]
    fn xz_utils_decodes_a_chunk() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let raw = [noise(50_000), vec![7u8; 50_000]].concat();
        let stored = compress(&raw, 6, 1 << 16).unwrap();
        let mut xz = Command::new("xz")
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz (xz-utils) is installed by scripts/deps");
        xz.stdin.take().unwrap().write_all(&stored).unwrap();
        let out = xz.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == raw);
    }

    #[test]
    fn refuses_too_much_output_too_little_trailing_bytes_and_a_big_dictionary() {
        let raw = noise(10_000);
        let stored = compress(&raw, 1, 1 << 20).unwrap();
        let mut short = vec![0; raw.len() - 1];
        let err = decompress(&stored, &mut short, 1 << 20).unwrap_err();
        assert!(err.contains("more than 9999"), "{err}");
        let mut long = vec![0; raw.len() + 1];
        let err = decompress(&stored, &mut long, 1 << 20).unwrap_err();
        assert!(err.contains("expected 10001"), "{err}");
        let mut out = vec![0; raw.len()];
        let err = decompress(&stored[..stored.len() - 1], &mut out, 1 << 20).unwrap_err();
        assert!(err.contains("truncated") || err.contains("xz"), "{err}");
        let twice = [stored.clone(), stored.clone()].concat();
        let err = decompress(&twice, &mut out, 1 << 20).unwrap_err();
        assert!(err.contains("exactly one xz stream"), "{err}");
        // Made with a 16 MiB dictionary, read as an image of 4 KiB chunks.
        let big_dict = compress(&raw, 6, 16 << 20).unwrap();
        let err = decompress(&big_dict, &mut out, 4096).unwrap_err();
        assert!(err.contains("memory"), "{err}");
    }
}

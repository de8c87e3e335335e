//! Where a bundle comes from: a file, standard input (`-`), or an HTTP(S) URL. Each is
//! just a reader; the bundle reader streams it front to back, nothing is staged.
use std::io::Read;

/// Read buffer in front of a source. Small on purpose: chunk reads (1 MiB) larger than
/// it go straight into the chunk buffer instead of being copied twice.
const SOURCE_BUFFER: usize = 64 << 10;

/// A bundle source that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open bundle {path}: {message}")]
    File { path: String, message: String },
    #[error("cannot fetch bundle {url}: {message}")]
    Http { url: String, message: String },
}

/// Opens `source`: `-` is stdin, `http://` and `https://` are fetched, anything else
/// is a path.
pub fn open_source(source: &str) -> Result<Box<dyn Read>, SourceError> {
    if source == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        return open_http(source);
    }
    let file = std::fs::File::open(source).map_err(|e| SourceError::File {
        path: source.to_string(),
        message: e.to_string(),
    })?;
    Ok(Box::new(std::io::BufReader::with_capacity(
        SOURCE_BUFFER,
        file,
    )))
}

fn open_http(url: &str) -> Result<Box<dyn Read>, SourceError> {
    let http_err = |message: String| SourceError::Http {
        url: url.to_string(),
        message,
    };
    let response = ureq::get(url).call().map_err(|e| http_err(e.to_string()))?;
    let reader = response.into_body().into_reader();
    Ok(Box::new(std::io::BufReader::with_capacity(
        SOURCE_BUFFER,
        reader,
    )))
}

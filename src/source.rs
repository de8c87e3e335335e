//! Where a bundle comes from: a file, standard input (`-`), or an HTTP(S) URL. Each is
//! just a reader; the bundle reader streams it front to back, nothing is staged.
//!
//! HTTP has a connect timeout and a read (idle) timeout, so a server that accepts and
//! then stalls cannot hold an install, and its lock, forever: a stalled read fails with
//! an error that names the URL and how long it waited. Any other `scheme://` is refused
//! by name rather than opened as a file.
use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

/// Read buffer in front of a source. Small on purpose: chunk reads (1 MiB) larger than
/// it go straight into the chunk buffer instead of being copied twice.
const SOURCE_BUFFER: usize = 64 << 10;

/// URL schemes bascule fetches.
const HTTP_SCHEMES: [&str; 2] = ["http", "https"];

/// The `[http]` table of `system.toml`: how long a fetch may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds to resolve the host, connect and finish the TLS handshake.
    pub connect_timeout_secs: u64,
    /// Seconds one read may wait for data (headers or body) before the fetch fails;
    /// restarts with every read, so a slow but moving download is never cut.
    pub read_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_secs: 30,
            read_timeout_secs: 60,
        }
    }
}

/// A bundle source that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open bundle {path}: {message}")]
    File { path: String, message: String },
    #[error("cannot fetch bundle {url}: {message}")]
    Http { url: String, message: String },
    #[error("cannot fetch bundle {url}: no response within the {secs} s {what} timeout ([http] {key} in system.toml)")]
    HttpTimeout {
        url: String,
        what: &'static str,
        key: &'static str,
        secs: u64,
    },
    #[error("unsupported URL scheme {scheme:?} in {url}: bascule reads a path, - (stdin), or an http:// or https:// URL")]
    UnsupportedScheme { url: String, scheme: String },
}

/// Opens `source`: `-` is stdin, `http://` and `https://` are fetched with the
/// timeouts of `http`, another `scheme://` is refused, anything else is a path.
pub fn open_source(source: &str, http: &HttpConfig) -> Result<Box<dyn Read>, SourceError> {
    if source == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    if let Some(scheme) = url_scheme(source) {
        if HTTP_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return open_http(source, http);
        }
        return Err(SourceError::UnsupportedScheme {
            url: source.to_string(),
            scheme: scheme.to_string(),
        });
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

/// The scheme of `source` if it reads as `scheme://…` (RFC 3986: a letter, then
/// letters, digits, `+`, `-` or `.`).
fn url_scheme(source: &str) -> Option<&str> {
    let (scheme, _) = source.split_once("://")?;
    let mut chars = scheme.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (first_is_letter && rest_ok).then_some(scheme)
}

fn open_http(url: &str, http: &HttpConfig) -> Result<Box<dyn Read>, SourceError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(http.connect_timeout_secs)))
        .timeout_per_read(Some(Duration::from_secs(http.read_timeout_secs)))
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .map_err(|e| fetch_error(url, http, e))?;
    let body = HttpBody {
        url: url.to_string(),
        read_timeout_secs: http.read_timeout_secs,
        inner: response.into_body().into_reader(),
    };
    Ok(Box::new(std::io::BufReader::with_capacity(
        SOURCE_BUFFER,
        body,
    )))
}

/// The error of a fetch that failed before the body: a timeout says which one.
fn fetch_error(url: &str, http: &HttpConfig, err: ureq::Error) -> SourceError {
    let timeout = |what, key, secs| SourceError::HttpTimeout {
        url: url.to_string(),
        what,
        key,
        secs,
    };
    match err {
        ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
            timeout("connect", "connect_timeout_secs", http.connect_timeout_secs)
        }
        ureq::Error::Timeout(ureq::Timeout::PerRead) => {
            timeout("read", "read_timeout_secs", http.read_timeout_secs)
        }
        other => SourceError::Http {
            url: url.to_string(),
            message: other.to_string(),
        },
    }
}

/// An HTTP response body whose read errors name the URL, and a stall as a stall.
struct HttpBody<R> {
    url: String,
    read_timeout_secs: u64,
    inner: R,
}

impl<R: Read> Read for HttpBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let message = if is_read_timeout(&e) {
                format!(
                    "{}: the server sent no data for {} s and the download stalled \
                     ([http] read_timeout_secs in system.toml)",
                    self.url, self.read_timeout_secs
                )
            } else {
                format!("{}: {e}", self.url)
            };
            std::io::Error::new(e.kind(), message)
        })
    }
}

/// Whether a body read failed because no data came within the read timeout.
fn is_read_timeout(err: &std::io::Error) -> bool {
    let ureq_timeout = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|e| matches!(e, ureq::Error::Timeout(_)));
    ureq_timeout || err.kind() == std::io::ErrorKind::TimedOut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_what_precedes_colon_slash_slash() {
        assert_eq!(url_scheme("ftp://host/b.bundle"), Some("ftp"));
        assert_eq!(url_scheme("HTTPS://host/b"), Some("HTTPS"));
        assert_eq!(url_scheme("git+ssh://x"), Some("git+ssh"));
        assert_eq!(url_scheme("/srv/b.bundle"), None);
        assert_eq!(url_scheme("./odd://name"), None);
        assert_eq!(url_scheme("1x://y"), None);
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        let err = open_source("ftp://example.org/b.bundle", &HttpConfig::default())
            .err()
            .expect("ftp refused");
        assert!(
            err.to_string().contains("unsupported URL scheme \"ftp\""),
            "{err}"
        );
    }
}

//! grubenv files as GRUB itself reads them: bytes, not UTF-8, duplicates kept in file
//! order, so hostile blocks (non-UTF-8 values, duplicate names) can be written and read
//! back exactly. bascule's own codec (`GrubCodec`) builds the valid ones.
//!
//! GRUB's `load_env` checks only the signature line, then sets every `name=value` line
//! in file order (a later duplicate wins); `save_env` rewrites the first line of each
//! saved name in place. [`RawEnv::effective`] is what `load_env` leaves in GRUB's
//! variables.
use std::collections::BTreeMap;

use bascule_hal::env::grub::GRUB_ENV_SIGNATURE;
use bascule_hal::EnvVars;

/// Variables by name as GRUB sees them after `load_env` (last duplicate wins), bytes.
pub type ByteVars = BTreeMap<Vec<u8>, Vec<u8>>;

/// The lines of a grubenv block that GRUB accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEnv {
    /// `name=value` pairs in file order, values unescaped.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawEnv {
    /// Parses a block; `None` when GRUB's `load_env` refuses it (no signature line).
    pub fn parse(bytes: &[u8]) -> Option<RawEnv> {
        let mut pos = bytes
            .starts_with(GRUB_ENV_SIGNATURE.as_bytes())
            .then_some(GRUB_ENV_SIGNATURE.len())?;
        let mut pairs = Vec::new();
        while pos < bytes.len() {
            let (line, next) = unescape_line(bytes, pos);
            pos = next;
            if line.first() == Some(&b'#') || line.is_empty() {
                continue;
            }
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                pairs.push((line[..eq].to_vec(), line[eq + 1..].to_vec()));
            }
        }
        Some(RawEnv { pairs })
    }

    /// What `load_env` leaves set: each name's last value.
    pub fn effective(&self) -> ByteVars {
        self.pairs.iter().cloned().collect()
    }
}

/// The unescaped line at `pos` and the index after its newline. A `\` makes the next
/// byte literal (an escaped newline stays in the value).
fn unescape_line(bytes: &[u8], mut pos: usize) -> (Vec<u8>, usize) {
    let mut line = Vec::new();
    while pos < bytes.len() {
        match bytes[pos] {
            b'\\' if pos + 1 < bytes.len() => {
                line.push(bytes[pos + 1]);
                pos += 2;
            }
            b'\n' => return (line, pos + 1),
            b => {
                line.push(b);
                pos += 1;
            }
        }
    }
    (line, pos)
}

/// Builds a 1024-byte `#`-padded block from raw lines (already escaped as needed).
pub fn raw_block(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = GRUB_ENV_SIGNATURE.as_bytes().to_vec();
    for line in lines {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.resize(out.len().max(1024), b'#');
    out
}

/// The variables bascule's model reads: the same bytes, each name's last value.
pub fn model_vars(vars: &ByteVars) -> EnvVars {
    vars.iter().map(|(k, v)| (&k[..], &v[..])).collect()
}

/// The bytes GRUB should hold after the model's boot left `after`.
pub fn model_bytes(after: &EnvVars) -> ByteVars {
    after
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// `vars` as `name=value` text with non-printable bytes escaped, for reports.
pub fn show(vars: &ByteVars) -> String {
    let words: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{}={:?}", escape(k), escape(v)))
        .collect();
    format!("{{{}}}", words.join(" "))
}

fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bascule_hal::env::GrubCodec;

    #[test]
    fn parses_what_the_codec_writes_and_hostile_lines() {
        let vars: EnvVars = [("ORDER", "A B"), ("n", "x\\y\nz")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let block = GrubCodec::default().encode(&vars).unwrap();
        assert_eq!(
            model_vars(&RawEnv::parse(&block).unwrap().effective()),
            vars
        );
        let raw = RawEnv::parse(&raw_block(&[b"A_TRY=1", b"A_TRY=0", b"v=caf\xe9"])).unwrap();
        assert_eq!(raw.pairs.len(), 3);
        assert_eq!(raw.effective()[&b"A_TRY"[..]], b"0");
        assert_eq!(RawEnv::parse(b""), None);
        assert_eq!(RawEnv::parse(b"# GRUB Environment Blo"), None);
    }

    #[test]
    fn unchanged_values_keep_their_bytes() {
        let before = RawEnv::parse(&raw_block(&[b"v=caf\xe9", b"A_TRY=0"]))
            .unwrap()
            .effective();
        let mut after = model_vars(&before);
        after.insert("A_TRY", "1");
        let bytes = model_bytes(&after);
        assert_eq!(bytes[&b"v"[..]], b"caf\xe9");
        assert_eq!(bytes[&b"A_TRY"[..]], b"1");
    }
}

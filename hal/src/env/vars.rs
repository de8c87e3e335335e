//! The variables of an environment as byte strings: [`EnvBytes`] (a name or a value)
//! and [`EnvVars`] (the whole set, sorted by name).
//!
//! U-Boot, `fw_printenv`/`fw_setenv` (libubootenv) and `grub-editenv` treat names and
//! values as bytes: a value may hold any byte but NUL (U-Boot) or be any byte string
//! (GRUB escapes newlines). bascule does the same, so a variable it does not own (a
//! vendor note in Latin-1, say) is read without error and written back byte for byte
//! by every commit. bascule's own variables are ASCII; [`EnvBytes::to_str`] reads them.
//!
//! Conveniences keep call sites short: `vars.insert("BOOT_A_LEFT", "3")`,
//! `vars["BOOT_ORDER"] == "A B"`, `vars.get("X").and_then(EnvBytes::to_str)`.
//!
//! # Serialized form
//! - Binary formats (postcard, the native env's payload): a byte string. postcard
//!   writes a byte string exactly like a string (varint length, then the bytes), so
//!   copies written when values were `String`s read back unchanged.
//! - Human-readable formats (`bascule status --json`): a UTF-8 value is a JSON string;
//!   a value that is not UTF-8 is an object `{"hex": "<lowercase hex of the bytes>"}`.
//!   A name that is not UTF-8 (JSON keys must be strings) is written with each byte
//!   outside printable ASCII escaped as `\xNN` (Rust's `escape_ascii`).
use alloc::collections::btree_map::{self, BTreeMap};
use alloc::string::String;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A name or a value of an environment variable: bytes, usually ASCII.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvBytes(Vec<u8>);

/// A variable name (U-Boot treats names as bytes too).
pub type EnvName = EnvBytes;
/// A variable value.
pub type EnvValue = EnvBytes;

impl EnvBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The text, when the bytes are UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.0).ok()
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the bytes start with `prefix`.
    pub fn starts_with(&self, prefix: impl AsRef<[u8]>) -> bool {
        self.0.starts_with(prefix.as_ref())
    }

    /// Whether `byte` occurs.
    pub fn contains(&self, byte: u8) -> bool {
        self.0.contains(&byte)
    }
}

impl From<&str> for EnvBytes {
    fn from(s: &str) -> Self {
        EnvBytes(s.as_bytes().to_vec())
    }
}

impl From<String> for EnvBytes {
    fn from(s: String) -> Self {
        EnvBytes(s.into_bytes())
    }
}

impl From<&String> for EnvBytes {
    fn from(s: &String) -> Self {
        EnvBytes(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for EnvBytes {
    fn from(bytes: Vec<u8>) -> Self {
        EnvBytes(bytes)
    }
}

impl From<&[u8]> for EnvBytes {
    fn from(bytes: &[u8]) -> Self {
        EnvBytes(bytes.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for EnvBytes {
    fn from(bytes: &[u8; N]) -> Self {
        EnvBytes(bytes.to_vec())
    }
}

impl From<&EnvBytes> for EnvBytes {
    fn from(bytes: &EnvBytes) -> Self {
        bytes.clone()
    }
}

impl AsRef<[u8]> for EnvBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for EnvBytes {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<str> for EnvBytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for EnvBytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<String> for EnvBytes {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<EnvBytes> for str {
    fn eq(&self, other: &EnvBytes) -> bool {
        self.as_bytes() == other.0
    }
}

impl PartialEq<EnvBytes> for &str {
    fn eq(&self, other: &EnvBytes) -> bool {
        self.as_bytes() == other.0
    }
}

/// Lossy: a byte sequence that is not UTF-8 shows as U+FFFD.
impl fmt::Display for EnvBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// Quoted, with bytes outside printable ASCII escaped (`"caf\xe9"`).
impl fmt::Debug for EnvBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// Lowercase hex of some bytes.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for EnvBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(&self.0);
        }
        match self.to_str() {
            Some(text) => serializer.serialize_str(text),
            None => {
                let mut s = serializer.serialize_struct("EnvBytes", 1)?;
                s.serialize_field("hex", &Hex(&self.0))?;
                s.end()
            }
        }
    }
}

/// A name as a map key: text in human-readable formats (see the module docs).
struct NameKey<'a>(&'a EnvBytes);

impl Serialize for NameKey<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (serializer.is_human_readable(), self.0.to_str()) {
            (false, _) => serializer.serialize_bytes(&self.0 .0),
            (true, Some(text)) => serializer.serialize_str(text),
            (true, None) => serializer.collect_str(&self.0 .0.escape_ascii()),
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = EnvBytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string, a string or {\"hex\": ...}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvBytes, E> {
        Ok(EnvBytes::from(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<EnvBytes, E> {
        Ok(EnvBytes::from(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<EnvBytes, E> {
        Ok(EnvBytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvBytes, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(EnvBytes(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvBytes, A::Error> {
        let mut bytes = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "hex" {
                return Err(de::Error::unknown_field(&key, &["hex"]));
            }
            let hex: String = map.next_value()?;
            bytes = Some(parse_hex(&hex).ok_or_else(|| {
                de::Error::invalid_value(de::Unexpected::Str(&hex), &"an even count of hex digits")
            })?);
        }
        bytes
            .map(EnvBytes)
            .ok_or_else(|| de::Error::missing_field("hex"))
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = core::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

impl<'de> Deserialize<'de> for EnvBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(BytesVisitor)
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

/// The variables of an environment, sorted by name (byte order).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(transparent)]
pub struct EnvVars(BTreeMap<EnvName, EnvValue>);

impl EnvVars {
    /// No variables.
    pub fn new() -> Self {
        EnvVars(BTreeMap::new())
    }

    /// The value of `name`.
    pub fn get<N: AsRef<[u8]> + ?Sized>(&self, name: &N) -> Option<&EnvValue> {
        self.0.get(name.as_ref())
    }

    /// The value of `name` when it is set and UTF-8.
    pub fn get_str<N: AsRef<[u8]> + ?Sized>(&self, name: &N) -> Option<&str> {
        self.get(name).and_then(EnvBytes::to_str)
    }

    /// Whether `name` is set.
    pub fn contains_key<N: AsRef<[u8]> + ?Sized>(&self, name: &N) -> bool {
        self.0.contains_key(name.as_ref())
    }

    /// Sets `name` to `value`; returns the value it replaced.
    pub fn insert(
        &mut self,
        name: impl Into<EnvName>,
        value: impl Into<EnvValue>,
    ) -> Option<EnvValue> {
        self.0.insert(name.into(), value.into())
    }

    /// The entry of `name`, to read or set it in place.
    pub fn entry(&mut self, name: impl Into<EnvName>) -> btree_map::Entry<'_, EnvName, EnvValue> {
        self.0.entry(name.into())
    }

    /// Unsets `name`; returns its value.
    pub fn remove<N: AsRef<[u8]> + ?Sized>(&mut self, name: &N) -> Option<EnvValue> {
        self.0.remove(name.as_ref())
    }

    /// Keeps only the variables for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&EnvName, &EnvValue) -> bool) {
        self.0.retain(|k, v| keep(k, v));
    }

    /// The variables in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, EnvName, EnvValue> {
        self.0.iter()
    }

    /// The names in order.
    pub fn keys(&self) -> btree_map::Keys<'_, EnvName, EnvValue> {
        self.0.keys()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl Serialize for EnvVars {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (NameKey(k), v)))
    }
}

impl<Q: AsRef<[u8]> + ?Sized> core::ops::Index<&Q> for EnvVars {
    type Output = EnvValue;

    /// The value of `name`; panics naming the variable when it is not set.
    fn index(&self, name: &Q) -> &EnvValue {
        match self.get(name) {
            Some(value) => value,
            None => panic!(
                "environment variable {:?} is not set",
                EnvBytes::from(name.as_ref())
            ),
        }
    }
}

impl<N: Into<EnvName>, V: Into<EnvValue>> FromIterator<(N, V)> for EnvVars {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        EnvVars(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<N: Into<EnvName>, V: Into<EnvValue>> Extend<(N, V)> for EnvVars {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        self.0
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl IntoIterator for EnvVars {
    type Item = (EnvName, EnvValue);
    type IntoIter = btree_map::IntoIter<EnvName, EnvValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a EnvVars {
    type Item = (&'a EnvName, &'a EnvValue);
    type IntoIter = btree_map::Iter<'a, EnvName, EnvValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn latin1() -> EnvVars {
        let mut v = EnvVars::new();
        v.insert("note", &b"caf\xe9"[..]);
        v.insert("BOOT_ORDER", "A B");
        v
    }

    #[test]
    fn text_conveniences() {
        let v = latin1();
        assert!(v["BOOT_ORDER"] == "A B");
        assert_eq!(v.get_str("BOOT_ORDER"), Some("A B"));
        assert_eq!(v.get_str("note"), None);
        assert_eq!(v["note"].as_bytes(), b"caf\xe9");
        assert_eq!(format!("{}", v["note"]), "caf\u{fffd}");
        assert_eq!(format!("{:?}", v["note"]), "\"caf\\xe9\"");
    }

    #[test]
    fn postcard_reads_a_map_of_strings_as_bytes() {
        let mut strings = BTreeMap::new();
        strings.insert(String::from("a"), String::from("1"));
        let old = postcard::to_allocvec(&strings).unwrap();
        let vars: EnvVars = postcard::from_bytes(&old).unwrap();
        assert_eq!(vars, [("a", "1")].into_iter().collect());
        assert_eq!(postcard::to_allocvec(&vars).unwrap(), old);
        let v = latin1();
        let back: EnvVars = postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn hex_parses_what_hex_writes() {
        assert_eq!(format!("{}", Hex(b"caf\xe9")), "636166e9");
        assert_eq!(parse_hex("636166e9").as_deref(), Some(&b"caf\xe9"[..]));
        assert_eq!(parse_hex("6"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}

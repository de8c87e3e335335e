//! Signing keys, key ids and the device keyring.
//!
//! Key files are one line of text: `bascule-ed25519-secret <64 hex>` (the 32-byte seed,
//! file mode 0600) and `bascule-ed25519-public <64 hex>` (the 32-byte public key). A
//! [`KeyId`] is the first 8 bytes of SHA-256 of the public key. A [`Keyring`] is every
//! `*.pub` file of one directory; subdirectories are ignored (room for a later
//! `revoked/`). Verification is ed25519 `verify_strict`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use super::{hex, sha256, BundleError};

const SECRET_TAG: &str = "bascule-ed25519-secret";
const PUBLIC_TAG: &str = "bascule-ed25519-public";

/// Names a public key: the first 8 bytes of SHA-256 of its 32 bytes. Displays as 16 hex chars.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = sha256(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Creates a new key pair: `PREFIX.key` (secret seed, mode 0600) and `PREFIX.pub`.
/// Refuses to overwrite either file.
pub fn keygen(out_prefix: &Path) -> Result<KeyId, BundleError> {
    let key_path = with_suffix(out_prefix, ".key");
    let pub_path = with_suffix(out_prefix, ".pub");
    for path in [&key_path, &pub_path] {
        if path.exists() {
            return Err(key_err(path, "already exists; refusing to overwrite a key"));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| BundleError::Entropy {
        message: e.to_string(),
    })?;
    let signing = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let verifying = signing.verifying_key();

    let mut secret = format!("{SECRET_TAG} {}\n", hex(signing.as_bytes())).into_bytes();
    let written = write_new_file(&key_path, &secret, 0o600);
    secret.fill(0);
    std::hint::black_box(&secret);
    written?;

    let public = format!("{PUBLIC_TAG} {}\n", hex(verifying.as_bytes()));
    if let Err(e) = write_new_file(&pub_path, public.as_bytes(), 0o644) {
        // Do not leave a secret key without its public half behind.
        if let Err(rm) = std::fs::remove_file(&key_path) {
            log::warn!("could not remove {}: {rm}", key_path.display());
        }
        return Err(e);
    }
    Ok(KeyId::of(&verifying))
}

/// Loads a secret key written by [`keygen`]. Refuses a file readable by group or others.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    let mut text = std::fs::read(path).map_err(|e| key_err(path, &e.to_string()))?;
    if text.starts_with(PUBLIC_TAG.as_bytes()) {
        return Err(BundleError::PublicKeyForSigning {
            path: path.to_path_buf(),
        });
    }
    let meta = std::fs::metadata(path).map_err(|e| key_err(path, &e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        text.fill(0);
        return Err(key_err(
            path,
            &format!("is accessible by group or others (mode {mode:04o}); run chmod 600"),
        ));
    }
    let seed = parse_key_text(path, &text, SECRET_TAG);
    text.fill(0);
    std::hint::black_box(&text);
    Ok(SigningKey::from_bytes(&seed?))
}

/// Loads a public key written by [`keygen`], refusing weak (small-order) keys.
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, BundleError> {
    let text = std::fs::read(path).map_err(|e| key_err(path, &e.to_string()))?;
    let bytes = parse_key_text(path, &text, PUBLIC_TAG)?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| key_err(path, "is not a valid ed25519 public key"))?;
    if key.is_weak() {
        return Err(key_err(path, "is a weak ed25519 key"));
    }
    Ok(key)
}

/// The public keys a device accepts bundles from.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<KeyId, VerifyingKey>,
    /// Keys listed in `revoked/`: refused even if also trusted.
    revoked: BTreeSet<KeyId>,
}

impl Keyring {
    /// A keyring holding exactly `keys`.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(|k| (KeyId::of(&k), k)).collect(),
            revoked: BTreeSet::new(),
        }
    }

    /// Refuses bundles signed by `keys` from now on, even where they are trusted.
    pub fn revoke(&mut self, keys: impl IntoIterator<Item = VerifyingKey>) {
        for key in keys {
            let id = KeyId::of(&key);
            self.keys.remove(&id);
            self.revoked.insert(id);
        }
    }

    /// Loads every `*.pub` file in `dir` (not subdirectories) as trusted, and every
    /// `*.pub` in `dir/revoked/` as revoked. Any malformed key file is an error; so is
    /// a directory without a trusted key.
    pub fn load_dir(dir: &Path) -> Result<Keyring, BundleError> {
        let trusted = load_pub_files(dir)?;
        if trusted.is_empty() {
            return Err(BundleError::NoKeys {
                dir: dir.to_path_buf(),
            });
        }
        let mut ring = Keyring::from_keys(trusted);
        let revoked_dir = dir.join("revoked");
        if revoked_dir.is_dir() {
            ring.revoke(load_pub_files(&revoked_dir)?);
        }
        Ok(ring)
    }

    /// Checks `sig` over `msg` with the key named `key_id` (ed25519 `verify_strict`).
    pub fn verify(&self, key_id: &KeyId, msg: &[u8], sig: &[u8; 64]) -> Result<(), BundleError> {
        if self.revoked.contains(key_id) {
            return Err(BundleError::RevokedKey { key_id: *key_id });
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or(BundleError::UnknownKey { key_id: *key_id })?;
        key.verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| BundleError::BadSignature { key_id: *key_id })
    }

    /// The ids of all trusted keys, sorted.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }
}

/// Every `*.pub` file directly in `dir`, in name order.
fn load_pub_files(dir: &Path) -> Result<Vec<VerifyingKey>, BundleError> {
    let context = || format!("reading keyring directory {}", dir.display());
    let entries = std::fs::read_dir(dir).map_err(|e| BundleError::io(context(), e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| BundleError::io(context(), e))?.path();
        if path.extension().is_some_and(|ext| ext == "pub") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| load_public_key(p)).collect()
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(prefix.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

fn key_err(path: &Path, message: &str) -> BundleError {
    BundleError::KeyFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BundleError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| key_err(path, &e.to_string()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| key_err(path, &e.to_string()))
}

/// Parses `<tag> <64 hex>` (surrounding whitespace allowed) into 32 bytes.
fn parse_key_text(path: &Path, text: &[u8], tag: &str) -> Result<[u8; 32], BundleError> {
    let bad = || {
        key_err(
            path,
            &format!("expected one line \"{tag} <64 hex digits>\""),
        )
    };
    let text = std::str::from_utf8(text).map_err(|_| bad())?.trim();
    let (found_tag, hex_part) = text.split_once(' ').ok_or_else(bad)?;
    if found_tag != tag {
        return Err(bad());
    }
    let digits = hex_part.trim().as_bytes();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_secret_0600_and_public_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("release");
        let id = keygen(&prefix).unwrap();
        let key_path = dir.path().join("release.key");
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let secret = load_signing_key(&key_path).unwrap();
        let public = load_public_key(&dir.path().join("release.pub")).unwrap();
        assert_eq!(secret.verifying_key(), public);
        assert_eq!(KeyId::of(&public), id);
        let ring = Keyring::load_dir(dir.path()).unwrap();
        assert_eq!(ring.ids(), vec![id]);
    }

    #[test]
    fn keygen_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k");
        keygen(&prefix).unwrap();
        let before = std::fs::read(dir.path().join("k.key")).unwrap();
        assert!(matches!(keygen(&prefix), Err(BundleError::KeyFile { .. })));
        assert_eq!(std::fs::read(dir.path().join("k.key")).unwrap(), before);
    }

    #[test]
    fn load_signing_key_names_a_public_key_as_such() {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("k")).unwrap();
        let pub_path = dir.path().join("k.pub");
        assert_eq!(
            load_signing_key(&pub_path).unwrap_err(),
            BundleError::PublicKeyForSigning { path: pub_path }
        );
    }

    #[test]
    fn load_signing_key_refuses_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("k")).unwrap();
        let key_path = dir.path().join("k.key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&key_path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn key_id_displays_as_16_hex() {
        let id = KeyId([0x1a, 0x2b, 0, 1, 2, 3, 0xfe, 0xff]);
        assert_eq!(id.to_string(), "1a2b00010203feff");
        assert_eq!(format!("{id:?}"), "KeyId(1a2b00010203feff)");
    }

    #[test]
    fn keyring_rejects_empty_dir_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "not a key").unwrap();
        std::fs::create_dir(dir.path().join("revoked.pub")).unwrap();
        assert_eq!(
            Keyring::load_dir(dir.path()).unwrap_err(),
            BundleError::NoKeys {
                dir: dir.path().to_path_buf()
            }
        );
    }

    #[test]
    fn revoked_keys_are_refused_even_when_trusted() {
        use ed25519_dalek::Signer;
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        keygen(&old).unwrap();
        let new_id = keygen(&new).unwrap();
        std::fs::create_dir(dir.path().join("revoked")).unwrap();
        let old_pub = with_suffix(&old, ".pub");
        std::fs::copy(&old_pub, dir.path().join("revoked/old.pub")).unwrap();
        let ring = Keyring::load_dir(dir.path()).unwrap();
        assert_eq!(ring.ids(), vec![new_id]);
        let old_key = load_signing_key(&with_suffix(&old, ".key")).unwrap();
        let sig = old_key.sign(b"manifest").to_bytes();
        let old_id = KeyId::of(&old_key.verifying_key());
        let err = ring.verify(&old_id, b"manifest", &sig).unwrap_err();
        assert_eq!(err, BundleError::RevokedKey { key_id: old_id });
        assert!(err.to_string().contains("revoked"));
    }

    #[test]
    fn keyring_rejects_malformed_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pub");
        for text in [
            "bascule-ed25519-secret 00",
            "bascule-ed25519-public 0123",
            &format!("bascule-ed25519-public {}", "zz".repeat(32)),
            // The identity point: a small-order (weak) key.
            &format!("bascule-ed25519-public 01{}", "00".repeat(31)),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Keyring::load_dir(dir.path()).unwrap_err();
            assert!(
                matches!(&err, BundleError::KeyFile { path: p, .. } if *p == path),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn keyring_verify_names_unknown_and_bad_signatures() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let ring = Keyring::from_keys([a.verifying_key()]);
        let id_a = KeyId::of(&a.verifying_key());
        let id_b = KeyId::of(&b.verifying_key());
        use ed25519_dalek::Signer;
        let sig = a.sign(b"msg").to_bytes();
        assert_eq!(ring.verify(&id_a, b"msg", &sig), Ok(()));
        assert_eq!(
            ring.verify(&id_a, b"msh", &sig),
            Err(BundleError::BadSignature { key_id: id_a })
        );
        assert_eq!(
            ring.verify(&id_b, b"msg", &b.sign(b"msg").to_bytes()),
            Err(BundleError::UnknownKey { key_id: id_b })
        );
    }
}

//! Options for `bascule bundle create` in the end-to-end tests, and the arguments
//! they make.
use std::path::{Path, PathBuf};

use super::COMPATIBLE;

/// Options for `bascule bundle create`.
#[derive(Debug, Clone)]
pub struct BundleOpts {
    pub version: String,
    pub compatible: String,
    pub compress: &'static str,
    /// xz preset: 1 by default, fast to build in a debug binary (decoding needs the
    /// same memory at any preset, since the dictionary is one chunk).
    pub xz_level: u32,
    pub chunk_size: u32,
    pub security_version: u32,
    /// Secret key; `None` means the fixture's key.
    pub key: Option<PathBuf>,
    pub class: String,
    /// `--min-from-version`, when set.
    pub min_from_version: Option<String>,
}

impl Default for BundleOpts {
    fn default() -> Self {
        BundleOpts {
            version: "2.0.0".into(),
            compatible: COMPATIBLE.into(),
            compress: "zstd",
            xz_level: 1,
            chunk_size: 64 << 10,
            security_version: 0,
            key: None,
            class: "rootfs".into(),
            min_from_version: None,
        }
    }
}

impl BundleOpts {
    /// The arguments of `bascule bundle create` making `out` from `image`, signed
    /// with `key`.
    pub fn create_args(&self, key: &Path, image: &Path, out: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["bundle", "create", "--key"].map(String::from).into();
        args.push(key.display().to_string());
        for (flag, value) in [
            ("--version", self.version.clone()),
            ("--compatible", self.compatible.clone()),
            ("--image", format!("{}={}", self.class, image.display())),
            ("--compress", self.compress.to_string()),
            ("--xz-level", self.xz_level.to_string()),
            ("--chunk-size", self.chunk_size.to_string()),
            ("--security-version", self.security_version.to_string()),
            ("--out", out.display().to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        if let Some(min_from) = &self.min_from_version {
            args.extend(["--min-from-version".to_string(), min_from.clone()]);
        }
        args
    }

    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    pub fn compress(mut self, c: &'static str) -> Self {
        self.compress = c;
        self
    }
    pub fn secver(mut self, n: u32) -> Self {
        self.security_version = n;
        self
    }
    pub fn compatible(mut self, c: &str) -> Self {
        self.compatible = c.into();
        self
    }
    pub fn key(mut self, k: &Path) -> Self {
        self.key = Some(k.to_path_buf());
        self
    }
    pub fn min_from(mut self, v: &str) -> Self {
        self.min_from_version = Some(v.into());
        self
    }
    pub fn chunk_size(mut self, n: u32) -> Self {
        self.chunk_size = n;
        self
    }
}

//! `bascule keygen` and `bascule bundle create|info`.
use std::path::{Path, PathBuf};

use crate::bundle::{self, BundleReader, Compression, CreateOptions, Keyring};
use crate::source::{open_source, HttpConfig};
use crate::Error;

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Secret key file (from `bascule keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Release version (semver, e.g. 2.1.0).
    #[arg(long)]
    pub version: semver::Version,
    /// Hardware this release is for; must equal the device's `compatible`.
    #[arg(long)]
    pub compatible: String,
    /// Image for a slot class, as CLASS=PATH (repeatable), e.g. rootfs=rootfs.ext4.
    #[arg(long = "image", required = true, value_parser = parse_image)]
    pub images: Vec<(String, PathBuf)>,
    /// Payload compression: zstd, xz (smaller, slower to install) or none.
    #[arg(long, default_value = "zstd", value_parser = super::parse_compression)]
    pub compress: Compression,
    /// zstd compression level.
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
    /// xz preset (0-9). Each chunk is one xz stream with a dictionary of one chunk.
    #[arg(long, default_value_t = 6)]
    pub xz_level: u32,
    /// Uncompressed bytes per chunk (power of two, 4 KiB to 16 MiB).
    #[arg(long, default_value_t = 1 << 20)]
    pub chunk_size: u32,
    /// Anti-rollback counter: devices refuse bundles below the highest confirmed one.
    #[arg(long, default_value_t = 0)]
    pub security_version: u32,
    /// Oldest running version this release upgrades from directly (semver). Devices
    /// running an older version refuse the bundle and name this one; older bascule
    /// versions, which do not know the field, refuse it by its feature bit.
    #[arg(long)]
    pub min_from_version: Option<semver::Version>,
    /// Free-form build identifier.
    #[arg(long, default_value = "")]
    pub build_id: String,
    /// Bundle file to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    let (class, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not CLASS=PATH"))?;
    if class.is_empty() || path.is_empty() {
        return Err(format!("{s:?} is not CLASS=PATH"));
    }
    Ok((class.to_string(), PathBuf::from(path)))
}

pub fn keygen(out: &Path) -> Result<(), Error> {
    let id = bundle::keygen(out)?;
    println!(
        "key {id}: secret {}.key, public {}.pub",
        out.display(),
        out.display()
    );
    Ok(())
}

pub fn create(args: &CreateArgs) -> Result<(), Error> {
    let key = bundle::load_signing_key(&args.key)?;
    let opts = CreateOptions {
        version: args.version.clone(),
        compatible: args.compatible.clone(),
        security_version: args.security_version,
        build_id: args.build_id.clone(),
        min_from_version: args.min_from_version.clone(),
        images: args.images.clone(),
        compression: args.compress,
        chunk_size: args.chunk_size,
        zstd_level: args.zstd_level,
        xz_level: args.xz_level,
    };
    let manifest = bundle::create_bundle(&opts, &key, &args.out)?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "created {} ({} bytes): version {} for {:?}, {} image(s)",
        args.out.display(),
        size,
        manifest.version,
        manifest.compatible,
        manifest.images.len()
    );
    Ok(())
}

pub fn info(path: &Path, keyring: Option<&Path>, json: bool) -> Result<(), Error> {
    let source = open_source(&path.display().to_string(), &HttpConfig::default())?;
    let (reader, verdict) = match keyring {
        Some(dir) => {
            let ring = Keyring::load_dir(dir)?;
            match BundleReader::open(source, &ring) {
                Ok(r) => (r, "verified".to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        None => (
            BundleReader::open_unverified(source)?,
            "NOT checked (no --keyring given)".to_string(),
        ),
    };
    super::print::bundle_info(reader.manifest(), reader.key_id(), &verdict, json);
    Ok(())
}

//! Writing a bundle: chunk, hash and compress the images, sign the manifest, write atomically.
//!
//! Images are read once; their stored chunks are spooled to an anonymous temporary file
//! beside the output, because the manifest (which precedes the payload) is only known
//! once every chunk is hashed. The bundle is written to a temporary file in the output
//! directory, synced, then renamed over `out`: a reader never sees half a bundle.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::format::{Header, FORMAT_VERSION, MAX_MANIFEST_LEN};
use super::keys::KeyId;
use super::manifest::{ChunkEntry, Compression, ImageEntry, Manifest};
use super::reader::read_full;
use super::{sha256, xz, BundleError};

/// What to put into a bundle.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub version: semver::Version,
    pub compatible: String,
    pub security_version: u32,
    pub build_id: String,
    /// The oldest version the release upgrades from directly; sets
    /// [`FEATURE_MIN_FROM_VERSION`](super::FEATURE_MIN_FROM_VERSION) when present.
    pub min_from_version: Option<semver::Version>,
    /// (slot class, image file), in payload order.
    pub images: Vec<(String, PathBuf)>,
    pub compression: Compression,
    /// Uncompressed bytes per chunk: a power of two in [4 KiB, 16 MiB].
    pub chunk_size: u32,
    /// zstd level, used with [`Compression::Zstd`].
    pub zstd_level: i32,
    /// xz preset (0-9), used with [`Compression::Xz`].
    pub xz_level: u32,
}

/// Creates the bundle `out` signed with `key` and returns its manifest.
///
/// The options are checked before any image is read. `created_unix` is
/// `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
pub fn create_bundle(
    opts: &CreateOptions,
    key: &SigningKey,
    out: &Path,
) -> Result<Manifest, BundleError> {
    check_options(opts)?;
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let spool_ctx = || format!("spooling payload in {}", out_dir.display());
    let mut spool = tempfile::tempfile_in(out_dir).map_err(|e| BundleError::io(spool_ctx(), e))?;
    let mut images = Vec::with_capacity(opts.images.len());
    {
        let mut writer = BufWriter::new(&mut spool);
        for (class, path) in &opts.images {
            images.push(spool_image(opts, class, path, &mut writer)?);
        }
        writer
            .flush()
            .map_err(|e| BundleError::io(spool_ctx(), e))?;
    }
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| BundleError::io(spool_ctx(), e))?;
    let manifest = manifest_for(opts, images);
    manifest.validate()?;
    let manifest_bytes = manifest.encode();
    let manifest_len = u32::try_from(manifest_bytes.len())
        .ok()
        .filter(|&n| n <= MAX_MANIFEST_LEN)
        .ok_or(BundleError::ManifestTooLarge {
            len: u32::try_from(manifest_bytes.len()).unwrap_or(u32::MAX),
            max: MAX_MANIFEST_LEN,
        })?;
    let header = Header {
        required_features: manifest.required_features,
        ..Header::new(manifest_len)
    };
    let mut prefix = header.encode().to_vec();
    prefix.extend_from_slice(&KeyId::of(&key.verifying_key()).0);
    prefix.extend_from_slice(&key.sign(&manifest_bytes).to_bytes());
    prefix.extend_from_slice(&manifest_bytes);
    write_atomically(out, out_dir, &prefix, &mut spool)?;
    Ok(manifest)
}

/// Writes `prefix` then the rest of `payload` to a temporary file beside `out`, syncs
/// it, renames it to `out` and syncs the directory.
fn write_atomically(
    out: &Path,
    out_dir: &Path,
    prefix: &[u8],
    payload: &mut File,
) -> Result<(), BundleError> {
    let io = |e| BundleError::io(format!("writing bundle {}", out.display()), e);
    let tmp = tempfile::NamedTempFile::new_in(out_dir).map_err(io)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        w.write_all(prefix).map_err(io)?;
        std::io::copy(payload, &mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    let file = tmp.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    File::open(out_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| BundleError::io(format!("syncing directory {}", out_dir.display()), e))
}

fn manifest_for(opts: &CreateOptions, images: Vec<ImageEntry>) -> Manifest {
    let mut manifest = Manifest {
        format: FORMAT_VERSION,
        required_features: 0,
        version: opts.version.to_string(),
        compatible: opts.compatible.clone(),
        security_version: opts.security_version,
        build_id: opts.build_id.clone(),
        created_unix: created_unix(),
        images,
        min_from_version: opts.min_from_version.as_ref().map(|v| v.to_string()),
    };
    manifest.required_features = manifest.features_needed();
    manifest
}

/// Checks everything but the image contents: the manifest rules on a skeleton with
/// empty images, and the zstd level.
fn check_options(opts: &CreateOptions) -> Result<(), BundleError> {
    let skeleton = opts
        .images
        .iter()
        .map(|(class, _)| ImageEntry {
            slot_class: class.clone(),
            size: 0,
            sha256: [0; 32],
            compression: opts.compression,
            chunk_size: opts.chunk_size,
            chunks: Vec::new(),
        })
        .collect();
    match manifest_for(opts, skeleton).validate() {
        Err(BundleError::ManifestInvalid(msg)) => return Err(BundleError::InvalidOptions(msg)),
        other => other?,
    }
    let levels = zstd::compression_level_range();
    if opts.compression == Compression::Zstd && !levels.contains(&opts.zstd_level) {
        return Err(BundleError::InvalidOptions(format!(
            "zstd level {} outside {}..={}",
            opts.zstd_level,
            levels.start(),
            levels.end()
        )));
    }
    if opts.compression == Compression::Xz && !xz::LEVELS.contains(&opts.xz_level) {
        return Err(BundleError::InvalidOptions(format!(
            "xz level {} outside {}..={}",
            opts.xz_level,
            xz::LEVELS.start(),
            xz::LEVELS.end()
        )));
    }
    Ok(())
}

/// Most chunks compressed at once, one thread each (xz and zstd; level 6 xz takes
/// about 11 MiB per thread).
const MAX_ENCODE_THREADS: usize = 8;

/// Reads one image, writes its stored chunks to `spool`, and describes it.
/// Compressed images are encoded a batch of chunks at a time, one thread per chunk.
fn spool_image(
    opts: &CreateOptions,
    slot_class: &str,
    path: &Path,
    spool: &mut impl Write,
) -> Result<ImageEntry, BundleError> {
    let ctx = || format!("reading image {}", path.display());
    let mut file = File::open(path).map_err(|e| BundleError::io(ctx(), e))?;
    let threads = match opts.compression {
        Compression::None => 1,
        _ => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_ENCODE_THREADS),
    };
    let mut encoders = (0..threads)
        .map(|_| ChunkEncoder::new(opts))
        .collect::<Result<Vec<_>, _>>()?;
    let mut batch = vec![Vec::new(); threads];
    let mut whole = Sha256::new();
    let mut size = 0u64;
    let mut chunks = Vec::new();
    loop {
        let (filled, ended) = read_batch(&mut file, &mut batch, opts.chunk_size as usize)
            .map_err(|e| BundleError::io(ctx(), e))?;
        let encoded = encode_batch(&mut encoders, &batch[..filled])
            .map_err(|e| BundleError::io(format!("compressing {}", path.display()), e))?;
        for (raw, (stored, sha)) in batch.iter().zip(encoded) {
            whole.update(raw);
            size += raw.len() as u64;
            spool
                .write_all(&stored)
                .map_err(|e| BundleError::io("spooling payload", e))?;
            chunks.push(ChunkEntry {
                sha256: sha,
                stored_len: stored.len() as u32,
            });
        }
        if ended {
            break;
        }
    }
    Ok(ImageEntry {
        slot_class: slot_class.to_string(),
        size,
        sha256: whole.finalize().into(),
        compression: opts.compression,
        chunk_size: opts.chunk_size,
        chunks,
    })
}

/// Turns a chunk's raw bytes into its stored bytes.
enum ChunkEncoder {
    None,
    Zstd(zstd::bulk::Compressor<'static>),
    Xz { level: u32, chunk_size: u32 },
}

impl ChunkEncoder {
    fn new(opts: &CreateOptions) -> Result<Self, BundleError> {
        Ok(match opts.compression {
            Compression::None => ChunkEncoder::None,
            Compression::Zstd => ChunkEncoder::Zstd(
                zstd::bulk::Compressor::new(opts.zstd_level)
                    .map_err(|e| BundleError::InvalidOptions(format!("zstd: {e}")))?,
            ),
            Compression::Xz => ChunkEncoder::Xz {
                level: opts.xz_level,
                chunk_size: opts.chunk_size,
            },
        })
    }

    fn encode<'a>(&mut self, raw: &'a [u8]) -> std::io::Result<Cow<'a, [u8]>> {
        match self {
            ChunkEncoder::None => Ok(Cow::Borrowed(raw)),
            ChunkEncoder::Zstd(c) => c.compress(raw).map(Cow::Owned),
            ChunkEncoder::Xz { level, chunk_size } => xz::compress(raw, *level, *chunk_size)
                .map(Cow::Owned)
                .map_err(std::io::Error::other),
        }
    }
}

/// Reads up to `batch.len()` chunks of `chunk_size` into `batch`; returns how many
/// were read and whether the image ended. Every chunk but the last one is full.
fn read_batch(
    file: &mut File,
    batch: &mut [Vec<u8>],
    chunk_size: usize,
) -> std::io::Result<(usize, bool)> {
    for (filled, buf) in batch.iter_mut().enumerate() {
        buf.resize(chunk_size, 0);
        let n = read_full(file, buf)?;
        buf.truncate(n);
        if n < chunk_size {
            return Ok((filled + usize::from(n > 0), true));
        }
    }
    Ok((batch.len(), false))
}

/// A chunk's stored bytes (borrowed when stored raw) and the SHA-256 of its raw bytes.
type Encoded<'a> = (Cow<'a, [u8]>, [u8; 32]);

/// Each chunk's stored bytes and SHA-256, computed one thread per chunk.
fn encode_batch<'a>(
    encoders: &mut [ChunkEncoder],
    raws: &'a [Vec<u8>],
) -> std::io::Result<Vec<Encoded<'a>>> {
    let encode = |encoder: &mut ChunkEncoder, raw: &'a [u8]| {
        encoder.encode(raw).map(|stored| (stored, sha256(raw)))
    };
    if let ([encoder, ..], [raw]) = (&mut *encoders, raws) {
        return Ok(vec![encode(encoder, raw)?]);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = encoders
            .iter_mut()
            .zip(raws)
            .map(|(encoder, raw)| scope.spawn(move || encode(encoder, raw)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn created_unix() -> u64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return epoch;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

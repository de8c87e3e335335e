//! Reading a bundle front to back from any [`Read`], never seeking.
//!
//! [`BundleReader::open`] consumes header, signature block and manifest in that order and
//! refuses at the first failed check: header limits → signature over the raw manifest
//! bytes → decode → header/manifest agreement → [`Manifest::validate`]. After that the
//! payload is handed out one stored chunk at a time ([`BundleReader::next_stored_chunk`]);
//! [`decode_chunk`](super::decode_chunk) (in `chunk`) turns a stored chunk into checked
//! raw bytes and [`ImageHasher`] checks a whole image. After any error the reader is poisoned and only returns errors.

use std::io::{ErrorKind, Read};

use sha2::{Digest, Sha256};

use super::chunk::{decode_chunk, ChunkBuf};
use super::format::{parse_header, Header, HEADER_LEN, KEY_ID_LEN};
use super::keys::{KeyId, Keyring};
use super::manifest::{ChunkRef, ImageEntry, Manifest};
use super::{hex, BundleError};

/// A bundle whose header and manifest have been read and checked; the payload follows.
pub struct BundleReader<R: Read> {
    source: R,
    header: Header,
    key_id: KeyId,
    /// The header and the signature block as read, for [`BundleReader::head_bytes`].
    header_bytes: [u8; HEADER_LEN],
    sig_block: [u8; super::SIG_BLOCK_LEN as usize],
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    verified: bool,
    /// The next chunk to hand out: (image, index), not yet skipped past empty images.
    cursor: (usize, u32),
    payload_read: u64,
    finished: bool,
    poisoned: bool,
}

impl<R: Read> BundleReader<R> {
    /// Reads and authenticates everything up to the payload against `keyring`.
    pub fn open(source: R, keyring: &Keyring) -> Result<Self, BundleError> {
        Self::open_inner(source, Some(keyring))
    }

    /// Like [`open`](Self::open) but without checking the signature: for showing what a
    /// bundle claims to be. Nothing read this way may be installed.
    pub fn open_unverified(source: R) -> Result<Self, BundleError> {
        Self::open_inner(source, None)
    }

    fn open_inner(mut source: R, keyring: Option<&Keyring>) -> Result<Self, BundleError> {
        let mut header_bytes = [0u8; HEADER_LEN];
        read_section(&mut source, "header", &mut header_bytes)?;
        let header = parse_header(&header_bytes)?;

        let mut sig_block = [0u8; super::SIG_BLOCK_LEN as usize];
        read_section(&mut source, "signature block", &mut sig_block)?;
        let (id_bytes, sig_bytes) = sig_block.split_at(KEY_ID_LEN);
        let key_id = KeyId(id_bytes.try_into().expect("8-byte key id"));
        let signature: [u8; 64] = sig_bytes.try_into().expect("64-byte signature");

        // Bounded by parse_header; grows only as bytes actually arrive.
        let mut manifest_bytes = Vec::new();
        let want = u64::from(header.manifest_len);
        let got = (&mut source)
            .take(want)
            .read_to_end(&mut manifest_bytes)
            .map_err(|e| BundleError::io("reading bundle manifest", e))?;
        if (got as u64) < want {
            return Err(BundleError::Truncated {
                section: "manifest",
                expected: want,
                got: got as u64,
            });
        }

        if let Some(keyring) = keyring {
            keyring.verify(&key_id, &manifest_bytes, &signature)?;
        }
        let manifest = Manifest::decode(&manifest_bytes)?;
        check_header_agrees(&header, &manifest)?;
        manifest.validate()?;
        Ok(BundleReader {
            source,
            header,
            key_id,
            header_bytes,
            sig_block,
            manifest_bytes,
            manifest,
            verified: keyring.is_some(),
            cursor: (0, 0),
            payload_read: 0,
            finished: false,
            poisoned: false,
        })
    }

    /// The decoded, validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The key id named in the signature block (checked only if [`signature_verified`](Self::signature_verified)).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The exact manifest bytes the signature covers.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// Header, signature block and manifest exactly as read: a bundle without its
    /// payload, which [`BundleReader::open`] authenticates again later (what
    /// `install --no-activate` records for `bascule activate`).
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut head =
            Vec::with_capacity(HEADER_LEN + self.sig_block.len() + self.manifest_bytes.len());
        head.extend_from_slice(&self.header_bytes);
        head.extend_from_slice(&self.sig_block);
        head.extend_from_slice(&self.manifest_bytes);
        head
    }

    /// Whether the signature was checked against a keyring ([`open`](Self::open)).
    pub fn signature_verified(&self) -> bool {
        self.verified
    }

    /// Bytes of the bundle consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.header.payload_offset() + self.payload_read
    }

    /// Reads the next chunk's stored bytes into `buf` (resized to `stored_len`).
    /// Returns `None` after the last chunk of the last image, once the source is
    /// confirmed to end there.
    pub fn next_stored_chunk(
        &mut self,
        buf: &mut impl ChunkBuf,
    ) -> Result<Option<ChunkRef>, BundleError> {
        if self.poisoned {
            return Err(BundleError::ReaderPoisoned);
        }
        if self.finished {
            return Ok(None);
        }
        let result = self.read_chunk(buf);
        match &result {
            Err(_) => self.poisoned = true,
            Ok(None) => self.finished = true,
            Ok(Some(_)) => {}
        }
        result
    }

    fn read_chunk(&mut self, buf: &mut impl ChunkBuf) -> Result<Option<ChunkRef>, BundleError> {
        let Some(chunk) = self.current_chunk() else {
            let mut probe = [0u8; 1];
            let n = read_full(&mut self.source, &mut probe)
                .map_err(|e| BundleError::io("reading bundle end", e))?;
            return if n == 0 {
                Ok(None)
            } else {
                Err(BundleError::TrailingData)
            };
        };
        // Recycled buffers of the same size are not zeroed again.
        let buf = buf.set_len(chunk.stored_len as usize);
        let n = read_full(&mut self.source, buf)
            .map_err(|e| BundleError::io("reading bundle payload", e))?;
        if n < buf.len() {
            return Err(BundleError::Truncated {
                section: "payload",
                expected: self.manifest.payload_len(),
                got: self.payload_read + n as u64,
            });
        }
        self.payload_read += u64::from(chunk.stored_len);
        self.cursor = (chunk.image, chunk.index + 1);
        Ok(Some(chunk))
    }

    /// The chunk at the cursor, skipping images without chunks.
    fn current_chunk(&self) -> Option<ChunkRef> {
        let (mut image, mut index) = self.cursor;
        while let Some(entry) = self.manifest.images.get(image) {
            if let Some(chunk) = entry.chunk_ref(image, index) {
                return Some(chunk);
            }
            image += 1;
            index = 0;
        }
        None
    }

    /// Reads, decodes and checks every remaining chunk, and the size and SHA-256 of
    /// every image read from its start by this call. Returns the payload bytes read.
    pub fn verify_payload(&mut self) -> Result<u64, BundleError> {
        let (start_image, start_index) = self.cursor;
        let first_whole = if start_index == 0 {
            start_image
        } else {
            start_image + 1
        };
        let mut hashers: Vec<ImageHasher> = (0..self.manifest.images.len())
            .map(ImageHasher::new)
            .collect();
        let (mut stored, mut raw) = (Vec::new(), Vec::new());
        let before = self.payload_read;
        while let Some(chunk) = self.next_stored_chunk(&mut stored)? {
            let entry = &self.manifest.images[chunk.image];
            decode_chunk(entry, chunk.image, &chunk, &stored, &mut raw)?;
            hashers[chunk.image].update(&raw);
        }
        for (hasher, entry) in hashers
            .into_iter()
            .zip(&self.manifest.images)
            .skip(first_whole)
        {
            hasher.finish(entry)?;
        }
        Ok(self.payload_read - before)
    }

    /// Gives back the source, positioned after whatever was read.
    pub fn into_inner(self) -> R {
        self.source
    }
}

/// Accumulates an image's decoded chunks and checks its size and SHA-256 at the end.
pub struct ImageHasher {
    image: usize,
    /// `None` when only the length is checked (every chunk was already checked
    /// against its own signed SHA-256).
    hasher: Option<Sha256>,
    len: u64,
}

impl ImageHasher {
    /// A hasher for image number `image`.
    pub fn new(image: usize) -> ImageHasher {
        ImageHasher {
            image,
            hasher: Some(Sha256::new()),
            len: 0,
        }
    }

    /// A checker of image `image`'s total length only.
    pub fn length_only(image: usize) -> ImageHasher {
        ImageHasher {
            image,
            hasher: None,
            len: 0,
        }
    }

    /// Adds the next raw bytes of the image.
    pub fn update(&mut self, raw: &[u8]) {
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(raw);
        }
        self.len += raw.len() as u64;
    }

    /// Checks the total length, then the SHA-256, against `entry`.
    pub fn finish(self, entry: &ImageEntry) -> Result<(), BundleError> {
        if self.len != entry.size {
            return Err(BundleError::ImageSizeMismatch {
                image: self.image,
                expected: entry.size,
                found: self.len,
            });
        }
        let Some(hasher) = self.hasher else {
            return Ok(());
        };
        let found: [u8; 32] = hasher.finalize().into();
        if found != entry.sha256 {
            return Err(BundleError::ImageHashMismatch {
                image: self.image,
                expected: hex(&entry.sha256),
                found: hex(&found),
            });
        }
        Ok(())
    }
}

/// The header fields that change how a bundle is read must equal their signed copies.
fn check_header_agrees(header: &Header, manifest: &Manifest) -> Result<(), BundleError> {
    let pairs = [
        ("format_version", header.format_version, manifest.format),
        (
            "required_features",
            header.required_features,
            manifest.required_features,
        ),
    ];
    for (field, in_header, in_manifest) in pairs {
        if in_header != in_manifest {
            return Err(BundleError::HeaderMismatch {
                field,
                header: in_header,
                manifest: in_manifest,
            });
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes of `section` or reports how many arrived.
fn read_section(
    source: &mut impl Read,
    section: &'static str,
    buf: &mut [u8],
) -> Result<(), BundleError> {
    let n = read_full(source, buf)
        .map_err(|e| BundleError::io(format!("reading bundle {section}"), e))?;
    if n < buf.len() {
        return Err(BundleError::Truncated {
            section,
            expected: buf.len() as u64,
            got: n as u64,
        });
    }
    Ok(())
}

/// Fills `buf` unless the source ends first; returns the bytes read.
pub(super) fn read_full(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

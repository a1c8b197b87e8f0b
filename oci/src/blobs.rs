//! Where blobs come from and where they go: the two small traits that decouple OCI I/O from
//! the layer store, plus an in-memory and a directory-backed implementation.
//!
//! The store implements [`BlobSource`] (to save images) and [`BlobSink`] (to load them); the
//! readers of this module implement [`BlobSource`] over layouts and archives. Tests use
//! [`MemoryBlobs`]; [`DirBlobs`] is the `blobs/<alg>/<hex>` tree of an OCI layout.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, MediaType};

use super::digest::{Hasher, HashingWriter, VerifyingReader};
use super::error::{OciError, OciResult};

/// Largest manifest, index or config accepted (they are read into memory): the bound of
/// every JSON document read from outside, [`super::json::MAX_JSON_BYTES`].
pub const MAX_JSON_BLOB: u64 = super::json::MAX_JSON_BYTES;

/// Read access to content-addressed blobs.
pub trait BlobSource {
    /// The size of a blob; [`OciError::MissingBlob`] when absent.
    fn blob_size(&self, digest: &Digest) -> OciResult<u64>;
    /// Opens a blob for reading. Callers verify; implementations need not.
    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>>;
    /// A short description for error messages ("OCI layout /tmp/x", "store").
    fn location(&self) -> String {
        "blob source".to_string()
    }
    /// The DiffID of a layer blob when the source has already decoded it (a
    /// docker-archive hashes every layer when opened), so an import need not decode it
    /// again; `None` by default.
    fn layer_diff_id(&self, digest: &Digest) -> Option<Digest> {
        let _ = digest;
        None
    }
}

/// Write access to a content-addressed blob store.
pub trait BlobSink {
    /// Whether the sink already holds the blob (lets imports skip it).
    fn has_blob(&self, digest: &Digest) -> OciResult<bool> {
        let _ = digest;
        Ok(false)
    }
    /// Stores the bytes of `reader` and returns their descriptor. When `expected` is given
    /// the sink must refuse content with another digest. `media_type` is advisory (the store
    /// may use it to decide how to keep a layer).
    fn put_blob(
        &mut self,
        expected: Option<&Digest>,
        media_type: &MediaType,
        reader: &mut dyn Read,
    ) -> OciResult<Descriptor>;
    /// Whether the sink computes the DiffID of every layer blob it stores and tells it
    /// through [`BlobSink::layer_diff_id`] (the store does, as it ingests a layer). An
    /// import then checks a new layer's DiffID right after writing it instead of decoding
    /// the layer an extra time beforehand. `false` by default.
    fn records_diff_ids(&self) -> bool {
        false
    }
    /// The DiffID of a layer blob the sink holds, when it knows it; `None` by default.
    fn layer_diff_id(&self, digest: &Digest) -> OciResult<Option<Digest>> {
        let _ = digest;
        Ok(None)
    }
}

impl<T: BlobSource + ?Sized> BlobSource for &T {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        (**self).blob_size(digest)
    }
    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        (**self).open_blob(digest)
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn layer_diff_id(&self, digest: &Digest) -> Option<Digest> {
        (**self).layer_diff_id(digest)
    }
}

impl<T: BlobSource + ?Sized> BlobSource for Box<T> {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        (**self).blob_size(digest)
    }
    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        (**self).open_blob(digest)
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn layer_diff_id(&self, digest: &Digest) -> Option<Digest> {
        (**self).layer_diff_id(digest)
    }
}

/// Opens the blob a descriptor names, verifying size and digest as it is read.
pub fn open_verified<'a>(
    source: &'a (impl BlobSource + ?Sized),
    descriptor: &Descriptor,
) -> OciResult<VerifyingReader<Box<dyn Read + 'a>>> {
    let reader = source.open_blob(descriptor.digest())?;
    VerifyingReader::new(reader, descriptor.digest(), descriptor.size())
}

/// Reads a whole (small) blob into memory, verified; `what` names it in errors.
pub fn read_blob(
    source: &(impl BlobSource + ?Sized),
    descriptor: &Descriptor,
    what: &'static str,
) -> OciResult<Vec<u8>> {
    if descriptor.size() > MAX_JSON_BLOB {
        return Err(OciError::TooLarge {
            what,
            location: descriptor.digest().to_string(),
            size: descriptor.size(),
            limit: MAX_JSON_BLOB,
        });
    }
    let mut reader = open_verified(source, descriptor)?;
    let mut out = Vec::with_capacity(usize::try_from(descriptor.size()).unwrap_or(0));
    reader
        .read_to_end(&mut out)
        .map_err(|e| reader.explain(e, "read"))?;
    reader.finish()?;
    Ok(out)
}

/// Blobs held in memory, keyed by digest (tests, synthetic manifests, small images).
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobs {
    blobs: BTreeMap<String, (Digest, Vec<u8>)>,
}

impl MemoryBlobs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores bytes under their SHA-256 digest and returns a descriptor of `media_type`.
    pub fn insert(&mut self, media_type: MediaType, bytes: Vec<u8>) -> Descriptor {
        let digest = super::digest::sha256_digest(&bytes);
        let size = bytes.len() as u64;
        self.blobs
            .insert(digest.to_string(), (digest.clone(), bytes));
        Descriptor::new(media_type, size, digest)
    }

    /// The bytes of a blob, if present.
    pub fn get(&self, digest: &Digest) -> Option<&[u8]> {
        self.blobs.get(digest.as_ref()).map(|(_, b)| b.as_slice())
    }

    /// Replaces a blob's bytes without re-hashing (tests use it to corrupt blobs).
    pub fn replace_unchecked(&mut self, digest: &Digest, bytes: Vec<u8>) {
        self.blobs
            .insert(digest.to_string(), (digest.clone(), bytes));
    }

    /// How many blobs are held.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is held.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// The digests held, sorted.
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.values().map(|(d, _)| d)
    }
}

impl BlobSource for MemoryBlobs {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        self.blobs
            .get(digest.as_ref())
            .map(|(_, b)| b.len() as u64)
            .ok_or_else(|| OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location(),
            })
    }

    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        match self.blobs.get(digest.as_ref()) {
            Some((_, b)) => Ok(Box::new(b.as_slice())),
            None => Err(OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location(),
            }),
        }
    }

    fn location(&self) -> String {
        "in-memory blobs".to_string()
    }
}

impl BlobSink for MemoryBlobs {
    fn has_blob(&self, digest: &Digest) -> OciResult<bool> {
        Ok(self.blobs.contains_key(digest.as_ref()))
    }

    fn put_blob(
        &mut self,
        expected: Option<&Digest>,
        media_type: &MediaType,
        reader: &mut dyn Read,
    ) -> OciResult<Descriptor> {
        let mut bytes = Vec::new();
        let label = expected.map_or_else(|| "(new)".to_string(), ToString::to_string);
        reader
            .read_to_end(&mut bytes)
            .map_err(OciError::blob_io("read", &label))?;
        let mut hasher = match expected {
            Some(d) => Hasher::for_digest(d)?,
            None => Hasher::sha256(),
        };
        hasher.update(&bytes);
        let digest = hasher.finish();
        if let Some(e) = expected {
            if *e != digest {
                return Err(OciError::DigestMismatch {
                    expected: e.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let size = bytes.len() as u64;
        self.blobs
            .insert(digest.to_string(), (digest.clone(), bytes));
        Ok(Descriptor::new(media_type.clone(), size, digest))
    }
}

/// The `blobs/<algorithm>/<hex>` tree under a directory (an OCI image layout).
#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    /// Blobs under `root/blobs`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirBlobs { root: root.into() }
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a blob. Digest components are restricted to `[a-z0-9+._-]` and
    /// `[a-zA-Z0-9=_-]` by the digest grammar, so the path cannot leave `blobs/`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// Writes a blob from a reader: temporary file, hashed while written, fsync, rename.
    /// Returns the digest and size; refuses content that does not match `expected`.
    pub fn write_blob(
        &self,
        expected: Option<&Digest>,
        reader: &mut dyn Read,
    ) -> OciResult<(Digest, u64)> {
        let dir = self.root.join("blobs").join("sha256");
        let hasher = match expected {
            Some(d) => Hasher::for_digest(d)?,
            None => Hasher::sha256(),
        };
        let label = expected.map_or_else(|| "(new)".to_string(), ToString::to_string);
        let (tmp, digest, size) = spool(&dir, hasher, &label, reader)?;
        if let Some(e) = expected {
            if *e != digest {
                return Err(OciError::DigestMismatch {
                    expected: e.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let target = self.blob_path(&digest);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(OciError::io("create directory", parent))?;
        }
        tmp.persist(&target)
            .map_err(|e| OciError::io("rename into", &target)(e.error))?;
        Ok((digest, size))
    }

    /// Writes in-memory bytes as a blob.
    pub fn write_bytes(&self, bytes: &[u8]) -> OciResult<(Digest, u64)> {
        self.write_blob(None, &mut &bytes[..])
    }
}

/// Copies `reader` into a new temporary file in `dir` (created if needed), hashed on the way
/// and synced: the caller checks the digest, then renames the file into place. Blobs are
/// outputs too: 0644 minus the umask, like every file chasi writes for users.
pub(crate) fn spool(
    dir: &Path,
    hasher: Hasher,
    label: &str,
    reader: &mut dyn Read,
) -> OciResult<(tempfile::NamedTempFile, Digest, u64)> {
    fs::create_dir_all(dir).map_err(OciError::io("create directory", dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(<fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(OciError::io("create a temporary file in", dir))?;
    let mut writer = HashingWriter::with_hasher(io::BufWriter::new(tmp), hasher);
    io::copy(reader, &mut writer).map_err(OciError::blob_io("write", label))?;
    let (buf, digest, size) = writer.finish();
    let tmp = buf
        .into_inner()
        .map_err(|e| OciError::blob_io("write", label)(e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(OciError::io("sync", tmp.path()))?;
    Ok((tmp, digest, size))
}

impl BlobSource for DirBlobs {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location(),
            }),
            Err(e) => Err(OciError::io("stat", path)(e)),
        }
    }

    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(Box::new(io::BufReader::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location(),
            }),
            Err(e) => Err(OciError::io("open", path)(e)),
        }
    }

    fn location(&self) -> String {
        format!("OCI layout {}", self.root.display())
    }
}

impl BlobSink for DirBlobs {
    fn has_blob(&self, digest: &Digest) -> OciResult<bool> {
        Ok(self.blob_path(digest).is_file())
    }

    fn put_blob(
        &mut self,
        expected: Option<&Digest>,
        media_type: &MediaType,
        reader: &mut dyn Read,
    ) -> OciResult<Descriptor> {
        let (digest, size) = self.write_blob(expected, reader)?;
        Ok(Descriptor::new(media_type.clone(), size, digest))
    }
}

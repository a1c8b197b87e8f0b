//! The storage layout of the CNCF distribution registry (`docker-registry`) on disk, both ways.
//!
//! sealer carries a cluster's container images as a `registry/` directory in the image rootfs
//! that an unmodified registry serves (its filesystem driver rooted there), and chasi does the
//! same: the builder writes the directory (`chasi build --build-mode all`), the node runtime reads
//! it to load the images into containerd without a network. Both sides use this module, so the
//! layout is written down once:
//!
//! ```text
//! <root>/docker/registry/v2/
//!   blobs/sha256/<hex[0..2]>/<hex>/data                          every blob, once
//!   repositories/<name>/_layers/sha256/<hex>/link                config and layer blobs of <name>
//!   repositories/<name>/_manifests/revisions/sha256/<hex>/link   manifests of <name>
//!   repositories/<name>/_manifests/tags/<tag>/current/link       the manifest <tag> names
//!   repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
//! ```
//!
//! A repository name is the image's full normalised name without the tag, its registry host
//! first ([`repository_of`]: `docker.io/library/nginx`, a port written `_5000`), so a reader
//! knows the host each image came from: the node runtime names the containerd image
//! `<repository>:<tag>` ([`image_name_of`]). The builder also links each image under its path
//! alone (`library/nginx`), as sealer's registry mirror serves it; [`RegistryDir::carried_images`]
//! leaves those links out.
//!
//! A `link` holds the digest text (`sha256:<hex>`, no newline). Repository names and tags are
//! checked against the distribution grammar before they become paths, on writing and on reading,
//! so neither can leave the directory; symbolic links are never followed when reading. Blobs are
//! verified as they are written and, through [`BlobSource`] and [`super::blobs::open_verified`],
//! as they are read.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::Value;

use super::blobs::{read_blob, BlobSource};
use super::digest::{parse_digest, Hasher};
use super::error::{OciError, OciResult};
use super::image::{read_index, read_manifest};
use super::json::parse_document;
use super::media::{classify, BlobKind};

/// The registry's own prefix under its storage root.
pub const V2: &str = "docker/registry/v2";

/// Largest `link` file read (a digest is at most ~140 bytes).
const MAX_LINK: u64 = 256;

/// A registry storage directory (the filesystem driver's `rootdirectory`).
#[derive(Debug, Clone)]
pub struct RegistryDir {
    root: PathBuf,
    /// The registry directory this one is layered over (an image layer over its base's):
    /// blobs it holds are not written again.
    lower: Option<Box<RegistryDir>>,
}

/// A tagged image found in a registry directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryImage {
    /// The repository: the full normalised name without the tag (`docker.io/library/nginx`,
    /// `registry.k8s.io/ingress-nginx/controller`).
    pub repository: String,
    /// The tag.
    pub tag: String,
    /// The manifest (or index) the tag names, its media type read from the document.
    pub root: Descriptor,
}

/// What [`RegistryDir::put_image`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutReport {
    /// Blobs written (blobs already present are not rewritten).
    pub blobs_written: u64,
    /// Their bytes.
    pub bytes_written: u64,
}

impl RegistryDir {
    /// The registry storage rooted at `root` (the directory that holds `docker/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RegistryDir {
            root: root.into(),
            lower: None,
        }
    }

    /// A registry directory at `root` layered over `lower`: a blob `lower` holds is neither
    /// downloaded nor written again, and is read from there (the builder's `registry/` layer
    /// over the base image's).
    pub fn over(root: impl Into<PathBuf>, lower: RegistryDir) -> Self {
        RegistryDir {
            root: root.into(),
            lower: Some(Box::new(lower)),
        }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn v2(&self) -> PathBuf {
        self.root.join(V2)
    }

    /// The `data` file of a blob. The digest grammar keeps the path inside `blobs/`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.digest();
        self.v2()
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    fn repository_dir(&self, repository: &str) -> OciResult<PathBuf> {
        check_repository(repository)?;
        Ok(self.v2().join("repositories").join(repository))
    }

    /// Whether the blob is present with the descriptor's size (a base image's registry
    /// directory may hold it already; its content is verified whenever it is read).
    pub fn holds(&self, descriptor: &Descriptor) -> bool {
        fs::symlink_metadata(self.blob_path(descriptor.digest()))
            .is_ok_and(|m| m.is_file() && m.len() == descriptor.size())
            || self.lower.as_ref().is_some_and(|l| l.holds(descriptor))
    }

    /// Writes a blob unless [`RegistryDir::holds`] it: hashed while written, refused unless
    /// it matches the descriptor, fsynced, renamed into place. Returns the bytes written
    /// (0 when present).
    pub fn put_blob(&self, descriptor: &Descriptor, reader: &mut dyn Read) -> OciResult<u64> {
        if self.holds(descriptor) {
            return Ok(0);
        }
        let target = self.blob_path(descriptor.digest());
        let dir = target.parent().expect("a blob path has a parent");
        let hasher = Hasher::for_digest(descriptor.digest())?;
        let label = descriptor.digest().to_string();
        let (tmp, digest, size) = super::blobs::spool(dir, hasher, &label, reader)?;
        if digest != *descriptor.digest() {
            return Err(OciError::DigestMismatch {
                expected: label,
                actual: digest.to_string(),
            });
        }
        if size != descriptor.size() {
            return Err(OciError::SizeMismatch {
                digest: label,
                expected: descriptor.size(),
                actual: size,
            });
        }
        tmp.persist(&target)
            .map_err(|e| OciError::io("rename into", &target)(e.error))?;
        Ok(size)
    }

    /// Copies an image (a manifest, or an index with every manifest it lists) from `source`
    /// into the registry as `repository:tag`, every blob verified on the way.
    pub fn put_image(
        &self,
        source: &(impl BlobSource + ?Sized),
        root: &Descriptor,
        repository: &str,
        tag: &str,
    ) -> OciResult<PutReport> {
        check_tag(tag)?;
        let report = self.put_untagged(source, root, repository)?;
        self.set_tag(repository, tag, root.digest())?;
        Ok(report)
    }

    /// Points `repository:tag` at a manifest or index the directory holds.
    pub fn set_tag(&self, repository: &str, tag: &str, digest: &Digest) -> OciResult<()> {
        check_tag(tag)?;
        let tag_dir = self
            .repository_dir(repository)?
            .join("_manifests")
            .join("tags")
            .join(tag);
        write_link(&tag_dir.join("current").join("link"), digest)?;
        write_link(
            &digest_dir(&tag_dir.join("index"), digest).join("link"),
            digest,
        )
    }

    /// Stores one manifest or index document (not what it references) as a revision of
    /// `repository`: an index of which only some platforms are carried, as a pull-through
    /// registry keeps it after serving one platform.
    pub fn put_document(
        &self,
        descriptor: &Descriptor,
        raw: &[u8],
        repository: &str,
    ) -> OciResult<u64> {
        let repo = self.repository_dir(repository)?;
        let written = self.put_blob(descriptor, &mut &raw[..])?;
        let revisions = repo.join("_manifests").join("revisions");
        write_link(
            &digest_dir(&revisions, descriptor.digest()).join("link"),
            descriptor.digest(),
        )?;
        Ok(written)
    }

    /// [`RegistryDir::put_image`] without a tag: the image is served by digest only
    /// (`repository@sha256:…`), as a registry holds an image pulled by digest.
    pub fn put_untagged(
        &self,
        source: &(impl BlobSource + ?Sized),
        root: &Descriptor,
        repository: &str,
    ) -> OciResult<PutReport> {
        let repo = self.repository_dir(repository)?;
        let mut report = PutReport::default();
        self.put_manifest_tree(source, root, &repo, &mut report, 0)?;
        Ok(report)
    }

    fn put_manifest_tree(
        &self,
        source: &(impl BlobSource + ?Sized),
        root: &Descriptor,
        repo: &Path,
        report: &mut PutReport,
        depth: u32,
    ) -> OciResult<()> {
        if depth > 1 {
            return Err(OciError::Inconsistent {
                digest: root.digest().to_string(),
                message: "an index nested in an index".into(),
            });
        }
        let raw = match classify(root.media_type()) {
            BlobKind::Index => {
                let (index, raw) = read_index(source, root)?;
                for child in index.manifests() {
                    self.put_manifest_tree(source, child, repo, report, depth + 1)?;
                }
                raw
            }
            BlobKind::Manifest => {
                let (manifest, raw) = read_manifest(source, root)?;
                for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                    if !self.holds(blob) {
                        // put_blob hashes what it writes; the source need not verify too.
                        let mut reader = source.open_blob(blob.digest())?;
                        report.bytes_written += self.put_blob(blob, &mut reader)?;
                        report.blobs_written += 1;
                    }
                    let link = digest_dir(&repo.join("_layers"), blob.digest()).join("link");
                    write_link(&link, blob.digest())?;
                }
                raw
            }
            _ => {
                return Err(OciError::UnsupportedMediaType {
                    media_type: root.media_type().to_string(),
                    digest: root.digest().to_string(),
                })
            }
        };
        if !self.holds(root) {
            report.bytes_written += self.put_blob(root, &mut raw.as_slice())?;
            report.blobs_written += 1;
        }
        let revisions = repo.join("_manifests").join("revisions");
        write_link(
            &digest_dir(&revisions, root.digest()).join("link"),
            root.digest(),
        )?;
        Ok(())
    }

    /// Every tagged image, sorted by repository then tag. A repository or tag whose name is
    /// not valid, a link that is not a digest, or a tag whose manifest is missing is an error
    /// naming the path: a registry directory is input from outside.
    pub fn images(&self) -> OciResult<Vec<RegistryImage>> {
        let repositories = self.v2().join("repositories");
        let mut names = Vec::new();
        if fs::symlink_metadata(&repositories).is_ok() {
            find_repositories(&repositories, String::new(), &mut names, 0)?;
        }
        names.sort();
        let mut images = Vec::new();
        for repository in names {
            let tags_dir = self
                .repository_dir(&repository)?
                .join("_manifests")
                .join("tags");
            let mut tags = Vec::new();
            for entry in read_dir_sorted(&tags_dir)? {
                let (name, meta) = entry;
                if !meta.is_dir() {
                    continue;
                }
                check_tag(&name).map_err(|e| bad_layout(&tags_dir.join(&name), e.to_string()))?;
                tags.push(name);
            }
            for tag in tags {
                let link = tags_dir.join(&tag).join("current").join("link");
                let digest = read_link(&link)?;
                let root = self.describe(&digest, &link)?;
                images.push(RegistryImage {
                    repository: repository.clone(),
                    tag,
                    root,
                });
            }
        }
        Ok(images)
    }

    /// The images a cluster image carries, by their full names: [`RegistryDir::images`] less
    /// the links the builder adds for sealer's registry mirror (`library/nginx` beside
    /// `docker.io/library/nginx`): a repository `R` is such a link when `HOST/R` is also there.
    pub fn carried_images(&self) -> OciResult<Vec<RegistryImage>> {
        let all = self.images()?;
        let names: std::collections::BTreeSet<&str> =
            all.iter().map(|i| i.repository.as_str()).collect();
        let is_link = |repo: &str| {
            names
                .iter()
                .any(|n| n.split_once('/').is_some_and(|(_, rest)| rest == repo))
        };
        Ok(all
            .iter()
            .filter(|i| !is_link(&i.repository))
            .cloned()
            .collect())
    }

    /// A descriptor for a manifest or index blob: its size, and the media type its own
    /// `mediaType` field declares.
    fn describe(&self, digest: &Digest, link: &Path) -> OciResult<Descriptor> {
        let size = self.blob_size(digest).map_err(|e| match e {
            OciError::MissingBlob { .. } => bad_layout(
                link,
                format!("names manifest {digest}, which the registry does not hold"),
            ),
            e => e,
        })?;
        let provisional = Descriptor::new(MediaType::ImageManifest, size, digest.clone());
        let raw = read_blob(self, &provisional, "image manifest")?;
        let doc: Value = parse_document(&raw, "image manifest", digest)?;
        let media_type = match doc.get("mediaType").and_then(Value::as_str) {
            Some(m) => MediaType::from(m),
            None if doc.get("manifests").is_some() => MediaType::ImageIndex,
            None => MediaType::ImageManifest,
        };
        Ok(Descriptor::new(media_type, size, digest.clone()))
    }
}

impl RegistryDir {
    /// The directory holding `digest` (this one or a lower one) and the blob's size.
    fn find(&self, digest: &Digest) -> OciResult<(PathBuf, u64)> {
        let path = self.blob_path(digest);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok((path, m.len())),
            Ok(_) => Err(bad_layout(&path, "is not a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match &self.lower {
                Some(lower) => lower.find(digest),
                None => Err(OciError::MissingBlob {
                    digest: digest.to_string(),
                    location: self.location(),
                }),
            },
            Err(e) => Err(OciError::io("stat", path)(e)),
        }
    }
}

impl BlobSource for RegistryDir {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        self.find(digest).map(|(_, size)| size)
    }

    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        let (path, _) = self.find(digest)?;
        let file = File::open(&path).map_err(OciError::io("open", &path))?;
        Ok(Box::new(io::BufReader::new(file)))
    }

    fn location(&self) -> String {
        format!("registry directory {}", self.root.display())
    }
}

fn bad_layout(path: &Path, message: impl Into<String>) -> OciError {
    OciError::BadRegistryLayout {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn digest_dir(base: &Path, digest: &Digest) -> PathBuf {
    base.join(digest.algorithm().as_ref()).join(digest.digest())
}

fn write_link(path: &Path, digest: &Digest) -> OciResult<()> {
    let dir = path.parent().expect("a link path has a parent");
    fs::create_dir_all(dir).map_err(OciError::io("create directory", dir))?;
    fs::write(path, digest.to_string()).map_err(OciError::io("write", path))
}

fn read_link(path: &Path) -> OciResult<Digest> {
    let meta = fs::symlink_metadata(path).map_err(OciError::io("stat", path))?;
    if !meta.is_file() {
        return Err(bad_layout(path, "is not a regular file"));
    }
    if meta.len() > MAX_LINK {
        return Err(bad_layout(
            path,
            format!("is {} bytes; a link holds one digest", meta.len()),
        ));
    }
    let text = fs::read_to_string(path).map_err(OciError::io("read", path))?;
    parse_digest(text.trim()).map_err(|e| bad_layout(path, e.to_string()))
}

fn read_dir_sorted(dir: &Path) -> OciResult<Vec<(String, fs::Metadata)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(OciError::io("read directory", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(OciError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(bad_layout(&entry.path(), "has a name that is not UTF-8"));
        };
        let meta =
            fs::symlink_metadata(entry.path()).map_err(OciError::io("stat", entry.path()))?;
        out.push((name.to_string(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Collects repository names: a directory holding `_manifests` is a repository; others
/// (`library/`) are path components of names below them.
fn find_repositories(
    dir: &Path,
    prefix: String,
    out: &mut Vec<String>,
    depth: u32,
) -> OciResult<()> {
    if depth > 32 {
        return Err(bad_layout(dir, "repository names nest more than 32 levels"));
    }
    for (name, meta) in read_dir_sorted(dir)? {
        if !meta.is_dir() {
            continue;
        }
        let path = dir.join(&name);
        if name.starts_with('_') {
            if name == "_manifests" && !prefix.is_empty() {
                check_repository(&prefix).map_err(|e| bad_layout(dir, e.to_string()))?;
                out.push(prefix.clone());
            }
            continue;
        }
        let child = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        find_repositories(&path, child, out, depth + 1)?;
    }
    Ok(())
}

/// The repository a carried image is kept under: its registry host and path
/// (`docker.io/library/nginx`), so the node can name it as the manifests do. A host's port is
/// written `_PORT` (`127.0.0.1_5000/app`): `:` is not allowed in a repository name and `_` is
/// not allowed in a host name, so [`image_name_of`] reverses it exactly.
pub fn repository_of(host: &str, path: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{h}_{port}")
        }
        _ => host.to_string(),
    };
    format!("{host}/{path}")
}

/// The image name (without tag) of a repository: one written by [`repository_of`] decoded
/// (`127.0.0.1_5000/app` → `127.0.0.1:5000/app`); one whose first component is no host (no `.`,
/// not `localhost`, no `_PORT`: a directory written by another tool) read as Docker Hub's, as
/// docker normalises names (`library/nginx`, `nginx` → `docker.io/library/nginx`).
pub fn image_name_of(repository: &str) -> String {
    let (first, rest) = repository.split_once('/').unwrap_or((repository, ""));
    let port = first
        .rsplit_once('_')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host = match port {
        Some((h, p)) => format!("{h}:{p}"),
        None if first.contains('.') || first == "localhost" => first.to_string(),
        None if rest.is_empty() => return format!("docker.io/library/{repository}"),
        None => return format!("docker.io/{repository}"),
    };
    if rest.is_empty() {
        host
    } else {
        format!("{host}/{rest}")
    }
}

/// The distribution grammar of a repository name: `/`-separated components of
/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`; at most 255 characters.
pub fn check_repository(name: &str) -> OciResult<()> {
    let bad = |reason: &str| OciError::BadReference {
        reference: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("a repository name has 1 to 255 characters"));
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return Err(bad(
                "each `/`-separated part of a repository name is lowercase letters and digits, \
                 joined by `.`, `_`, `__` or dashes",
            ));
        }
    }
    Ok(())
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

/// The distribution grammar of a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> OciResult<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OciError::BadReference {
            reference: tag.to_string(),
            reason:
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
                    .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{open_verified, MemoryBlobs};
    use crate::image::build_manifest;

    fn image(blobs: &mut MemoryBlobs, layer: &[u8]) -> Descriptor {
        let layer = blobs.insert(MediaType::ImageLayerGzip, layer.to_vec());
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "a".repeat(64))]}});
        build_manifest(blobs, &config, &[layer], &Default::default()).unwrap()
    }

    #[test]
    fn an_image_round_trips_with_the_registry_layout() {
        let mut blobs = MemoryBlobs::new();
        let root = image(&mut blobs, b"layer one");
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryDir::new(dir.path());
        let report = reg
            .put_image(&blobs, &root, "library/nginx", "1.25")
            .unwrap();
        assert_eq!(report.blobs_written, 3);
        let again = reg.put_image(&blobs, &root, "mirror/nginx", "v1").unwrap();
        assert_eq!(again.blobs_written, 0, "blobs are stored once");
        let hex = root.digest().digest();
        let tag_link = dir
            .path()
            .join(V2)
            .join("repositories/library/nginx/_manifests/tags/1.25/current/link");
        assert_eq!(
            fs::read_to_string(tag_link).unwrap(),
            root.digest().to_string()
        );
        assert!(dir
            .path()
            .join(V2)
            .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
            .is_file());
        let images = reg.images().unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].repository, "library/nginx");
        assert_eq!(images[0].tag, "1.25");
        assert_eq!(images[0].root.digest(), root.digest());
        assert_eq!(images[0].root.media_type(), &MediaType::ImageManifest);
        assert_eq!(images[1].repository, "mirror/nginx");
        let (manifest, _) = read_manifest(&reg, &images[0].root).unwrap();
        assert_eq!(manifest.layers().len(), 1);
    }

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        let mut blobs = MemoryBlobs::new();
        let root = image(&mut blobs, b"x");
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryDir::new(dir.path());
        for repo in ["../x", "a/../../b", "/abs", "UPPER", "a//b", "a-", ""] {
            assert!(reg.put_image(&blobs, &root, repo, "t").is_err(), "{repo}");
        }
        for tag in ["../t", "a/b", ".t", "-t", ""] {
            assert!(reg.put_image(&blobs, &root, "ok", tag).is_err(), "{tag}");
        }
        for repo in ["a", "a.b/c__d/e---f", "k8s.gcr.io0/pause", "a_b"] {
            check_repository(repo).unwrap();
        }
    }

    #[test]
    fn a_corrupt_blob_or_link_is_reported_with_its_path() {
        let mut blobs = MemoryBlobs::new();
        let root = image(&mut blobs, b"payload");
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryDir::new(dir.path());
        reg.put_image(&blobs, &root, "app", "v1").unwrap();
        let link = dir
            .path()
            .join(V2)
            .join("repositories/app/_manifests/tags/v1/current/link");
        fs::write(&link, "sha256:nothex").unwrap();
        let err = reg.images().unwrap_err().to_string();
        assert!(err.contains("current/link"), "{err}");
        fs::write(&link, root.digest().to_string()).unwrap();
        let images = reg.images().unwrap();
        let (manifest, _) = read_manifest(&reg, &images[0].root).unwrap();
        let layer = &manifest.layers()[0];
        fs::write(reg.blob_path(layer.digest()), b"pavload").unwrap();
        let mut reader = open_verified(&reg, layer).unwrap();
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).is_err() || reader.finish().is_err());
        let forged = Descriptor::new(MediaType::ImageLayerGzip, 7, layer.digest().clone());
        let err = reg.put_blob(&forged, &mut &b"garbage"[..]);
        assert!(
            err.is_ok(),
            "a present blob of the right size is kept, not rewritten"
        );
        fs::remove_file(reg.blob_path(layer.digest())).unwrap();
        let err = reg.put_blob(&forged, &mut &b"garbage"[..]).unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
        assert!(!reg.blob_path(layer.digest()).exists());
    }

    #[test]
    fn a_directory_over_another_writes_only_what_the_lower_lacks() {
        let mut blobs = MemoryBlobs::new();
        let base = image(&mut blobs, b"shared layer");
        let dir = tempfile::tempdir().unwrap();
        let lower = RegistryDir::new(dir.path().join("lower"));
        lower.put_image(&blobs, &base, "base", "v1").unwrap();
        let upper = RegistryDir::over(dir.path().join("upper"), lower);
        let report = upper.put_image(&blobs, &base, "copy", "v1").unwrap();
        assert_eq!(report, PutReport::default(), "everything is in the lower");
        let images = upper.images().unwrap();
        assert_eq!(images.len(), 1, "the upper lists its own tags");
        let (manifest, _) = read_manifest(&upper, &images[0].root).unwrap();
        assert_eq!(
            manifest.layers().len(),
            1,
            "blobs are read through to the lower"
        );
        assert!(!upper.blob_path(base.digest()).exists());
    }

    #[test]
    fn mirror_links_are_not_carried_images() {
        let mut blobs = MemoryBlobs::new();
        let root = image(&mut blobs, b"nginx");
        let dir = tempfile::tempdir().unwrap();
        let reg = RegistryDir::new(dir.path());
        reg.put_image(&blobs, &root, "docker.io/library/nginx", "1")
            .unwrap();
        reg.put_image(&blobs, &root, "library/nginx", "1").unwrap();
        reg.put_image(&blobs, &root, "ghcr.io/org.name/x", "1")
            .unwrap();
        reg.put_image(&blobs, &root, "org.name/x", "1").unwrap();
        reg.put_image(&blobs, &root, "127.0.0.1_5000/solo", "1")
            .unwrap();
        let names: Vec<String> = reg
            .carried_images()
            .unwrap()
            .into_iter()
            .map(|i| i.repository)
            .collect();
        assert_eq!(
            names,
            [
                "127.0.0.1_5000/solo",
                "docker.io/library/nginx",
                "ghcr.io/org.name/x"
            ]
        );
        assert_eq!(reg.images().unwrap().len(), 5);
    }

    #[test]
    fn carried_repositories_keep_their_registry_host() {
        for (host, path, repo) in [
            ("docker.io", "library/nginx", "docker.io/library/nginx"),
            ("127.0.0.1:5000", "ns/app", "127.0.0.1_5000/ns/app"),
            ("localhost:32000", "a", "localhost_32000/a"),
            (
                "quay.io",
                "jetstack/cert-manager-controller",
                "quay.io/jetstack/cert-manager-controller",
            ),
        ] {
            assert_eq!(repository_of(host, path), repo);
            check_repository(repo).unwrap();
            assert_eq!(image_name_of(repo), format!("{host}/{path}"));
        }
    }

    #[test]
    fn an_empty_or_missing_directory_holds_no_images() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RegistryDir::new(dir.path().join("none"))
            .images()
            .unwrap()
            .is_empty());
        assert!(RegistryDir::new(dir.path()).images().unwrap().is_empty());
    }
}

//! The load side: recognizing a layout or archive, finding an image in it by tag, and
//! importing that image's blobs into a [`BlobSink`] (the store), every blob verified.
//!
//! `chasi load PATH` calls [`OpenedImages::open`] then [`import_image`] for each entry;
//! `FROM oci:…` resolves through [`open_image`]. Imports write children before parents
//! (layers and config, then manifests, then the index), so a sink never holds a manifest
//! whose blobs are missing, and a blob the sink already has is skipped with its subtree.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest};

use super::blobs::{open_verified, BlobSink, BlobSource};
use super::docker::{normalize_docker_name, DockerArchiveReader};
use super::error::{OciError, OciResult};
use super::image::{read_index, read_manifest, select_manifest};
use super::layout::{tar_is_oci, OciLayoutReader};
use super::media::{classify, BlobKind};
use super::platform::PlatformSpec;
use super::reference::{DockerSelector, ImageRef};
use super::tarball::TarIndex;

/// One image of a layout or archive.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Its names: `org.opencontainers.image.ref.name` then `io.containerd.image.name` for OCI
    /// layouts, `RepoTags` for docker-archives. May be empty.
    pub names: Vec<String>,
    /// Its root: an image manifest or index.
    pub root: Descriptor,
}

/// The on-disk image formats this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout directory.
    OciLayout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` archive.
    DockerArchive,
}

/// Recognizes what `path` holds: a directory with `oci-layout`, or a tar with `oci-layout` +
/// `index.json` (oci-archive, preferred when both are present as in docker 25+ archives) or
/// `manifest.json` (docker-archive).
pub fn detect_format(path: &Path) -> OciResult<ArchiveFormat> {
    let meta = std::fs::metadata(path).map_err(OciError::io("open", path))?;
    if meta.is_dir() {
        if path.join("oci-layout").is_file() {
            return Ok(ArchiveFormat::OciLayout);
        }
        return Err(OciError::UnknownFormat {
            path: path.to_path_buf(),
            reason: "a directory without an oci-layout file".to_string(),
        });
    }
    let tar = TarIndex::scan(path)?;
    format_of_tar(&tar)
}

fn format_of_tar(tar: &TarIndex) -> OciResult<ArchiveFormat> {
    if tar_is_oci(tar) {
        Ok(ArchiveFormat::OciArchive)
    } else if tar.contains("manifest.json") || tar.contains("repositories") {
        Ok(ArchiveFormat::DockerArchive)
    } else {
        Err(OciError::UnknownFormat {
            path: tar.path().to_path_buf(),
            reason: "a tar with neither oci-layout + index.json nor manifest.json".to_string(),
        })
    }
}

enum Reader {
    Oci(OciLayoutReader),
    Docker(DockerArchiveReader),
}

/// A layout or archive opened for reading; a [`BlobSource`] over its blobs.
pub struct OpenedImages {
    reader: Reader,
    format: ArchiveFormat,
    path: PathBuf,
}

impl OpenedImages {
    /// Opens `path` as `format`, or as what [`detect_format`] finds when `None`.
    pub fn open(path: &Path, format: Option<ArchiveFormat>) -> OciResult<Self> {
        let (reader, format) = match format {
            Some(ArchiveFormat::OciLayout) => (
                Reader::Oci(OciLayoutReader::open_dir(path)?),
                ArchiveFormat::OciLayout,
            ),
            Some(ArchiveFormat::OciArchive) => (
                Reader::Oci(OciLayoutReader::open_archive(path)?),
                ArchiveFormat::OciArchive,
            ),
            Some(ArchiveFormat::DockerArchive) => (
                Reader::Docker(DockerArchiveReader::open(path)?),
                ArchiveFormat::DockerArchive,
            ),
            None => {
                let meta = std::fs::metadata(path).map_err(OciError::io("open", path))?;
                if meta.is_dir() {
                    (
                        Reader::Oci(OciLayoutReader::open_dir(path)?),
                        ArchiveFormat::OciLayout,
                    )
                } else {
                    let tar = TarIndex::scan(path)?;
                    match format_of_tar(&tar)? {
                        ArchiveFormat::DockerArchive => (
                            Reader::Docker(DockerArchiveReader::from_index(tar)?),
                            ArchiveFormat::DockerArchive,
                        ),
                        _ => (
                            Reader::Oci(OciLayoutReader::open_archive(path)?),
                            ArchiveFormat::OciArchive,
                        ),
                    }
                }
            }
        };
        Ok(OpenedImages {
            reader,
            format,
            path: path.to_path_buf(),
        })
    }

    /// The format that was opened.
    pub fn format(&self) -> ArchiveFormat {
        self.format
    }

    /// The path that was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The images it holds.
    pub fn entries(&self) -> &[ImageEntry] {
        match &self.reader {
            Reader::Oci(r) => r.entries(),
            Reader::Docker(r) => r.entries(),
        }
    }

    fn available(&self) -> String {
        let names: Vec<String> = self
            .entries()
            .iter()
            .map(|e| match e.names.first() {
                Some(n) => n.clone(),
                None => format!("(unnamed {})", e.root.digest()),
            })
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }

    /// The image named `name` (any of its names; docker names compare after normalizing
    /// `docker.io/library/` and `:latest`), or the only image when `name` is `None`.
    pub fn resolve(&self, name: Option<&str>) -> OciResult<&ImageEntry> {
        let entries = self.entries();
        match name {
            None => match entries {
                [one] => Ok(one),
                [] => Err(OciError::NoSuchImage {
                    name: "(any)".to_string(),
                    location: self.location(),
                    available: "none".to_string(),
                }),
                many => Err(OciError::AmbiguousImage {
                    location: self.location(),
                    count: many.len(),
                    available: self.available(),
                }),
            },
            Some(want) => {
                let docker = self.format == ArchiveFormat::DockerArchive;
                let found = entries.iter().find(|e| {
                    e.names.iter().any(|n| {
                        n == want
                            || (docker && normalize_docker_name(n) == normalize_docker_name(want))
                    })
                });
                found.ok_or_else(|| OciError::NoSuchImage {
                    name: want.to_string(),
                    location: self.location(),
                    available: self.available(),
                })
            }
        }
    }

    /// The `n`-th image (docker-archive `@N` selector).
    pub fn resolve_index(&self, n: usize) -> OciResult<&ImageEntry> {
        self.entries().get(n).ok_or_else(|| OciError::NoSuchImage {
            name: format!("@{n}"),
            location: self.location(),
            available: format!("{} images", self.entries().len()),
        })
    }
}

impl BlobSource for OpenedImages {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        match &self.reader {
            Reader::Oci(r) => r.blob_size(digest),
            Reader::Docker(r) => r.blob_size(digest),
        }
    }
    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        match &self.reader {
            Reader::Oci(r) => r.open_blob(digest),
            Reader::Docker(r) => r.open_blob(digest),
        }
    }
    fn location(&self) -> String {
        match &self.reader {
            Reader::Oci(r) => r.location(),
            Reader::Docker(r) => r.location(),
        }
    }
}

/// Opens the layout or archive a transport reference names and resolves its image.
/// Store references are for the store to resolve and give an error here.
pub fn open_image(reference: &ImageRef) -> OciResult<(OpenedImages, ImageEntry)> {
    let (opened, entry) = match reference {
        ImageRef::OciLayout { path, tag } => {
            let o = OpenedImages::open(path, Some(ArchiveFormat::OciLayout))?;
            let e = o.resolve(tag.as_deref())?.clone();
            (o, e)
        }
        ImageRef::OciArchive { path, tag } => {
            let o = OpenedImages::open(path, Some(ArchiveFormat::OciArchive))?;
            let e = o.resolve(tag.as_deref())?.clone();
            (o, e)
        }
        ImageRef::DockerArchive { path, selector } => {
            let o = OpenedImages::open(path, Some(ArchiveFormat::DockerArchive))?;
            let e = match selector {
                None => o.resolve(None)?,
                Some(DockerSelector::Reference(r)) => o.resolve(Some(r))?,
                Some(DockerSelector::Index(n)) => o.resolve_index(*n)?,
            }
            .clone();
            (o, e)
        }
        ImageRef::Store { .. } => {
            return Err(OciError::BadReference {
                reference: reference.to_string(),
                reason: "a store name, not a layout or archive: resolve it in the store"
                    .to_string(),
            })
        }
    };
    Ok((opened, entry))
}

/// What [`import_image`] did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The imported root.
    pub root: Descriptor,
    /// Blobs written to the sink.
    pub blobs_imported: usize,
    /// Blobs the sink already had (with everything below them).
    pub blobs_present: usize,
    /// Bytes written to the sink.
    pub bytes_imported: u64,
}

/// Copies the image rooted at `root` from `source` into `sink`, verifying every blob.
pub fn import_image(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<ImportReport> {
    let mut report = ImportReport {
        root: root.clone(),
        blobs_imported: 0,
        blobs_present: 0,
        bytes_imported: 0,
    };
    let mut done = HashSet::new();
    import_node(source, root, sink, &mut report, &mut done, 0)?;
    Ok(report)
}

fn import_node(
    source: &(impl BlobSource + ?Sized),
    d: &Descriptor,
    sink: &mut (impl BlobSink + ?Sized),
    report: &mut ImportReport,
    done: &mut HashSet<Digest>,
    depth: usize,
) -> OciResult<()> {
    if !done.insert(d.digest().clone()) {
        return Ok(());
    }
    if sink.has_blob(d.digest())? {
        report.blobs_present += 1;
        return Ok(());
    }
    match classify(d.media_type()) {
        BlobKind::Index => {
            if depth >= 4 {
                return Err(OciError::inconsistent(
                    d.digest(),
                    "image indexes nested more than 4 deep",
                ));
            }
            let (index, _) = read_index(source, d)?;
            for child in index.manifests() {
                import_node(source, child, sink, report, done, depth + 1)?;
            }
        }
        BlobKind::Manifest => {
            let (manifest, _) = read_manifest(source, d)?;
            for layer in manifest.layers() {
                import_node(source, layer, sink, report, done, depth + 1)?;
            }
            import_node(source, manifest.config(), sink, report, done, depth + 1)?;
        }
        _ => {}
    }
    let mut reader = open_verified(source, d)?;
    let stored = match sink.put_blob(Some(d.digest()), d.media_type(), &mut reader) {
        Ok(desc) => desc,
        Err(e) => return Err(reader.error().unwrap_or(e)),
    };
    reader.finish()?;
    if stored.digest() != d.digest() || stored.size() != d.size() {
        return Err(OciError::Sink {
            digest: d.digest().to_string(),
            message: format!(
                "stored as {} ({} bytes) instead of {} bytes",
                stored.digest(),
                stored.size(),
                d.size()
            ),
        });
    }
    report.blobs_imported += 1;
    report.bytes_imported += d.size();
    Ok(())
}

/// One platform's image imported from a transport reference (`FROM oci:…`).
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The names the image had in the layout or archive.
    pub names: Vec<String>,
    /// The imported image manifest (the chosen platform's, for an index).
    pub manifest: Descriptor,
    /// What the import did.
    pub report: ImportReport,
}

/// Opens `reference`, chooses `platform`'s manifest (or the only one when `None`) and
/// imports that manifest with its config and layers into `sink` (the `FROM` of a build).
pub fn import_reference(
    reference: &ImageRef,
    platform: Option<&PlatformSpec>,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<ImportedImage> {
    let (opened, entry) = open_image(reference)?;
    let manifest = select_manifest(&opened, &entry.root, platform)?;
    let report = import_image(&opened, &manifest, sink)?;
    Ok(ImportedImage {
        names: entry.names,
        manifest,
        report,
    })
}

/// Imports every image of a layout or archive into `sink`; returns each entry with its
/// report (`chasi load`).
pub fn load(
    path: &Path,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<Vec<(ImageEntry, ImportReport)>> {
    let opened = OpenedImages::open(path, None)?;
    let mut out = Vec::new();
    for entry in opened.entries() {
        let report = import_image(&opened, &entry.root, sink)?;
        out.push((entry.clone(), report));
    }
    Ok(out)
}

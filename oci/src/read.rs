//! The load side: recognizing a layout or archive, finding an image in it by tag, and
//! importing that image's blobs into a [`BlobSink`] (the store), every blob verified.
//!
//! `chasi load PATH` calls [`load`]; `FROM oci:…` resolves through [`import_reference`];
//! both go through [`import_image`]'s two phases. First every document of the image is read
//! and checked, with nothing written: bounded JSON, index nesting, what may point at what
//! (a manifest is never a layer or a config), known layer media types, DiffIDs against the
//! layers (those only the sink will compute are compared as each layer is written). The walk is bounded by construction (indexes nest at most four deep, a manifest's
//! children are leaves), so no input can make it recurse further. Then the blobs are
//! written children before parents (layers and config, then manifests, then the index), so
//! a sink never holds a manifest whose blobs are missing, and a blob the sink already has
//! is skipped with its subtree.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageManifest};

use super::blobs::{open_verified, BlobSink, BlobSource};
use super::digest::HashingReader;
use super::docker::{normalize_docker_name, DockerArchiveReader};
use super::error::{OciError, OciResult};
use super::image::{
    diff_ids, is_attestation, read_config, read_index, read_manifest, select_manifest,
};
// Defined with the image documents so the format readers below need not import this module.
pub use super::image::ImageEntry;
use super::layout::{tar_is_oci, OciLayoutReader};
use super::media::{classify, decoder, BlobKind, LayerCodec};
use super::platform::Platform;
use super::reference::{DockerSelector, ImageRef};
use super::tarball::TarIndex;

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
    fn layer_diff_id(&self, digest: &Digest) -> Option<Digest> {
        match &self.reader {
            Reader::Oci(r) => r.layer_diff_id(digest),
            Reader::Docker(r) => r.layer_diff_id(digest),
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

/// Deepest nesting of image indexes followed (an index listing an index listing ...).
const MAX_INDEX_DEPTH: usize = 4;

/// Copies the image rooted at `root` from `source` into `sink`, verifying every blob.
///
/// The whole image is checked before anything is written: every index and manifest is read
/// (bounded, see [`super::json`]), indexes list only manifests and indexes, no deeper than
/// [`MAX_INDEX_DEPTH`]; a manifest's config and layers are never manifests or indexes, an
/// image's layers have layer media types and its config's `diff_ids` match them in number
/// and content; every blob is present with its size. Only then are the blobs written,
/// children first, each verified again as it streams.
pub fn import_image(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<ImportReport> {
    let checked = ImportPlan::new(source, &*sink).check(root)?;
    checked.write(source, sink)
}

/// An image that passed [`ImportPlan::check`]: its blobs to write, children first.
struct CheckedImage {
    root: Descriptor,
    order: Vec<Pending>,
    present: usize,
}

/// A blob to write, and the DiffID to check once the sink has ingested it (for a layer
/// whose DiffID the sink computes anyway, see [`BlobSink::records_diff_ids`]).
struct Pending {
    desc: Descriptor,
    check: Option<DiffIdCheck>,
}

/// What the config of `manifest` says a layer's DiffID is.
struct DiffIdCheck {
    expected: Digest,
    manifest: Digest,
    config: Digest,
}

impl DiffIdCheck {
    fn verify(&self, layer: &Digest, sink: &(impl BlobSink + ?Sized)) -> OciResult<()> {
        match sink.layer_diff_id(layer)? {
            Some(actual) if actual == self.expected => Ok(()),
            Some(actual) => Err(diff_id_mismatch(
                &self.manifest,
                layer,
                &actual,
                &self.config,
                &self.expected,
            )),
            None => Err(OciError::Sink {
                digest: layer.to_string(),
                message: "the layer was stored but its DiffID is unknown".into(),
            }),
        }
    }
}

fn diff_id_mismatch(
    manifest: &Digest,
    layer: &Digest,
    actual: &Digest,
    config: &Digest,
    expected: &Digest,
) -> OciError {
    OciError::inconsistent(
        manifest,
        format!("layer {layer} decompresses to {actual} but config {config} says {expected}"),
    )
}

impl CheckedImage {
    /// Writes the blobs the sink does not have yet (an earlier image of the same load may
    /// have written some), each verified as it streams.
    fn write(
        self,
        source: &(impl BlobSource + ?Sized),
        sink: &mut (impl BlobSink + ?Sized),
    ) -> OciResult<ImportReport> {
        let mut report = ImportReport {
            root: self.root,
            blobs_imported: 0,
            blobs_present: self.present,
            bytes_imported: 0,
        };
        for Pending { desc, check } in &self.order {
            if sink.has_blob(desc.digest())? {
                report.blobs_present += 1;
            } else {
                copy_blob(source, desc, sink)?;
                report.blobs_imported += 1;
                report.bytes_imported += desc.size();
            }
            // Before the config and manifest that would make the layer part of an image.
            if let Some(check) = check {
                check.verify(desc.digest(), &*sink)?;
            }
        }
        Ok(report)
    }
}

/// The checking walk of [`import_image`] and [`load`]: what to write, in order, with
/// nothing written yet.
struct ImportPlan<'a, S: ?Sized, K: ?Sized> {
    source: &'a S,
    sink: &'a K,
    /// Blobs to write, children before parents.
    order: Vec<Pending>,
    seen: HashSet<Digest>,
    /// The DiffID of every layer decoded so far (kept across the images of a load).
    diff_ids: HashMap<Digest, Digest>,
    /// Blobs (with their subtrees) the sink already has.
    present: usize,
}

impl<'a, S: BlobSource + ?Sized, K: BlobSink + ?Sized> ImportPlan<'a, S, K> {
    fn new(source: &'a S, sink: &'a K) -> Self {
        ImportPlan {
            source,
            sink,
            order: Vec::new(),
            seen: HashSet::new(),
            diff_ids: HashMap::new(),
            present: 0,
        }
    }

    /// Checks the image rooted at `root` (a manifest or an index).
    fn check(&mut self, root: &Descriptor) -> OciResult<CheckedImage> {
        if !matches!(
            classify(root.media_type()),
            BlobKind::Manifest | BlobKind::Index
        ) {
            return Err(OciError::UnsupportedMediaType {
                media_type: root.media_type().to_string(),
                digest: root.digest().to_string(),
            });
        }
        self.seen.clear();
        self.present = 0;
        self.node(root, 0)?;
        Ok(CheckedImage {
            root: root.clone(),
            order: std::mem::take(&mut self.order),
            present: self.present,
        })
    }
}

impl<S: BlobSource + ?Sized, K: BlobSink + ?Sized> ImportPlan<'_, S, K> {
    /// Whether `d` still needs a look: not seen in this import, not already in the sink.
    fn is_new(&mut self, d: &Descriptor) -> OciResult<bool> {
        if !self.seen.insert(d.digest().clone()) {
            return Ok(false);
        }
        if self.sink.has_blob(d.digest())? {
            self.present += 1;
            return Ok(false);
        }
        Ok(true)
    }

    fn node(&mut self, d: &Descriptor, depth: usize) -> OciResult<()> {
        if !self.is_new(d)? {
            return Ok(());
        }
        match classify(d.media_type()) {
            BlobKind::Index => self.index(d, depth)?,
            BlobKind::Manifest => self.manifest(d)?,
            _ => self.leaf(d)?,
        }
        self.push(d, None);
        Ok(())
    }

    fn index(&mut self, d: &Descriptor, depth: usize) -> OciResult<()> {
        if depth >= MAX_INDEX_DEPTH {
            return Err(OciError::inconsistent(
                d.digest(),
                format!("image indexes nested more than {MAX_INDEX_DEPTH} deep"),
            ));
        }
        let (index, _) = read_index(self.source, d)?;
        if index.manifests().is_empty() {
            return Err(OciError::inconsistent(
                d.digest(),
                "the index lists no manifests",
            ));
        }
        for child in index.manifests() {
            if !matches!(
                classify(child.media_type()),
                BlobKind::Manifest | BlobKind::Index
            ) {
                return Err(OciError::inconsistent(
                    d.digest(),
                    format!(
                        "the index lists {} of media type {}, neither an image manifest nor an index",
                        child.digest(),
                        child.media_type()
                    ),
                ));
            }
            self.node(child, depth + 1)?;
        }
        Ok(())
    }

    fn manifest(&mut self, d: &Descriptor) -> OciResult<()> {
        let (manifest, _) = read_manifest(self.source, d)?;
        let children = std::iter::once(("config", manifest.config()))
            .chain(manifest.layers().iter().map(|l| ("layer", l)));
        for (role, child) in children {
            if matches!(
                classify(child.media_type()),
                BlobKind::Manifest | BlobKind::Index
            ) {
                return Err(OciError::inconsistent(
                    d.digest(),
                    format!(
                        "its {role} {} has media type {}: a manifest or index cannot be a {role}",
                        child.digest(),
                        child.media_type()
                    ),
                ));
            }
        }
        if is_attestation(d) {
            // Build attestations (in-toto statements) travel as they are.
            for child in manifest.layers() {
                if self.is_new(child)? {
                    self.leaf(child)?;
                    self.push(child, None);
                }
            }
            return self.node(manifest.config(), 0);
        }
        self.image(d, &manifest)
    }

    /// An image manifest: a config, layers of layer media types, one DiffID per layer.
    fn image(&mut self, d: &Descriptor, manifest: &ImageManifest) -> OciResult<()> {
        let config = manifest.config();
        if classify(config.media_type()) != BlobKind::Config {
            return Err(OciError::inconsistent(
                d.digest(),
                format!(
                    "its config {} has media type {}, not an image config",
                    config.digest(),
                    config.media_type()
                ),
            ));
        }
        let mut codecs = Vec::new();
        for layer in manifest.layers() {
            match classify(layer.media_type()) {
                BlobKind::Layer(codec) => codecs.push(codec),
                _ => {
                    return Err(OciError::UnsupportedMediaType {
                        media_type: layer.media_type().to_string(),
                        digest: layer.digest().to_string(),
                    })
                }
            }
        }
        let (config_value, _) = read_config(self.source, config)?;
        let ids = diff_ids(&config_value, config.digest())?;
        if ids.len() != manifest.layers().len() {
            return Err(OciError::inconsistent(
                d.digest(),
                format!(
                    "{} layers but {} diff_ids in config {}",
                    manifest.layers().len(),
                    ids.len(),
                    config.digest()
                ),
            ));
        }
        for ((layer, codec), id) in manifest.layers().iter().zip(codecs).zip(&ids) {
            let new = self.is_new(layer)?;
            let check = match self.diff_id(layer, codec, new)? {
                Some(actual) if actual == *id => None,
                Some(actual) => {
                    return Err(diff_id_mismatch(
                        d.digest(),
                        layer.digest(),
                        &actual,
                        config.digest(),
                        id,
                    ))
                }
                None => Some(DiffIdCheck {
                    expected: id.clone(),
                    manifest: d.digest().clone(),
                    config: config.digest().clone(),
                }),
            };
            if new {
                self.push(layer, check);
            }
        }
        self.node(config, 0)
    }

    fn push(&mut self, d: &Descriptor, check: Option<DiffIdCheck>) {
        self.order.push(Pending {
            desc: d.clone(),
            check,
        });
    }

    /// A blob that is not walked into: it must be in the source with its size.
    fn leaf(&self, d: &Descriptor) -> OciResult<()> {
        let size = self.source.blob_size(d.digest())?;
        if size != d.size() {
            return Err(OciError::SizeMismatch {
                digest: d.digest().to_string(),
                expected: d.size(),
                actual: size,
            });
        }
        Ok(())
    }

    /// The DiffID of a layer (its uncompressed tar's digest): known already (an
    /// uncompressed layer, a docker-archive, a layer the sink holds), or decoded here once
    /// per import. `None` for a `new` layer the sink will hash itself as it ingests it: it
    /// is checked right after it is written.
    fn diff_id(
        &mut self,
        layer: &Descriptor,
        codec: LayerCodec,
        new: bool,
    ) -> OciResult<Option<Digest>> {
        if new {
            self.leaf(layer)?;
        }
        if let Some(id) = self.diff_ids.get(layer.digest()) {
            return Ok(Some(id.clone()));
        }
        let sha256 = layer.digest().algorithm().to_string() == "sha256";
        let id = if codec == LayerCodec::Uncompressed && sha256 {
            layer.digest().clone()
        } else if let Some(known) = self.source.layer_diff_id(layer.digest()) {
            known
        } else if let (false, Ok(Some(held))) = (new, self.sink.layer_diff_id(layer.digest())) {
            held
        } else if new && self.sink.records_diff_ids() {
            return Ok(None);
        } else {
            decode_diff_id(self.source, layer, codec)?
        };
        self.diff_ids.insert(layer.digest().clone(), id.clone());
        Ok(Some(id))
    }
}

/// Decodes a layer, verified, and returns the digest of its uncompressed content. A blob
/// that does not match its digest is reported as such, before any codec error it causes.
fn decode_diff_id(
    source: &(impl BlobSource + ?Sized),
    layer: &Descriptor,
    codec: LayerCodec,
) -> OciResult<Digest> {
    let mut reader = open_verified(source, layer)?;
    let decoded = (|| {
        let mut plain = HashingReader::new(decoder(codec, &mut reader)?);
        io::copy(&mut plain, &mut io::sink())?;
        Ok::<_, io::Error>(plain.finish().0)
    })();
    match decoded {
        Ok(id) => {
            reader.finish()?;
            Ok(id)
        }
        Err(e) => Err(reader.finish().err().unwrap_or(OciError::Codec {
            action: "decompress",
            digest: layer.digest().to_string(),
            source: e,
        })),
    }
}

/// Writes one blob to the sink, verified as it streams.
fn copy_blob(
    source: &(impl BlobSource + ?Sized),
    d: &Descriptor,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<()> {
    let mut reader = open_verified(source, d)?;
    let stored = match sink.put_blob(Some(d.digest()), d.media_type(), &mut reader) {
        Ok(desc) => desc,
        // A sink that stopped early (a layer that does not decode) may have stopped because
        // the blob is corrupt: read the rest, so that is what is reported when it is so.
        Err(e) => return Err(reader.finish().err().unwrap_or(e)),
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
    platform: Option<&Platform>,
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

/// Imports every image of a layout or archive into `sink`, all of them checked before any
/// blob is written; returns each entry with its report (`chasi load`).
pub fn load(
    path: &Path,
    sink: &mut (impl BlobSink + ?Sized),
) -> OciResult<Vec<(ImageEntry, ImportReport)>> {
    let opened = OpenedImages::open(path, None)?;
    // Every image is checked before the first blob is written: one bad image leaves the
    // sink as it was.
    let mut checked = Vec::new();
    {
        let mut plan = ImportPlan::new(&opened, &*sink);
        for entry in opened.entries() {
            checked.push((entry, plan.check(&entry.root)?));
        }
    }
    let mut out = Vec::new();
    for (entry, image) in checked {
        out.push((entry.clone(), image.write(&opened, sink)?));
    }
    Ok(out)
}

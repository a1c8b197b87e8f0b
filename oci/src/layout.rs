//! OCI image layouts, as a directory (`oci:`) and as a tar of one (`oci-archive:`), both
//! ways.
//!
//! Writing: the export plan's blobs go to `blobs/<alg>/<hex>`, then `index.json` names the
//! image with `org.opencontainers.image.ref.name` (and `io.containerd.image.name` when a
//! full name is given). A directory that already is a layout gets the image added, replacing
//! an entry with the same tag, as skopeo does; an archive is always written whole, its
//! members sorted, by the rules of [`crate::output`] (a file through a temporary file
//! renamed into place, a pipe or device in place, `-` to standard output). The files of a
//! layout directory (`index.json`, `oci-layout`) go through the same [`Output`]; staged
//! layers go to [`WriteOptions::work_dir`], never next to the output.
//!
//! Reading: `oci-layout` and `index.json` are parsed, every `index.json` entry becomes an
//! [`ImageEntry`], and blobs are served verified from the directory or straight out of the
//! archive.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};
use serde_json::{json, Value};

use super::blobs::{BlobSource, DirBlobs, MemoryBlobs, MAX_JSON_BLOB};
use super::error::{OciError, OciResult};
use super::image::{plain_descriptor, ImageEntry, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use super::json::{parse_document, to_canonical_json};
use super::media::{classify, BlobKind};
use super::options::{WriteOptions, WriteReport};
use super::plan::{BlobData, ExportPlan, Planner};
use super::reference::{ref_name_problem, validate_ref_name};
use super::tarball::{DeterministicTar, TarIndex};
use crate::output::{self, Output};

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where an export plan stages re-compressed layers: the caller's work dir (the store's
/// session `tmp/`), else the system's temp dir.
pub(crate) fn staging_dir(opts: &WriteOptions) -> PathBuf {
    opts.work_dir.clone().unwrap_or_else(std::env::temp_dir)
}

fn index_entry(root: &Descriptor, opts: &WriteOptions) -> OciResult<Value> {
    let mut d = root.clone();
    d.set_annotations(None);
    let mut entry = plain_descriptor(&d);
    let mut annotations = serde_json::Map::new();
    if let Some(name) = &opts.image_name {
        annotations.insert(
            ANNOTATION_CONTAINERD_NAME.into(),
            Value::String(name.clone()),
        );
    }
    if let Some(tag) = &opts.tag {
        validate_ref_name(tag)?;
        annotations.insert(ANNOTATION_REF_NAME.into(), Value::String(tag.clone()));
    }
    if !annotations.is_empty() {
        entry["annotations"] = Value::Object(annotations);
    }
    Ok(entry)
}

fn index_json(entries: Vec<Value>) -> OciResult<Vec<u8>> {
    to_canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": entries,
    }))
}

fn plan_for(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    opts: &WriteOptions,
) -> OciResult<ExportPlan> {
    if !matches!(
        classify(root.media_type()),
        BlobKind::Manifest | BlobKind::Index
    ) {
        return Err(OciError::UnsupportedMediaType {
            media_type: root.media_type().to_string(),
            digest: root.digest().to_string(),
        });
    }
    Planner::new(source, opts.compression, &staging_dir(opts)).plan(root)
}

/// Writes (or adds to) an OCI image layout directory.
pub fn write_oci_layout(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    dir: &Path,
    opts: &WriteOptions,
) -> OciResult<WriteReport> {
    index_entry(root, opts)?;
    if output::is_stdout(dir) {
        return Err(OciError::OutputExists {
            path: dir.to_path_buf(),
            reason: "an OCI layout is a directory; write an oci-archive to standard output",
        });
    }
    let mut existing: Vec<Value> = Vec::new();
    if dir.exists() {
        if !dir.is_dir() {
            return Err(OciError::OutputExists {
                path: dir.to_path_buf(),
                reason: "it exists and is not a directory",
            });
        }
        if dir.join("oci-layout").is_file() {
            let raw = fs::read(dir.join("index.json"))
                .map_err(OciError::io("read", dir.join("index.json")))?;
            let v: Value = parse_document(&raw, "index.json", dir.join("index.json").display())?;
            existing = v
                .get("manifests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
        } else if fs::read_dir(dir)
            .map_err(OciError::io("list", dir))?
            .next()
            .is_some()
        {
            return Err(OciError::OutputExists {
                path: dir.to_path_buf(),
                reason: "it is a non-empty directory that is not an OCI image layout",
            });
        }
    }
    fs::create_dir_all(dir).map_err(OciError::io("create directory", dir))?;
    let plan = plan_for(source, root, opts)?;
    let blobs = DirBlobs::new(dir);
    let mut report = WriteReport::new(plan.root.clone());
    for blob in plan.blobs.values() {
        let target = blobs.blob_path(&blob.digest);
        if existing_blob_is_intact(&target, &blob.digest, blob.size) {
            continue;
        }
        match &blob.data {
            BlobData::Staged(path) => {
                // Already hashed when staged; verify again while copying.
                let mut f = fs::File::open(path).map_err(OciError::io("open", path))?;
                blobs.write_blob(Some(&blob.digest), &mut f)?;
            }
            _ => {
                let mut r = plan.open(source, blob)?;
                blobs.write_blob(Some(&blob.digest), &mut r)?;
            }
        }
        report.blobs_written += 1;
        report.bytes_written += blob.size;
    }
    let entry = index_entry(&plan.root, opts)?;
    existing.retain(|e| {
        let ref_name = e
            .get("annotations")
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .and_then(Value::as_str);
        match (&opts.tag, ref_name) {
            (Some(t), Some(r)) => t != r,
            (None, None) => e.get("digest") != entry.get("digest"),
            _ => true,
        }
    });
    existing.push(entry);
    write_atomic(&dir.join("oci-layout"), OCI_LAYOUT)?;
    write_atomic(&dir.join("index.json"), &index_json(existing)?)?;
    Ok(report)
}

/// Whether a layout already holds a blob with the right size and content (an existing
/// layout is not trusted: a damaged blob is rewritten).
fn existing_blob_is_intact(path: &Path, digest: &Digest, size: u64) -> bool {
    if !fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == size) {
        return false;
    }
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    match super::digest::VerifyingReader::new(io::BufReader::new(file), digest, size) {
        Ok(r) => r.finish().is_ok(),
        Err(_) => false,
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> OciResult<()> {
    let mut o = Output::create(path)?;
    o.writer()
        .write_all(bytes)
        .map_err(OciError::io("write", path))?;
    o.commit()?;
    Ok(())
}

/// Writes an `oci-archive`: a deterministic tar of an OCI layout holding this one image.
pub fn write_oci_archive(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    file: &Path,
    opts: &WriteOptions,
) -> OciResult<WriteReport> {
    index_entry(root, opts)?;
    let plan = plan_for(source, root, opts)?;
    let mut out = Output::create(file)?;
    let mut report = WriteReport::new(plan.root.clone());
    {
        let w = io::BufWriter::with_capacity(1 << 20, out.writer());
        let mut tar = DeterministicTar::new(w, file);
        let mut algorithms: Vec<String> = plan
            .blobs
            .values()
            .map(|b| b.digest.algorithm().to_string())
            .collect();
        algorithms.sort();
        algorithms.dedup();
        tar.dir("blobs/")?;
        for alg in &algorithms {
            tar.dir(&format!("blobs/{alg}/"))?;
            let mut names: Vec<_> = plan
                .blobs
                .values()
                .filter(|b| b.digest.algorithm().to_string() == *alg)
                .collect();
            names.sort_by(|a, b| a.digest.digest().cmp(b.digest.digest()));
            for blob in names {
                let name = format!("blobs/{alg}/{}", blob.digest.digest());
                let mut r = plan.open(source, blob)?;
                tar.file(&name, blob.size, &mut r)?;
                report.blobs_written += 1;
                report.bytes_written += blob.size;
            }
        }
        let index = index_json(vec![index_entry(&plan.root, opts)?])?;
        tar.file("index.json", index.len() as u64, &mut &index[..])?;
        tar.file("oci-layout", OCI_LAYOUT.len() as u64, &mut &OCI_LAYOUT[..])?;
        finish_archive(tar.finish()?, file)?;
    }
    out.commit()?;
    Ok(report)
}

/// Flushes an archive's buffer and waits for its background sync.
pub(crate) fn finish_archive(
    w: io::BufWriter<output::SyncAhead<'_>>,
    file: &Path,
) -> OciResult<()> {
    w.into_inner()
        .map_err(|e| OciError::io("write", file)(e.into_error()))?
        .finish()
        .map_err(OciError::io("sync", file))
}

/// The names an `index.json` entry carries (`org.opencontainers.image.ref.name`, then
/// `io.containerd.image.name`), each checked: a name that could not be a tag (`../..`, a
/// newline, 300 characters) is refused, naming the entry.
fn entry_names(d: &Descriptor, location: &str) -> OciResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let Some(annotations) = d.annotations() else {
        return Ok(names);
    };
    for key in [ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME] {
        let Some(name) = annotations.get(key) else {
            continue;
        };
        check_image_name(
            name,
            "index.json",
            location,
            &format!("entry {}", d.digest()),
        )?;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// Refuses an image name read from a layout or archive that [`ref_name_problem`] rejects;
/// the error quotes the name escaped and shortened.
pub(crate) fn check_image_name(
    name: &str,
    what: &'static str,
    location: &str,
    owner: &str,
) -> OciResult<()> {
    let Some(reason) = ref_name_problem(name) else {
        return Ok(());
    };
    let shown: String = name.chars().take(80).collect();
    let more = if shown.len() < name.len() {
        format!("… ({} bytes)", name.len())
    } else {
        String::new()
    };
    Err(OciError::bad_json(
        what,
        location,
        format!("{owner} is named {shown:?}{more}: {reason}"),
    ))
}

/// Where a layout's files are: a directory or an archive.
enum Storage {
    Dir(DirBlobs),
    Tar(TarIndex),
}

/// An OCI image layout opened for reading (directory or `oci-archive`).
pub struct OciLayoutReader {
    storage: Storage,
    location: String,
    overlay: MemoryBlobs,
    entries: Vec<ImageEntry>,
}

impl OciLayoutReader {
    /// Opens a layout directory.
    pub fn open_dir(dir: &Path) -> OciResult<Self> {
        let read = |name: &str| -> OciResult<Option<Vec<u8>>> {
            let p = dir.join(name);
            match fs::metadata(&p) {
                Ok(m) if m.len() > MAX_JSON_BLOB => Err(OciError::TooLarge {
                    what: "layout file",
                    location: p.display().to_string(),
                    size: m.len(),
                    limit: MAX_JSON_BLOB,
                }),
                Ok(_) => fs::read(&p).map(Some).map_err(OciError::io("read", &p)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(OciError::io("stat", &p)(e)),
            }
        };
        let location = format!("OCI layout {}", dir.display());
        let layout = read("oci-layout")?;
        let index = read("index.json")?;
        Self::finish_open(
            Storage::Dir(DirBlobs::new(dir)),
            location,
            dir,
            layout,
            index,
        )
    }

    /// Opens an `oci-archive` without extracting it.
    pub fn open_archive(file: &Path) -> OciResult<Self> {
        let tar = TarIndex::scan(file)?;
        let layout = tar.read_small("oci-layout", MAX_JSON_BLOB)?;
        let index = tar.read_small("index.json", MAX_JSON_BLOB)?;
        let location = format!("oci-archive {}", file.display());
        Self::finish_open(Storage::Tar(tar), location, file, layout, index)
    }

    fn finish_open(
        storage: Storage,
        location: String,
        path: &Path,
        layout: Option<Vec<u8>>,
        index: Option<Vec<u8>>,
    ) -> OciResult<Self> {
        let layout = layout.ok_or_else(|| OciError::UnknownFormat {
            path: path.to_path_buf(),
            reason: "no oci-layout file".to_string(),
        })?;
        let v: Value = parse_document(&layout, "oci-layout", &location)?;
        match v.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(ver) if ver.starts_with("1.") => {}
            other => {
                return Err(OciError::bad_json(
                    "oci-layout",
                    &location,
                    format!("unsupported imageLayoutVersion {other:?}"),
                ))
            }
        }
        let index_raw =
            index.ok_or_else(|| OciError::bad_json("index.json", &location, "missing"))?;
        let index: ImageIndex = parse_document(&index_raw, "index.json", &location)?;
        if index.manifests().is_empty() {
            return Err(OciError::bad_json(
                "index.json",
                &location,
                "the index lists no manifests",
            ));
        }
        let mut overlay = MemoryBlobs::new();
        let mut entries = Vec::new();
        for d in index.manifests() {
            entries.push(ImageEntry {
                names: entry_names(d, &location)?,
                root: d.clone(),
            });
        }
        // A layout whose index.json *is* the multi-platform index (one unnamed entry per
        // platform, as some tools write) is one image: serve index.json as its root blob.
        let all_unnamed_platforms = entries.len() > 1
            && entries
                .iter()
                .all(|e| e.names.is_empty() && e.root.platform().is_some());
        if all_unnamed_platforms {
            let root = overlay.insert(MediaType::ImageIndex, index_raw);
            entries = vec![ImageEntry {
                names: Vec::new(),
                root,
            }];
        }
        Ok(OciLayoutReader {
            storage,
            location,
            overlay,
            entries,
        })
    }

    /// The images named in `index.json`.
    pub fn entries(&self) -> &[ImageEntry] {
        &self.entries
    }

    fn member_name(digest: &Digest) -> String {
        format!("blobs/{}/{}", digest.algorithm(), digest.digest())
    }
}

impl BlobSource for OciLayoutReader {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        if let Some(b) = self.overlay.get(digest) {
            return Ok(b.len() as u64);
        }
        match &self.storage {
            Storage::Dir(d) => d.blob_size(digest),
            Storage::Tar(t) => t
                .get(&Self::member_name(digest))?
                .map(|m| m.size)
                .ok_or_else(|| OciError::MissingBlob {
                    digest: digest.to_string(),
                    location: self.location.clone(),
                }),
        }
    }

    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        if let Some(b) = self.overlay.get(digest) {
            return Ok(Box::new(b));
        }
        match &self.storage {
            Storage::Dir(d) => d.open_blob(digest),
            Storage::Tar(t) => match t.get(&Self::member_name(digest))? {
                Some(m) => Ok(Box::new(t.open(m)?)),
                None => Err(OciError::MissingBlob {
                    digest: digest.to_string(),
                    location: self.location.clone(),
                }),
            },
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

/// Whether a tar archive looks like an oci-archive (has `oci-layout` and `index.json`).
pub(crate) fn tar_is_oci(tar: &TarIndex) -> bool {
    tar.contains("oci-layout") && tar.contains("index.json")
}

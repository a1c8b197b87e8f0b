//! `docker-archive`: the `docker save` format (`manifest.json` with `Config`, `RepoTags`,
//! `Layers`), both ways.
//!
//! Writing picks one platform (the format has no index), writes the config verbatim as
//! `<hex>.json` (its digest is the docker image ID) and each layer as `<hex>/layer.tar`,
//! plain tar by default since docker and containerd do not read zstd here (gzip on request;
//! DiffIDs are unchanged either way and are checked while transcoding). Manifest annotations
//! (sealer's `sealer.image.extension`) cannot be carried and are reported as a warning.
//!
//! Reading accepts archives from `docker save` (legacy `<id>/layer.tar` members, or the
//! OCI-style `blobs/sha256/…` of docker 25+), skopeo, buildah and podman (layers stored once as
//! `<digest>.tar`, linked from `<id>/layer.tar`; the index follows such links) and this crate.
//! Such archives carry no layer digests, so every layer is hashed and decompressed once at
//! open: its DiffID must match the config, and an OCI manifest is synthesized over the blobs
//! as they are.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};
use serde::Deserialize;
use serde_json::{json, Value};

use super::blobs::{read_blob, BlobSource, MemoryBlobs, MAX_JSON_BLOB};
use super::digest::{sha256_digest, HashingReader};
use super::error::{OciError, OciResult};
use super::image::{
    config_platform, diff_ids, plain_descriptor, select_manifest, select_platform_manifest,
    ImageEntry,
};
use super::json::{parse_document, to_canonical_json};
use super::layout::{check_image_name, finish_archive, staging_dir};
use super::media::{classify, decoder, oci_layer_type, sniff, BlobKind, LayerCodec};
use super::options::{WriteOptions, WriteReport};
use super::plan::{BlobData, Planner};
use super::tarball::{normalize_member, DeterministicTar, Member, TarIndex};

/// Writes a docker-archive of one platform of the image rooted at `root`.
pub fn write_docker_archive(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    file: &Path,
    opts: &WriteOptions,
) -> OciResult<WriteReport> {
    let manifest_desc = match &opts.platform {
        Some(p) => select_platform_manifest(source, root, p)?,
        None => select_manifest(source, root, None)?,
    };
    let plan = Planner::new(source, opts.compression, &staging_dir(opts))
        .for_docker_archive()?
        .plan_manifest(&manifest_desc)?;
    let manifest_raw = match plan.blobs.get(&plan.root.digest().to_string()) {
        Some(b) => match &b.data {
            BlobData::Memory(bytes) => bytes.clone(),
            _ => read_blob(source, &plan.root, "image manifest")?,
        },
        None => read_blob(source, &plan.root, "image manifest")?,
    };
    let manifest: ImageManifest =
        parse_document(&manifest_raw, "image manifest", plan.root.digest())?;
    let config_raw = read_blob(source, manifest.config(), "image config")?;
    let config: Value = parse_document(&config_raw, "image config", manifest.config().digest())?;
    let ids = diff_ids(&config, manifest.config().digest())?;
    if ids.len() != manifest.layers().len() {
        return Err(OciError::inconsistent(
            manifest_desc.digest(),
            format!(
                "{} layers but {} diff_ids in the config",
                manifest.layers().len(),
                ids.len()
            ),
        ));
    }

    // name -> (digest, size) of every member, sorted by name.
    let mut members: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let config_name = format!("{}.json", manifest.config().digest().digest());
    members.insert(
        config_name.clone(),
        (manifest.config().digest().clone(), manifest.config().size()),
    );
    let mut layer_names = Vec::new();
    for (layer, id) in manifest.layers().iter().zip(&ids) {
        match classify(layer.media_type()) {
            BlobKind::Layer(LayerCodec::Uncompressed) if layer.digest() != id => {
                return Err(OciError::inconsistent(
                    layer.digest(),
                    format!("an uncompressed layer's digest must equal its diff_id {id}"),
                ))
            }
            BlobKind::Layer(LayerCodec::Uncompressed | LayerCodec::Gzip) => {}
            _ => {
                return Err(OciError::UnsupportedMediaType {
                    media_type: layer.media_type().to_string(),
                    digest: layer.digest().to_string(),
                })
            }
        }
        let name = format!("{}/layer.tar", layer.digest().digest());
        members.insert(name.clone(), (layer.digest().clone(), layer.size()));
        layer_names.push(name);
    }
    let repo_tags: Vec<String> = opts
        .image_name
        .clone()
        .or_else(|| opts.tag.clone())
        .into_iter()
        .collect();
    let docker_manifest = to_canonical_json(&json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]))?;

    let mut report = WriteReport::new(plan.root.clone());
    if manifest
        .annotations()
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        let mut keys: Vec<_> = manifest
            .annotations()
            .iter()
            .flat_map(|a| a.keys().cloned())
            .collect();
        keys.sort();
        report.warnings.push(format!(
            "a docker-archive cannot carry manifest annotations; dropped: {}",
            keys.join(", ")
        ));
    }
    let mut out = crate::output::Output::create(file)?;
    {
        let w = io::BufWriter::with_capacity(1 << 20, out.writer());
        let mut tar = DeterministicTar::new(w, file);
        let mut dirs_done = std::collections::BTreeSet::new();
        let mut all: Vec<(String, Option<(Digest, u64)>)> = members
            .iter()
            .map(|(n, v)| (n.clone(), Some(v.clone())))
            .collect();
        all.push(("manifest.json".to_string(), None));
        for name in members.keys() {
            if let Some((dir, _)) = name.split_once('/') {
                if dirs_done.insert(dir.to_string()) {
                    all.push((format!("{dir}/"), None));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, blob) in all {
            match blob {
                None if name.ends_with('/') => tar.dir(&name)?,
                None => tar.file(
                    &name,
                    docker_manifest.len() as u64,
                    &mut &docker_manifest[..],
                )?,
                Some((digest, size)) => {
                    let planned = plan.blobs.get(&digest.to_string()).ok_or_else(|| {
                        OciError::MissingBlob {
                            digest: digest.to_string(),
                            location: "the export plan".to_string(),
                        }
                    })?;
                    let mut r = plan.open(source, planned)?;
                    tar.file(&name, size, &mut r)?;
                    report.blobs_written += 1;
                    report.bytes_written += size;
                }
            }
        }
        finish_archive(tar.finish()?, file)?;
    }
    out.commit()?;
    Ok(report)
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// A docker-archive opened for reading.
pub struct DockerArchiveReader {
    tar: TarIndex,
    location: String,
    overlay: MemoryBlobs,
    blob_members: HashMap<Digest, Member>,
    /// The DiffID of every layer, computed when the archive was opened.
    diff_ids: HashMap<Digest, Digest>,
    entries: Vec<ImageEntry>,
}

impl DockerArchiveReader {
    /// Opens and verifies a docker-archive (hashes every layer once).
    pub fn open(file: &Path) -> OciResult<Self> {
        let tar = TarIndex::scan(file)?;
        Self::from_index(tar)
    }

    pub(crate) fn from_index(tar: TarIndex) -> OciResult<Self> {
        let file = tar.path().to_path_buf();
        let location = format!("docker-archive {}", file.display());
        let Some(raw) = tar.read_small("manifest.json", MAX_JSON_BLOB)? else {
            let reason = if tar.contains("repositories") {
                "it has `repositories` but no manifest.json: archives from docker before 1.10 are not supported"
            } else {
                "no manifest.json"
            };
            return Err(OciError::UnknownFormat {
                path: file,
                reason: reason.to_string(),
            });
        };
        let list: Vec<DockerManifestEntry> = parse_document(&raw, "manifest.json", &location)?;
        let mut reader = DockerArchiveReader {
            tar,
            location,
            overlay: MemoryBlobs::new(),
            blob_members: HashMap::new(),
            diff_ids: HashMap::new(),
            entries: Vec::new(),
        };
        if list.is_empty() {
            return Err(OciError::bad_json(
                "manifest.json",
                &reader.location,
                "it lists no images",
            ));
        }
        let mut layer_cache: HashMap<String, (Descriptor, Digest)> = HashMap::new();
        for (i, entry) in list.iter().enumerate() {
            for name in entry.repo_tags.iter().flatten() {
                check_image_name(
                    name,
                    "manifest.json",
                    &reader.location,
                    &format!("image {i}"),
                )?;
            }
            let root = reader.synthesize(entry, &mut layer_cache)?;
            reader.entries.push(ImageEntry {
                names: entry.repo_tags.clone().unwrap_or_default(),
                root,
            });
        }
        Ok(reader)
    }

    fn member(&self, raw_name: &str) -> OciResult<(String, Member)> {
        let name = normalize_member(self.tar.path(), raw_name)?;
        match self.tar.get(&name)? {
            Some(m) => Ok((name, m)),
            None => Err(OciError::bad_archive(
                self.tar.path(),
                format!("manifest.json names {raw_name}, which is not in the archive"),
            )),
        }
    }

    fn synthesize(
        &mut self,
        entry: &DockerManifestEntry,
        layer_cache: &mut HashMap<String, (Descriptor, Digest)>,
    ) -> OciResult<Descriptor> {
        let (config_name, config_member) = self.member(&entry.config)?;
        let config_raw = self
            .tar
            .read_small(&config_name, MAX_JSON_BLOB)?
            .unwrap_or_default();
        let config_digest = sha256_digest(&config_raw);
        check_named_digest(&config_name, &config_digest, &self.location)?;
        let config: Value = parse_document(
            &config_raw,
            "image config",
            format!("{config_name} in {}", self.location),
        )?;
        let ids = diff_ids(&config, &config_digest)?;
        if ids.len() != entry.layers.len() {
            return Err(OciError::inconsistent(
                &config_digest,
                format!(
                    "manifest.json lists {} layers but the config has {} diff_ids",
                    entry.layers.len(),
                    ids.len()
                ),
            ));
        }
        self.blob_members
            .insert(config_digest.clone(), config_member);
        let mut layers = Vec::new();
        for (layer_name, id) in entry.layers.iter().zip(&ids) {
            let (name, member) = self.member(layer_name)?;
            let (desc, diff_id) = match layer_cache.get(&name) {
                Some(v) => v.clone(),
                None => {
                    let v = self.hash_layer(&name, member)?;
                    layer_cache.insert(name.clone(), v.clone());
                    v
                }
            };
            check_named_digest(&name, desc.digest(), &self.location)?;
            if diff_id != *id {
                return Err(OciError::inconsistent(
                    &config_digest,
                    format!("layer {name} decompresses to {diff_id} but the config says {id}"),
                ));
            }
            self.blob_members.insert(desc.digest().clone(), member);
            self.diff_ids.insert(desc.digest().clone(), diff_id);
            layers.push(plain_descriptor(&desc));
        }
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_raw.len() as u64,
            config_digest,
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageManifest.to_string(),
            "config": plain_descriptor(&config_desc),
            "layers": layers,
        });
        let mut desc = self
            .overlay
            .insert(MediaType::ImageManifest, to_canonical_json(&manifest)?);
        if let Some(p) = config_platform(&config) {
            desc.set_platform(Some(p.to_oci()?));
        }
        Ok(desc)
    }

    /// Digest and codec of the blob as stored, and the DiffID of its content.
    fn hash_layer(&self, name: &str, member: Member) -> OciResult<(Descriptor, Digest)> {
        let err = |e: io::Error| OciError::Codec {
            action: "decompress",
            digest: format!("{name} in {}", self.location),
            source: e,
        };
        let raw = HashingReader::new(self.tar.open(member)?);
        let mut buffered = BufReader::new(raw);
        let codec = sniff(buffered.fill_buf().map_err(err)?);
        let mut plain = HashingReader::new(decoder(codec, &mut buffered).map_err(err)?);
        io::copy(&mut plain, &mut io::sink()).map_err(err)?;
        let (diff_id, _) = plain.finish();
        io::copy(&mut buffered, &mut io::sink()).map_err(err)?;
        let (digest, size) = buffered.into_inner().finish();
        if size != member.size {
            return Err(OciError::bad_archive(
                self.tar.path(),
                format!("member {name} is truncated"),
            ));
        }
        Ok((
            Descriptor::new(oci_layer_type(codec), size, digest),
            diff_id,
        ))
    }

    /// The images listed in `manifest.json`, named by their `RepoTags`.
    pub fn entries(&self) -> &[ImageEntry] {
        &self.entries
    }
}

impl BlobSource for DockerArchiveReader {
    fn blob_size(&self, digest: &Digest) -> OciResult<u64> {
        if let Some(b) = self.overlay.get(digest) {
            return Ok(b.len() as u64);
        }
        self.blob_members
            .get(digest)
            .map(|m| m.size)
            .ok_or_else(|| OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location.clone(),
            })
    }

    fn open_blob(&self, digest: &Digest) -> OciResult<Box<dyn Read + '_>> {
        if let Some(b) = self.overlay.get(digest) {
            return Ok(Box::new(b));
        }
        match self.blob_members.get(digest) {
            Some(m) => Ok(Box::new(self.tar.open(*m)?)),
            None => Err(OciError::MissingBlob {
                digest: digest.to_string(),
                location: self.location.clone(),
            }),
        }
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn layer_diff_id(&self, digest: &Digest) -> Option<Digest> {
        self.diff_ids.get(digest).cloned()
    }
}

/// Members named after their content (`<hex>.json`, `blobs/sha256/<hex>`, `<hex>.tar`)
/// must hash to that name; `<id>/layer.tar` names carry a v1 id and are not checked.
fn check_named_digest(name: &str, digest: &Digest, location: &str) -> OciResult<()> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base
        .strip_suffix(".json")
        .or_else(|| base.strip_suffix(".tar"))
        .unwrap_or(base);
    let named = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
    let sha256 = digest.algorithm().to_string() == "sha256";
    if named && sha256 && !name.ends_with("/layer.tar") && stem != digest.digest() {
        return Err(OciError::DigestMismatch {
            expected: format!("sha256:{stem} ({name} in {location})"),
            actual: digest.to_string(),
        });
    }
    Ok(())
}

/// `busybox` → `busybox:latest`, `docker.io/library/busybox:1` → `busybox:1`.
pub(crate) fn normalize_docker_name(name: &str) -> String {
    let mut n = name;
    for prefix in [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
        "index.docker.io/",
    ] {
        if let Some(rest) = n.strip_prefix(prefix) {
            n = rest;
            break;
        }
    }
    let last = n.rsplit('/').next().unwrap_or(n);
    if last.contains(':') || n.contains('@') {
        n.to_string()
    } else {
        format!("{n}:latest")
    }
}

//! Opening a delta artifact (oci-archive or OCI layout) and checking that it is one, and a consistent one,
//! before anything reads its payloads.

use crate::error::{DeltaError, Result};
use crate::format::{
    Blob, DeltaConfig, Method, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, FORMAT_VERSION, PAYLOAD_MEDIA_TYPE,
};
use chasi_layers::Digest;
use chasi_oci::blobs::{open_verified, read_blob};
use chasi_oci::{Descriptor, ImageManifest, MediaType, OciLayoutReader};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// An opened, checked delta artifact.
pub struct DeltaArtifact {
    reader: OciLayoutReader,
    location: String,
    digest: Digest,
    config: DeltaConfig,
    blobs: HashMap<Digest, Descriptor>,
}

impl DeltaArtifact {
    /// Opens the artifact at `path` and checks its manifest and config.
    pub fn open(path: &Path) -> Result<DeltaArtifact> {
        let location = path.display().to_string();
        let reader = if path.is_dir() {
            OciLayoutReader::open_dir(path)?
        } else {
            OciLayoutReader::open_archive(path)?
        };
        let entries = reader.entries();
        let [entry] = entries else {
            return Err(DeltaError::NotADelta {
                location,
                reason: format!(
                    "it holds {} images, a delta holds one artifact",
                    entries.len()
                ),
            });
        };
        let root = entry.root.clone();
        if *root.media_type() != MediaType::ImageManifest {
            return Err(not_delta(
                &location,
                format!("its root is a {}", root.media_type()),
            ));
        }
        let (manifest, _) = chasi_oci::image::read_manifest(&reader, &root)?;
        check_manifest(&manifest, &location)?;
        let raw = read_blob(&reader, manifest.config(), "delta config")?;
        let config_loc = format!("delta config {}", manifest.config().digest());
        let config: DeltaConfig =
            chasi_oci::json::parse_document(&raw, "delta config", &config_loc)
                .map_err(|e| DeltaError::malformed(&config_loc, chasi_oci::error::chain(&e)))?;
        let mut blobs = HashMap::new();
        for d in manifest.layers() {
            blobs.insert(Digest::from_oci(d.digest())?, d.clone());
        }
        let digest = Digest::from_oci(root.digest())?;
        let art = DeltaArtifact {
            reader,
            location,
            digest,
            config,
            blobs,
        };
        art.check_config(&manifest, &config_loc)?;
        Ok(art)
    }

    /// The delta's config.
    pub fn config(&self) -> &DeltaConfig {
        &self.config
    }

    /// The artifact manifest's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Where it was opened from.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The total size of the blobs it carries.
    pub fn payload_size(&self) -> u64 {
        self.blobs.values().map(|d| d.size()).sum()
    }

    /// Opens one of its blobs; its digest and size are verified as it is read.
    pub fn blob(&self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        let d = self.blobs.get(digest).ok_or_else(|| {
            DeltaError::malformed(
                &self.location,
                format!("blob {digest} is not in the artifact"),
            )
        })?;
        Ok(Box::new(open_verified(&self.reader, d)?))
    }

    /// Reads every blob once, completely, checking its digest.
    pub fn verify_blobs(&self) -> Result<()> {
        let mut sorted: Vec<&Descriptor> = self.blobs.values().collect();
        sorted.sort_by_key(|d| d.digest().to_string());
        for d in sorted {
            let mut r = open_verified(&self.reader, d)?;
            let mut sink = std::io::sink();
            std::io::copy(&mut r, &mut sink).map_err(|e| r.explain(e, "read"))?;
            r.finish()?;
        }
        Ok(())
    }

    fn check_config(&self, manifest: &ImageManifest, loc: &str) -> Result<()> {
        let c = &self.config;
        let bad = |d: String| Err(DeltaError::malformed(loc, d));
        if c.format_version != FORMAT_VERSION {
            return bad(format!(
                "format version {}; this chasi reads version {FORMAT_VERSION}",
                c.format_version
            ));
        }
        match manifest.subject() {
            Some(s) if *s.digest() == c.target.digest.to_oci() => {}
            _ => return bad("the manifest's subject is not the config's target".into()),
        }
        if c.platforms.is_empty() {
            return bad("it covers no platform".into());
        }
        let listed = |b: &Blob| {
            self.blobs
                .get(&b.digest)
                .is_some_and(|d| d.size() == b.size && d.media_type().to_string() == b.media_type)
        };
        if let Some(d) = c.target.documents.iter().find(|d| !listed(d)) {
            return bad(format!(
                "document {} is not among the artifact's blobs",
                d.digest
            ));
        }
        if !c
            .target
            .documents
            .iter()
            .any(|d| d.digest == c.target.digest)
        {
            return bad(format!(
                "the target {} is not among its documents",
                c.target.digest
            ));
        }
        for l in &c.layers {
            let ok = match (l.method, &l.source) {
                (Method::Base, None) => true,
                (Method::Full, Some(s)) => *s == l.blob && listed(s),
                (Method::Delta, Some(s)) => {
                    s.media_type == PAYLOAD_MEDIA_TYPE
                        && listed(s)
                        && l.platform.is_some_and(|p| p < c.platforms.len())
                }
                _ => false,
            };
            if !ok {
                return bad(format!(
                    "layer {} has an inconsistent method or source",
                    l.diff_id
                ));
            }
        }
        for p in &c.platforms {
            if let Some(d) = p
                .target_layers
                .iter()
                .find(|d| !c.layers.iter().any(|l| l.diff_id == **d))
            {
                return bad(format!("layer {d} of {} is not in the delta", p.platform));
            }
        }
        Ok(())
    }
}

fn not_delta(location: &str, reason: String) -> DeltaError {
    DeltaError::NotADelta {
        location: location.to_string(),
        reason,
    }
}

fn check_manifest(m: &ImageManifest, location: &str) -> Result<()> {
    let at = m.artifact_type().as_ref().map(|t| t.to_string());
    if at.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(not_delta(
            location,
            format!("its artifactType is {}", at.as_deref().unwrap_or("absent")),
        ));
    }
    if m.config().media_type().to_string() != CONFIG_MEDIA_TYPE {
        return Err(not_delta(
            location,
            format!("its config is a {}", m.config().media_type()),
        ));
    }
    Ok(())
}

/// Whether `path` is a chasi delta (an OCI layout or archive whose one entry is a delta artifact); `false`
/// for anything else, including files that are not OCI layouts at all.
pub fn is_delta(path: &Path) -> bool {
    let reader = if path.is_dir() {
        OciLayoutReader::open_dir(path)
    } else {
        OciLayoutReader::open_archive(path)
    };
    let Ok(reader) = reader else {
        return false;
    };
    let [entry] = reader.entries() else {
        return false;
    };
    if *entry.root.media_type() != MediaType::ImageManifest {
        return false;
    }
    chasi_oci::image::read_manifest(&reader, &entry.root)
        .is_ok_and(|(m, _)| check_manifest(&m, "").is_ok())
}

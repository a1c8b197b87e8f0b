//! An image's documents, read once and typed.
//!
//! Listing, inspecting, exporting and saving all start with the same walk: the root (a
//! manifest or an index), its per-platform manifests, their configs. It is done here, once,
//! through [`Store::get_json`] (bounded in size and depth, digest checked: a hostile document
//! is an error, never a stack overflow), into oci-spec's [`ImageIndex`] and [`ImageManifest`]
//! and a small [`ConfigDoc`] holding the config fields chasi reads. The raw JSON is kept
//! beside the typed form because `chasi inspect` shows documents as they are.
//!
//! [`Image::oci_size`] is the one definition of an image's size as OCI counts it.

use crate::error::{ImagesError, Result};
use chasi_layers::{Digest, Store};
use chasi_oci::{ImageIndex, ImageManifest, Platform};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::Value;

/// How deep indexes may nest (the bound `chasi_oci::select_manifest` follows too).
const MAX_INDEX_DEPTH: usize = 4;

/// The config fields chasi reads; every other field stays in the raw document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConfigDoc {
    /// GOOS value.
    pub os: String,
    /// GOARCH value.
    pub architecture: String,
    /// CPU variant.
    pub variant: Option<String>,
    /// The layers' DiffIDs.
    pub rootfs: RootFsDoc,
}

/// `rootfs` of a config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RootFsDoc {
    /// DiffIDs, bottom layer first, as written.
    pub diff_ids: Vec<String>,
}

/// A config, typed and as stored.
#[derive(Debug, Clone)]
pub struct Config {
    /// The fields chasi reads.
    pub doc: ConfigDoc,
    /// The document as stored.
    pub raw: Value,
}

/// One platform's manifest of an image.
#[derive(Debug, Clone)]
pub struct PlatformManifest {
    /// `os/arch[/variant]` as listed (empty for an index entry without a platform).
    pub platform: String,
    /// The platform to match `--platform` against, when the image declares one.
    pub spec: Option<Platform>,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
    /// The manifest, typed.
    pub manifest: ImageManifest,
    /// The manifest as stored.
    pub raw: Value,
    /// Its config, when it was read already (a root manifest's platform is in its config).
    config: Option<Config>,
}

impl PlatformManifest {
    /// The manifest's config (read from the store unless read already).
    pub fn config(&self, store: &Store) -> Result<Config> {
        match &self.config {
            Some(c) => Ok(c.clone()),
            None => read_config(store, &self.manifest),
        }
    }

    /// The layers' DiffIDs from its config, bottom first, each checked to be a digest.
    pub fn diff_ids(&self, store: &Store) -> Result<Vec<Digest>> {
        self.config(store)?
            .doc
            .rootfs
            .diff_ids
            .iter()
            .map(|d| {
                d.parse::<Digest>().map_err(|_| ImagesError::BadDiffId {
                    diff_id: chasi_oci::error::excerpt(d),
                    manifest: self.digest,
                })
            })
            .collect()
    }
}

/// An image in the store: its root and its per-platform manifests.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest or index digest the ref points at.
    pub root: Digest,
    /// The digests and sizes of the indexes walked (the root first, when it is one).
    pub indexes: Vec<(Digest, u64)>,
    /// The manifests, in index order (one for a single-platform image).
    pub manifests: Vec<PlatformManifest>,
}

impl Image {
    /// Reads the image whose root document is `root`.
    pub fn read(store: &Store, root: &Digest) -> Result<Image> {
        let mut image = Image {
            root: *root,
            indexes: Vec::new(),
            manifests: Vec::new(),
        };
        let (raw, size) = read_raw(store, root, "image manifest or index")?;
        if is_index(&raw, root)? {
            image.walk_index(store, root, size, &raw, 0)?;
        } else {
            let manifest: ImageManifest = typed(&raw, "image manifest", root)?;
            let config = read_config(store, &manifest)?;
            let c = &config.doc;
            let spec = Platform {
                os: c.os.clone(),
                architecture: c.architecture.clone(),
                variant: c.variant.clone(),
            };
            image.manifests.push(PlatformManifest {
                platform: platform_text(&c.os, &c.architecture, c.variant.as_deref()),
                spec: Some(spec),
                digest: *root,
                size,
                manifest,
                raw,
                config: Some(config),
            });
        }
        Ok(image)
    }

    fn walk_index(
        &mut self,
        store: &Store,
        digest: &Digest,
        size: u64,
        raw: &Value,
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_INDEX_DEPTH {
            return Err(ImagesError::TooDeep { digest: self.root });
        }
        self.indexes.push((*digest, size));
        let index: ImageIndex = typed(raw, "image index", digest)?;
        for entry in index.manifests() {
            let d = Digest::from_oci(entry.digest())?;
            let (raw, size) = read_raw(store, &d, "image manifest")?;
            if is_index(&raw, &d)? {
                self.walk_index(store, &d, size, &raw, depth + 1)?;
                continue;
            }
            let manifest: ImageManifest = typed(&raw, "image manifest", &d)?;
            let spec = entry.platform().as_ref().map(Platform::from_oci);
            let platform = spec
                .as_ref()
                .map(|s| platform_text(&s.os, &s.architecture, s.variant.as_deref()));
            self.manifests.push(PlatformManifest {
                platform: platform.unwrap_or_default(),
                spec,
                digest: d,
                size,
                manifest,
                raw,
                config: None,
            });
        }
        Ok(())
    }

    /// The size as OCI counts it: the indexes, the manifests, their configs and layer blobs.
    pub fn oci_size(&self) -> u64 {
        let indexes: u64 = self.indexes.iter().map(|(_, s)| s).sum();
        let manifests: u64 = self
            .manifests
            .iter()
            .map(|m| {
                m.size
                    + m.manifest.config().size()
                    + m.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
            })
            .sum();
        indexes + manifests
    }

    /// The platforms, in index order.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests.iter().map(|m| m.platform.clone()).collect()
    }
}

/// `os/arch[/variant]`.
fn platform_text(os: &str, architecture: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{architecture}/{v}"),
        None => format!("{os}/{architecture}"),
    }
}

/// The fields a root document is told apart by: its `mediaType`, and `manifests` (an index
/// has them).
#[derive(Deserialize)]
pub(crate) struct Kind {
    #[serde(rename = "mediaType")]
    pub(crate) media_type: Option<String>,
    pub(crate) manifests: Option<IgnoredAny>,
}

fn is_index(raw: &Value, digest: &Digest) -> Result<bool> {
    let kind: Kind = typed(raw, "image manifest or index", digest)?;
    Ok(kind.manifests.is_some())
}

/// A JSON document of the store, read with the store's bounds, and its size.
pub(crate) fn read_raw(store: &Store, digest: &Digest, what: &'static str) -> Result<(Value, u64)> {
    let raw = store.get_json(digest, what)?;
    Ok((raw, store.blob_size(digest)?))
}

/// `raw` as a `T`; an error names the document.
pub(crate) fn typed<T: DeserializeOwned>(
    raw: &Value,
    what: &'static str,
    digest: &Digest,
) -> Result<T> {
    T::deserialize(raw).map_err(|source| ImagesError::BadDocument {
        what,
        digest: *digest,
        source,
    })
}

fn read_config(store: &Store, manifest: &ImageManifest) -> Result<Config> {
    let d = Digest::from_oci(manifest.config().digest())?;
    let raw = store.get_json(&d, "image config")?;
    Ok(Config {
        doc: typed(&raw, "image config", &d)?,
        raw,
    })
}

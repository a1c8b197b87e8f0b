//! The image a stage is building: its layers, its OCI configuration, its inherited apps and
//! the base image it started from (with that base's sealer type, for `--type`).
//!
//! A stage starts from `scratch`, from an earlier stage, or from an image (in the store, or in
//! an OCI layout or archive, which is imported into the store first so that its layers are
//! deduplicated with everything else). Each executed step then appends a layer or changes the
//! configuration of this state; the final stage's state becomes the image.

use crate::error::{BuildError, Result};
use chasi_compiler::source::Span;
use chasi_images::blobs::StoreBlobs;
use chasi_layers::{BlobDesc, Digest, Store};
use chasi_oci::{self as oci, ImageRef, Platform};
use serde_json::{json, Map, Value};

/// One layer of an image: its DiffID and the blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// SHA-256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The compressed blob (digest, size, media type).
    pub blob: BlobDesc,
}

/// The evolving image of one stage.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The `config` object of the OCI image configuration (`Env`, `Labels`, …).
    pub config: Map<String, Value>,
    /// `history` entries, one per step (and the base image's).
    pub history: Vec<Value>,
    /// `author` (from `MAINTAINER`).
    pub author: Option<String>,
    /// Applications declared in the base image's sealer extension (inherited by name).
    pub inherited_apps: Vec<Value>,
    /// The manifest digest of the base image, when the stage starts from one (cache input).
    pub base_digest: Option<Digest>,
    /// The image the stage's filesystem starts from, through `FROM <stage>` too; `None` for
    /// `scratch` (what `--type` is checked against).
    pub origin: Option<BaseOrigin>,
}

/// The base image a stage's filesystem starts from, and what its sealer extension says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseOrigin {
    /// The reference as written.
    pub reference: String,
    /// The extension's `type` (`""` when it has none); `None` when the manifest has no
    /// `sealer.image.extension` or one that is not JSON.
    pub sealer_type: Option<String>,
    /// The `FROM` instruction in the Kubefile.
    pub span: Span,
    /// Where it is, `FILE:LINE:COLUMN` (from the plan).
    pub at: String,
}

impl ImageState {
    /// The empty image of `FROM scratch`.
    pub fn scratch() -> Self {
        ImageState {
            layers: Vec::new(),
            config: Map::new(),
            history: Vec::new(),
            author: None,
            inherited_apps: Vec::new(),
            base_digest: None,
            origin: None,
        }
    }

    /// The environment as `(key, value)` pairs in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets (or replaces) environment variables, keeping first-seen order.
    pub fn set_env(&mut self, vars: &[(String, String)]) {
        let mut env = self.env();
        for (k, v) in vars {
            match env.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| Value::String(format!("{k}={v}")))
            .collect();
        self.config.insert("Env".into(), Value::Array(list));
    }

    /// Adds labels (later values win).
    pub fn set_labels<'a>(&mut self, labels: impl IntoIterator<Item = (&'a String, &'a String)>) {
        let entry = self
            .config
            .entry("Labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(map) = entry {
            for (k, v) in labels {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }

    /// Records a history entry.
    pub fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut h = json!({"created": created, "created_by": created_by});
        if empty_layer {
            h["empty_layer"] = Value::Bool(true);
        }
        self.history.push(h);
    }
}

/// A base image resolved to one manifest in the store (a registry's pulled first, see
/// [`crate::pull`]).
pub fn resolve_base(
    store: &Store,
    reference: &str,
    platform: &Platform,
    opts: &crate::BuildOptions,
) -> Result<ImageState> {
    let oci_err = |source: oci::OciError| BuildError::BaseImage {
        reference: reference.to_string(),
        source,
    };
    let mut blobs = StoreBlobs::new(store);
    if crate::pull::is_registry_reference(reference) {
        let digest = crate::pull::registry_root(store, reference, &opts.registry, opts.offline)?;
        let root = chasi_images::blobs::descriptor_of(store, &digest)?;
        let manifest = oci::select_manifest(&blobs, &root, Some(platform)).map_err(oci_err)?;
        return state_of(&blobs, reference, manifest);
    }
    let parsed: ImageRef = reference.parse().map_err(oci_err)?;
    let manifest_desc = match &parsed {
        ImageRef::Store { name, tag } => {
            let name = format!("{name}:{tag}");
            // Only a missing reference is "not in the store"; a ref that cannot be read says why.
            let digest = store.get_ref(&name).map_err(|e| match e {
                chasi_layers::Error::RefNotFound { .. } => BuildError::BaseNotFound {
                    reference: reference.to_string(),
                    name: name.clone(),
                },
                source => BuildError::BaseRef {
                    reference: reference.to_string(),
                    source,
                },
            })?;
            let root = chasi_images::blobs::descriptor_of(store, &digest)?;
            oci::select_manifest(&blobs, &root, Some(platform)).map_err(oci_err)?
        }
        // Only the chosen platform's manifest, config and layers are imported.
        other => {
            oci::read::import_reference(other, Some(platform), &mut blobs)
                .map_err(|source| BuildError::BaseImport {
                    reference: reference.to_string(),
                    source,
                })?
                .manifest
        }
    };
    state_of(&blobs, reference, manifest_desc)
}

/// The state a stage starts from on the stored image manifest `manifest_desc`.
fn state_of(
    blobs: &StoreBlobs<'_>,
    reference: &str,
    manifest_desc: oci::Descriptor,
) -> Result<ImageState> {
    let oci_err = |source: oci::OciError| BuildError::BaseImage {
        reference: reference.to_string(),
        source,
    };
    let (manifest, _) = oci::read_manifest(blobs, &manifest_desc).map_err(oci_err)?;
    let (config, _) = oci::read_config(blobs, manifest.config()).map_err(oci_err)?;
    let diff_ids = oci::image::diff_ids(&config, manifest.config().digest()).map_err(oci_err)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(BuildError::Base {
            reference: reference.to_string(),
            message: format!(
                "its config lists {} layers but its manifest {}",
                diff_ids.len(),
                manifest.layers().len()
            ),
        });
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(&diff_ids) {
        layers.push(LayerRef {
            diff_id: Digest::from_oci(diff_id)?,
            blob: BlobDesc {
                digest: Digest::from_oci(desc.digest())?,
                size: desc.size(),
                media_type: desc.media_type().to_string(),
            },
        });
    }
    let inner = config
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let history = config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let extension = manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(oci::ANNOTATION_SEALER_EXTENSION))
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object);
    let inherited_apps = extension
        .as_ref()
        .and_then(|ext| ext.get("applications").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let sealer_type = extension.as_ref().map(|ext| {
        ext.get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
    Ok(ImageState {
        layers,
        config: inner,
        history,
        author: config
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_string),
        inherited_apps,
        base_digest: Some(Digest::from_oci(manifest_desc.digest())?),
        origin: Some(BaseOrigin {
            reference: reference.to_string(),
            sealer_type,
            span: Span::default(),
            at: String::new(),
        }),
    })
}

//! The final image: OCI configuration (its `Cmd` decided by [`crate::runconfig`]), manifest
//! (with the sealer extension annotation) and, for several platforms, an index.
//!
//! Everything here is a pure function of the built state and the options, serialized
//! canonically, so the same build gives the same digests in any store.

use crate::error::Result;
use crate::runconfig::{self, OciCmd};
use crate::state::{ImageState, LayerRef};
use chasi_compiler::check::ImageExtension;
use chasi_images::blobs::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::{self as oci, Descriptor, MediaType, Platform};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Which compression the manifest's layer blobs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestCompression {
    /// `tar+zstd`, the store's native blobs (default).
    #[default]
    Zstd,
    /// `tar+gzip`, produced deterministically from the same chunks, for older consumers.
    Gzip,
}

/// RFC 3339 UTC time of a Unix timestamp (`chasi_oci::time`).
pub fn rfc3339(epoch: i64) -> String {
    oci::time::rfc3339(epoch)
}

/// The sealer extension of the image: the program's, with the base image's applications
/// inherited by name (sealer's rule: a later declaration of the same name wins).
pub fn extension_json(ext: &ImageExtension, inherited: &[Value]) -> Value {
    let mut declared = serde_json::to_value(ext).unwrap_or_else(|_| json!({}));
    let own: Vec<Value> = declared
        .get("applications")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut apps: Vec<Value> = inherited
        .iter()
        .filter(|a| {
            let name = a.get("name");
            !own.iter().any(|o| o.get("name") == name)
        })
        .cloned()
        .collect();
    apps.extend(own);
    if let Value::Object(map) = &mut declared {
        if apps.is_empty() {
            map.remove("applications");
        } else {
            map.insert("applications".into(), Value::Array(apps));
        }
        map.insert(
            "buildClient".into(),
            json!({"sealerVersion": "v0.11.0", "buildahVersion": concat!("chasi/", env!("CARGO_PKG_VERSION"))}),
        );
    }
    declared
}

/// The layer descriptors of `layers` in the chosen compression.
fn layer_descriptors(
    store: &Store,
    layers: &[LayerRef],
    compression: ManifestCompression,
) -> Result<Vec<Descriptor>> {
    layers
        .iter()
        .map(|l| {
            let blob = match compression {
                ManifestCompression::Gzip if !l.blob.media_type.ends_with("gzip") => {
                    store.ensure_gzip(&l.diff_id)?
                }
                _ => l.blob.clone(),
            };
            let media = if blob.media_type.is_empty() {
                match compression {
                    ManifestCompression::Zstd => {
                        chasi_layers::store::MEDIA_TYPE_LAYER_ZSTD.to_string()
                    }
                    ManifestCompression::Gzip => {
                        chasi_layers::store::MEDIA_TYPE_LAYER_GZIP.to_string()
                    }
                }
            } else {
                blob.media_type.clone()
            };
            Ok(Descriptor::new(
                MediaType::from(media.as_str()),
                blob.size,
                blob.digest.to_oci(),
            ))
        })
        .collect()
}

/// What one platform's manifest is made of, besides the image state.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSpec<'a> {
    /// The platform the config names.
    pub platform: &'a Platform,
    /// The sealer extension (see [`extension_json`]).
    pub extension: &'a Value,
    /// `--label`s added to the configuration.
    pub labels: &'a BTreeMap<String, String>,
    /// `--annotation`s added to the manifest.
    pub annotations: &'a BTreeMap<String, String>,
    /// The config's `created` time (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// The layer compression the manifest references.
    pub compression: ManifestCompression,
    /// The Kubefile's `CMD`/`CMDS` commands (also in the extension).
    pub commands: &'a [String],
    /// Whether they become `config.Cmd` (see [`crate::runconfig`]).
    pub oci_cmd: OciCmd,
}

/// Writes config and manifest for one platform; returns the manifest descriptor (with platform).
pub fn write_manifest(
    store: &Store,
    state: &ImageState,
    spec: &ManifestSpec<'_>,
) -> Result<Descriptor> {
    let ManifestSpec {
        platform,
        extension,
        labels,
        annotations,
        epoch,
        compression,
        commands,
        oci_cmd,
    } = *spec;
    let mut inner = state.config.clone();
    if !labels.is_empty() {
        let mut st = state.clone();
        st.set_labels(labels.iter());
        inner = st.config;
    }
    runconfig::apply(&mut inner, extension, commands, oci_cmd);
    let mut config = Map::new();
    config.insert("created".into(), Value::String(rfc3339(epoch)));
    if let Some(author) = &state.author {
        config.insert("author".into(), Value::String(author.clone()));
    }
    config.insert(
        "architecture".into(),
        Value::String(platform.architecture.clone()),
    );
    config.insert("os".into(), Value::String(platform.os.clone()));
    if let Some(v) = &platform.variant {
        config.insert("variant".into(), Value::String(v.clone()));
    }
    config.insert("config".into(), Value::Object(inner));
    config.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": state.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
    );
    config.insert("history".into(), Value::Array(state.history.clone()));
    let layers = layer_descriptors(store, &state.layers, compression)?;
    let mut all_annotations = annotations.clone();
    all_annotations.insert(
        oci::ANNOTATION_SEALER_EXTENSION.to_string(),
        oci::json::to_canonical_json(extension)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
    );
    let mut sink = StoreBlobs::new(store);
    Ok(oci::build_manifest(
        &mut sink,
        &Value::Object(config),
        &layers,
        &all_annotations,
    )?)
}

/// Writes an index over per-platform manifests.
pub fn write_index(
    store: &Store,
    manifests: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Digest> {
    let mut sink = StoreBlobs::new(store);
    let desc = oci::build_index(&mut sink, manifests, annotations)?;
    Ok(Digest::from_oci(desc.digest())?)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

//! `chasi delta inspect`: what a delta goes from and to and what it costs, per layer and in total,
//! from its config alone (nothing is decompressed).

use crate::error::Result;
use crate::format::{Level, Method, Stats};
use crate::read::DeltaArtifact;
use chasi_layers::Digest;
use serde::Serialize;
use std::path::Path;

/// A delta's summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// The artifact manifest.
    pub artifact: Digest,
    /// The base image's root.
    pub base: Digest,
    /// The target image's root.
    pub target: Digest,
    /// The target's name.
    pub name: Option<String>,
    /// How it was made.
    pub level: Level,
    /// The platforms it covers.
    pub platforms: Vec<String>,
    /// Per target layer.
    pub layers: Vec<LayerSummary>,
    /// Sums over the layers.
    pub total: Stats,
    /// The bytes of every blob in the artifact.
    pub delta_size: u64,
    /// The bytes of the full target (its layer blobs and documents).
    pub target_size: u64,
    /// `delta_size / target_size`.
    pub ratio: f64,
    /// Most memory a part needs to apply.
    pub memory: u64,
}

/// One layer's line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerSummary {
    /// DiffID.
    pub diff_id: Digest,
    /// How it travels.
    pub method: Method,
    /// Its tar's length.
    pub size: u64,
    /// Its blob's size in the target.
    pub blob_size: u64,
    /// The byte counts.
    pub stats: Stats,
}

/// Summarises the delta at `path`.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let art = DeltaArtifact::open(path)?;
    let c = art.config();
    let mut total = Stats::default();
    let layers: Vec<LayerSummary> = c
        .layers
        .iter()
        .map(|l| {
            let s = &l.stats;
            total.reused += s.reused;
            total.patched += s.patched;
            total.patched_from += s.patched_from;
            total.literal += s.literal;
            total.payload += s.payload;
            LayerSummary {
                diff_id: l.diff_id,
                method: l.method,
                size: l.size,
                blob_size: l.blob.size,
                stats: s.clone(),
            }
        })
        .collect();
    let documents: u64 = c.target.documents.iter().map(|d| d.size).sum();
    let target_size = documents + c.layers.iter().map(|l| l.blob.size).sum::<u64>();
    let delta_size = art.payload_size();
    Ok(Inspection {
        artifact: art.digest(),
        base: c.base,
        target: c.target.digest,
        name: c.target.name.clone(),
        level: c.level,
        platforms: c.platforms.iter().map(|p| p.platform.clone()).collect(),
        layers,
        total,
        delta_size,
        target_size,
        ratio: delta_size as f64 / target_size.max(1) as f64,
        memory: c.layers.iter().map(|l| l.memory).max().unwrap_or(0),
    })
}

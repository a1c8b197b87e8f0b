//! What the builder's library tests share: the options of an offline, reproducible build.

use chasi_builder::assemble::ManifestCompression;
use chasi_builder::runconfig::OciCmd;
use chasi_builder::sandbox::Network;
use chasi_builder::BuildOptions;
use std::collections::BTreeMap;
use std::path::Path;

/// Options for building `context` as `tag`: no network, epoch 0, zstd layers, the cache on.
pub fn options(context: &Path, tag: &str) -> BuildOptions {
    BuildOptions {
        tag: tag.into(),
        context: context.to_path_buf(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        no_cache: false,
        network: Network::None,
        source_date_epoch: 0,
        offline: true,
        registry: chasi_registry::Options::default(),
        compression: ManifestCompression::Zstd,
        oci_cmd: OciCmd::Auto,
        carry: Default::default(),
        cache_from: Vec::new(),
        cache_to: None,
        work_dir: None,
    }
}

//! Executing a plan: the build's entry point, its options and its result.
//!
//! [`build`] needs only the [`Plan`]: every node carries its checked step
//! ([`chasi_compiler::plan::NodeStep`]) and every stage its node range. The work is split by
//! concern: [`schedule`] runs platforms and stages on threads, [`stage`] walks one stage's
//! nodes, [`cache`] computes step keys and reads and writes the typed cache records, and
//! [`ops`] executes one layer step (`RUN`; `COPY`/`ADD`/`APP`) or applies a configuration step.

pub mod cache;
pub mod carry;
mod ops;
mod schedule;
mod slots;
mod stage;

use crate::assemble::{self, ManifestCompression};
use crate::error::{io, BuildError, Result};
use crate::events::{BuildEvent, BuildObserver};
use crate::runconfig::OciCmd;
use crate::sandbox::Network;
use chasi_compiler::check::Context;
use chasi_compiler::plan::Plan;
use chasi_layers::{Digest, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `name:tag` the result is stored under.
    pub tag: String,
    /// The build context directory.
    pub context: PathBuf,
    /// `--label`s added to the image configuration.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`s added to the manifest(s).
    pub annotations: BTreeMap<String, String>,
    /// Ignore the cache (results are still recorded).
    pub no_cache: bool,
    /// The network of `RUN` steps.
    pub network: Network,
    /// Times are clamped to this and the image's `created` is it (`SOURCE_DATE_EPOCH`, 0 by default).
    pub source_date_epoch: i64,
    /// Never touch the network for remote sources and registry bases (use what the store has).
    pub offline: bool,
    /// How to reach the registries of `FROM HOST/NAME:TAG` bases.
    pub registry: chasi_registry::Options,
    /// Layer compression referenced by the manifests.
    pub compression: ManifestCompression,
    /// Whether `CMD`/`CMDS` become the OCI `config.Cmd` (`--oci-cmd`; see [`crate::runconfig`]).
    pub oci_cmd: OciCmd,
    /// `--build-mode`, `--image-list`, `--ignored-image-list`: the container images carried
    /// (see [`carry`]).
    pub carry: carry::CarryOptions,
    /// `--cache-from registry:REF`: build caches imported before the build (a cache that cannot
    /// be read is a warning).
    pub cache_from: Vec<String>,
    /// `--cache-to registry:REF`: where the cache entries of this build are pushed after it.
    pub cache_to: Option<String>,
    /// Where stage filesystems are materialised (default: the store's session temp directory,
    /// which the next run or `store gc` removes when a killed build leaves it behind).
    pub work_dir: Option<PathBuf>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The name it was stored under.
    pub name: String,
    /// The manifest digest (one platform) or index digest (several).
    pub digest: Digest,
    /// Per platform, its manifest digest.
    pub manifests: Vec<(String, Digest)>,
    /// Layer steps served from the cache.
    pub cached: usize,
    /// Layer steps executed.
    pub executed: usize,
}

/// What every thread of one build shares.
struct Session<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    observer: &'a dyn BuildObserver,
    /// The build context (its file list is computed lazily, hence the lock).
    context: Mutex<Context>,
    work: PathBuf,
    /// Layer steps served from the cache and executed.
    counters: Mutex<(usize, usize)>,
    /// The cache entries this build used or wrote, for `--cache-to`.
    entries: Mutex<Vec<(Digest, serde_json::Value)>>,
}

impl Session<'_> {
    fn remember(&self, key: Digest, value: serde_json::Value) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.push((key, value));
    }

    fn count(&self, cached: bool) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if cached {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
    }
}

/// Builds the plan's targets into the store and tags the result.
pub fn build(
    store: &Store,
    plan: &Plan,
    opts: &BuildOptions,
    observer: &dyn BuildObserver,
) -> Result<BuildOutput> {
    let started = Instant::now();
    if plan.targets.is_empty() {
        return Err(BuildError::NoTarget);
    }
    let name = normalize_tag(&opts.tag)?;
    let (context, _) = Context::open(&opts.context)?;
    let work_parent = opts
        .work_dir
        .clone()
        .unwrap_or_else(|| store.tmp_dir().to_path_buf());
    std::fs::create_dir_all(&work_parent).map_err(io("create", &work_parent))?;
    let work = tempfile::Builder::new()
        .prefix("chasi-build-")
        .tempdir_in(&work_parent)
        .map_err(io("create a work directory in", &work_parent))?;
    let session = Session {
        store,
        opts,
        observer,
        context: Mutex::new(context),
        work: work.path().to_path_buf(),
        counters: Mutex::new((0, 0)),
        entries: Mutex::new(Vec::new()),
    };
    observer.event(BuildEvent::Planned {
        platforms: plan
            .targets
            .iter()
            .map(|t| t.platform.to_string())
            .collect(),
        steps: plan.targets.iter().map(|t| t.nodes.len()).sum(),
    });
    for reference in &opts.cache_from {
        let warning = match crate::remotecache::import(store, reference, &opts.registry) {
            Ok(r) if r.refused == 0 => None,
            Ok(r) => Some(format!(
                "--cache-from registry:{reference}: {} entries refused (malformed, or naming a layer the cache does not carry), {} imported",
                r.refused, r.entries
            )),
            Err(why) => Some(format!(
                "--cache-from registry:{reference}: not used ({why})"
            )),
        };
        if let Some(message) = warning {
            observer.event(BuildEvent::Warning {
                platform: "build".into(),
                message,
            });
        }
    }
    let manifests = schedule::build_targets(&session, plan)?;
    let digest = if manifests.len() == 1 {
        Digest::from_oci(manifests[0].1.digest())?
    } else {
        let descs: Vec<_> = manifests.iter().map(|(_, d)| d.clone()).collect();
        assemble::write_index(store, &descs, &opts.annotations)?
    };
    if let Some(reference) = &opts.cache_to {
        let entries = session.entries.lock().unwrap_or_else(|e| e.into_inner());
        crate::remotecache::export(store, &entries, reference, &opts.registry)?;
    }
    store.set_ref(&name, &digest)?;
    let (cached, executed) = *session.counters.lock().unwrap_or_else(|e| e.into_inner());
    observer.event(BuildEvent::ImageDone {
        name: name.clone(),
        digest,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(BuildOutput {
        name,
        digest,
        manifests: manifests
            .iter()
            .map(|(p, d)| Ok((p.clone(), Digest::from_oci(d.digest())?)))
            .collect::<Result<_>>()?,
        cached,
        executed,
    })
}

/// `name` → `name:latest`; validates the name.
pub fn normalize_tag(tag: &str) -> Result<String> {
    chasi_images::normalize_name(tag).map_err(|_| BuildError::BadTag {
        tag: tag.to_string(),
    })
}

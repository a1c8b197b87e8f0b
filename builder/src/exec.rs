//! Executing a plan: stages and platforms in parallel, steps cached by identity.
//!
//! Each target platform is built on its own thread, and inside a platform each stage on its
//! own thread, waiting only for the stages it reads (`FROM <stage>`, `COPY --from`). So
//! independent stages and platforms build concurrently, and the store's chunk compression
//! spreads over the cores within each step.
//!
//! **Cache keys.** A step's key is SHA-256 over its plan identity ([`Node::id`], which
//! already covers the instruction, the used build args, the content of its local sources and
//! every ancestor), the key of its parent, the keys of the stages it reads, the time epoch
//! file times are clamped to, and what the plan cannot know: the manifest digest a base image reference resolved to, and the digests of
//! remote sources. A layer step whose key has a cache record (and whose layer is still in the
//! store, its packs present with the right sizes) is not executed; `--no-cache` skips the
//! lookup (and still records the result).

use crate::assemble::{self, Compression};
use crate::copy::{self, CopyOptions, Mapping, SourceTree};
use crate::error::{io, BuildError, Result};
use crate::events::{BuildEvent, BuildObserver};
use crate::fetch::Fetcher;
use crate::rootfs::WorkRoot;
use crate::sandbox::{Network, RunCommand, DEFAULT_PATH};
use crate::state::{resolve_base, ImageState, LayerRef};
use chasi_compiler::check::{self, Base, Context, CopyFrom, Op, Program, Source, Stage, Target};
use chasi_compiler::plan::{Node, NodeKind, Plan, TargetPlan};
use chasi_layers::{Digest, LayerInfo, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// Never touch the network for remote sources (use what the store has).
    pub offline: bool,
    /// Layer compression referenced by the manifests.
    pub compression: Compression,
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

/// The finished state of one stage.
struct StageDone {
    state: ImageState,
    key: Digest,
    root: Mutex<WorkRoot>,
}

type StageSlot = OnceLock<std::result::Result<Arc<StageDone>, usize>>;

struct Shared<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    observer: &'a dyn BuildObserver,
    /// The build context (its file list is computed lazily, hence the lock).
    context: Mutex<Context>,
    work: PathBuf,
    counters: Mutex<(usize, usize)>,
}

/// Builds the plan's targets into the store and tags the result.
pub fn build(
    store: &Store,
    program: &Program,
    plan: &Plan,
    opts: &BuildOptions,
    observer: &dyn BuildObserver,
) -> Result<BuildOutput> {
    let started = Instant::now();
    if program.targets.len() != plan.targets.len() || program.targets.is_empty() {
        return Err(BuildError::Request(
            "the plan does not match the program".into(),
        ));
    }
    let name = normalize_tag(&opts.tag)?;
    let (context, _) = Context::open(&opts.context)
        .map_err(|e| BuildError::Request(chasi_layers::error::chain(&e)))?;
    let work_parent = opts
        .work_dir
        .clone()
        .unwrap_or_else(|| store.tmp_dir().to_path_buf());
    std::fs::create_dir_all(&work_parent).map_err(io("create", &work_parent))?;
    let work = tempfile::Builder::new()
        .prefix("chasi-build-")
        .tempdir_in(&work_parent)
        .map_err(io("create a work directory in", &work_parent))?;
    let shared = Shared {
        store,
        opts,
        observer,
        context: Mutex::new(context),
        work: work.path().to_path_buf(),
        counters: Mutex::new((0, 0)),
    };
    observer.event(BuildEvent::Planned {
        platforms: plan
            .targets
            .iter()
            .map(|t| t.platform.to_string())
            .collect(),
        steps: plan.targets.iter().map(|t| t.nodes.len()).sum(),
    });
    let results: Vec<Result<(String, chasi_oci::Descriptor)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = program
            .targets
            .iter()
            .zip(&plan.targets)
            .enumerate()
            .map(|(i, (target, tplan))| {
                let shared = &shared;
                scope.spawn(move || build_target(shared, i, target, tplan))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BuildError::Request("a build thread panicked".into())))
            })
            .collect()
    });
    let mut manifests = Vec::new();
    for r in results {
        manifests.push(r?);
    }
    let digest = if manifests.len() == 1 {
        crate::blobs::to_store_digest(manifests[0].1.digest())?
    } else {
        let descs: Vec<_> = manifests.iter().map(|(_, d)| d.clone()).collect();
        assemble::write_index(store, &descs, &opts.annotations)?
    };
    store.set_ref(&name, &digest)?;
    let (cached, executed) = *shared.counters.lock().unwrap_or_else(|e| e.into_inner());
    observer.event(BuildEvent::ImageDone {
        name: name.clone(),
        digest: digest.to_string(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(BuildOutput {
        name,
        digest,
        manifests: manifests
            .iter()
            .map(|(p, d)| Ok((p.clone(), crate::blobs::to_store_digest(d.digest())?)))
            .collect::<Result<_>>()?,
        cached,
        executed,
    })
}

/// `name` → `name:latest`; validates the name.
pub fn normalize_tag(tag: &str) -> Result<String> {
    match tag.parse::<chasi_oci::ImageRef>() {
        Ok(chasi_oci::ImageRef::Store { name, tag }) => Ok(format!("{name}:{tag}")),
        _ => Err(BuildError::Request(format!(
            "`{tag}` is not a valid image name (expected NAME[:TAG])"
        ))),
    }
}

fn build_target(
    shared: &Shared<'_>,
    target_index: usize,
    target: &Target,
    tplan: &TargetPlan,
) -> Result<(String, chasi_oci::Descriptor)> {
    // Pair each stage with its plan nodes: the planner emits, per stage, the base node and
    // then one node per step, in order; the image node comes last.
    let mut nodes_of: Vec<(&Node, Vec<&Node>)> = Vec::new();
    let mut i = 0;
    for stage in &target.stages {
        let base = tplan
            .nodes
            .get(i)
            .filter(|n| n.kind == NodeKind::Base && n.stage == stage.index);
        let base = base.ok_or_else(|| {
            BuildError::Request(format!(
                "the plan has no base node for stage {}",
                stage.index
            ))
        })?;
        let steps: Vec<&Node> = tplan.nodes[i + 1..]
            .iter()
            .take(stage.steps.len())
            .collect();
        if steps.len() != stage.steps.len() || steps.iter().any(|n| n.stage != stage.index) {
            return Err(BuildError::Request(format!(
                "the plan does not match stage {}",
                stage.index
            )));
        }
        i += 1 + stage.steps.len();
        nodes_of.push((base, steps));
    }
    let slots: Vec<StageSlot> = target.stages.iter().map(|_| OnceLock::new()).collect();
    let last = target.stages.len() - 1;
    let final_result: Result<Arc<StageDone>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (si, stage) in target.stages.iter().enumerate() {
            let slots = &slots;
            let (base, steps) = &nodes_of[si];
            handles.push(scope.spawn(move || {
                let res = build_stage(shared, target_index, target, stage, base, steps, slots);
                let stored = match &res {
                    Ok(done) => Ok(done.clone()),
                    Err(_) => Err(si),
                };
                let _ = slots[si].set(stored);
                res
            }));
        }
        let mut final_result = None;
        let mut first_error = None;
        for (si, h) in handles.into_iter().enumerate() {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(BuildError::Request("a stage thread panicked".into())));
            match r {
                Ok(done) if si == last => final_result = Some(Ok(done)),
                Ok(_) => {}
                Err(e) => {
                    // The root cause is the first failure that is not just "a dependency failed".
                    let is_dependency = matches!(e, BuildError::DependencyFailed { .. });
                    if first_error
                        .as_ref()
                        .is_none_or(|(dep, _)| *dep && !is_dependency)
                    {
                        first_error = Some((is_dependency, e));
                    }
                }
            }
        }
        match (first_error, final_result) {
            (Some((_, e)), _) => Err(e),
            (None, Some(r)) => r,
            (None, None) => Err(BuildError::Request(
                "the last stage produced nothing".into(),
            )),
        }
    });
    let done = final_result?;
    let image_node = &tplan.nodes[tplan.image];
    let extension = assemble::extension_json(&target.image.extension, &done.state.inherited_apps);
    let started = Instant::now();
    let desc = assemble::write_manifest(
        shared.store,
        &done.state,
        &target.platform,
        &extension,
        &shared.opts.labels,
        &shared.opts.annotations,
        shared.opts.source_date_epoch,
        shared.opts.compression,
    )?;
    shared.observer.event(BuildEvent::StepDone {
        id: image_node.id.clone(),
        platform: target.platform.to_string(),
        label: image_node.label.clone(),
        layer_bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok((target.platform.to_string(), desc))
}

fn wait_stage(slots: &[StageSlot], me: usize, index: usize) -> Result<Arc<StageDone>> {
    let slot = slots
        .get(index)
        .ok_or_else(|| BuildError::Request(format!("stage {index} does not exist")))?;
    match slot.wait() {
        Ok(done) => Ok(done.clone()),
        Err(_) => Err(BuildError::DependencyFailed {
            stage: me,
            dependency: index,
        }),
    }
}

fn key_of(parts: &[&str]) -> Digest {
    Digest::of(parts.join("\0").as_bytes())
}

#[allow(clippy::too_many_arguments)]
fn build_stage(
    shared: &Shared<'_>,
    target_index: usize,
    target: &Target,
    stage: &Stage,
    base_node: &Node,
    step_nodes: &[&Node],
    slots: &[StageSlot],
) -> Result<Arc<StageDone>> {
    let platform = target.platform.to_string();
    let epoch = shared.opts.source_date_epoch;
    let created = assemble::rfc3339(epoch);
    // File times are clamped to the epoch, so layers made with another epoch differ.
    let version = format!("chasi.build/v1 epoch={epoch}");
    let (mut state, mut key) = match &stage.base {
        Base::Scratch => (ImageState::scratch(), key_of(&[&version, &base_node.id])),
        Base::Image { reference } => {
            let state = resolve_base(shared.store, reference, &stage.platform)?;
            let base = state.base_digest.map(|d| d.to_string()).unwrap_or_default();
            (state, key_of(&[&version, &base_node.id, &base]))
        }
        Base::Stage { index } => {
            let done = wait_stage(slots, stage.index, *index)?;
            let key = key_of(&[&version, &base_node.id, &done.key.to_string()]);
            (done.state.clone(), key)
        }
    };
    let root_dir = shared
        .work
        .join(format!("t{target_index}-s{}", stage.index));
    let mut root = WorkRoot::new(root_dir);
    let fetcher = Fetcher::new(shared.store, shared.opts.offline);
    for (n, (step, node)) in stage.steps.iter().zip(step_nodes).enumerate() {
        let label = format!("[{}/{}] {}", n + 1, stage.steps.len(), node.label);
        match &step.op {
            Op::Env { vars } => {
                state.set_env(vars);
                state.push_history(&created, &node.label, true);
                key = key_of(&[&key.to_string(), &node.id]);
                continue;
            }
            Op::Label { labels } => {
                let map: BTreeMap<String, String> = labels.iter().cloned().collect();
                state.set_labels(map.iter());
                state.push_history(&created, &node.label, true);
                key = key_of(&[&key.to_string(), &node.id]);
                continue;
            }
            Op::Maintainer { text } => {
                state.author = Some(text.clone());
                state.push_history(&created, &node.label, true);
                key = key_of(&[&key.to_string(), &node.id]);
                continue;
            }
            Op::Arg { .. } => {
                key = key_of(&[&key.to_string(), &node.id]);
                continue;
            }
            Op::Copy(_) | Op::Add(_) | Op::Run(_) | Op::App(_) => {}
        }
        // Remote sources and COPY --from stages enter the key with what they resolved to.
        let mut extra: Vec<String> = Vec::new();
        let mut fetched = BTreeMap::new();
        let sources: &[Source] = match &step.op {
            Op::Copy(c) | Op::Add(c) => &c.sources,
            Op::App(a) => &a.sources,
            _ => &[],
        };
        for s in sources {
            if let Source::Remote { url } = s {
                let (f, _) = fetcher.fetch(url).map_err(|e| {
                    step_err(step.line, &node.label, chasi_layers::error::chain(&e))
                })?;
                extra.push(f.digest.to_string());
                fetched.insert(url.clone(), f);
            }
        }
        let mut from_stage = None;
        if let Op::Copy(c) | Op::Add(c) = &step.op {
            match &c.from {
                Some(CopyFrom::Stage { index }) => {
                    let done = wait_stage(slots, stage.index, *index)?;
                    extra.push(done.key.to_string());
                    from_stage = Some(done);
                }
                Some(CopyFrom::Image { reference }) => {
                    return Err(step_err(
                        step.line,
                        &node.label,
                        format!("COPY --from an image ({reference}) is not supported yet: add a stage `FROM {reference} AS src` and copy from it"),
                    ));
                }
                None => {}
            }
        }
        let mut parts = vec![key.to_string(), node.id.clone()];
        parts.extend(extra);
        key = key_of(&parts.iter().map(String::as_str).collect::<Vec<_>>());

        let cached = if shared.opts.no_cache {
            None
        } else {
            lookup_cache(shared.store, &key)?
        };
        if let Some(hit) = cached {
            shared.observer.event(BuildEvent::StepCached {
                id: node.id.clone(),
                platform: platform.clone(),
                label: label.clone(),
            });
            let empty = hit.is_none();
            if let Some(layer) = hit {
                state.layers.push(layer);
            }
            state.push_history(&created, &node.label, empty);
            bump(shared, true);
            continue;
        }
        shared.observer.event(BuildEvent::StepStarted {
            id: node.id.clone(),
            platform: platform.clone(),
            label: label.clone(),
        });
        let t0 = Instant::now();
        let layer = execute_step(
            shared,
            &mut state,
            &mut root,
            step,
            node,
            &fetched,
            from_stage.as_deref(),
        )?;
        // The manifest needs the compressed blob's digest; the store computes it from the chunks once.
        let blob = match &layer {
            Some(info) => Some(shared.store.layer_blob(&info.diff_id)?),
            None => None,
        };
        let record = match (&layer, &blob) {
            (Some(info), Some(blob)) => {
                json!({"diff_id": info.diff_id.to_string(), "blob": blob, "size": info.size})
            }
            _ => json!({"empty": true}),
        };
        shared.store.put_cache(&key, &record)?;
        let layer_bytes = layer.as_ref().map(|l| l.size).unwrap_or(0);
        let empty = layer.is_none();
        if let (Some(info), Some(blob)) = (layer, blob) {
            state.layers.push(LayerRef {
                diff_id: info.diff_id,
                blob,
            });
        }
        state.push_history(&created, &node.label, empty);
        bump(shared, false);
        shared.observer.event(BuildEvent::StepDone {
            id: node.id.clone(),
            platform: platform.clone(),
            label,
            layer_bytes,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(Arc::new(StageDone {
        state,
        key,
        root: Mutex::new(root),
    }))
}

fn bump(shared: &Shared<'_>, cached: bool) {
    let mut c = shared.counters.lock().unwrap_or_else(|e| e.into_inner());
    if cached {
        c.0 += 1;
    } else {
        c.1 += 1;
    }
}

/// `Some(Some(layer))` for a cached layer, `Some(None)` for a cached no-change step, `None` on a miss:
/// also when the record was written for another key (the store checks the binding) or its layer
/// cannot be proven present cheaply ([`Store::check_layer`]: index, packs and their sizes, links),
/// so the step is executed again and its record overwritten.
fn lookup_cache(store: &Store, key: &Digest) -> Result<Option<Option<LayerRef>>> {
    let Some(record) = store.get_cache(key)? else {
        return Ok(None);
    };
    if record.get("empty").and_then(Value::as_bool) == Some(true) {
        return Ok(Some(None));
    }
    let diff_id = record
        .get("diff_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Digest>().ok());
    let blob = record
        .get("blob")
        .cloned()
        .and_then(|b| serde_json::from_value::<chasi_layers::BlobDesc>(b).ok());
    match (diff_id, blob) {
        (Some(diff_id), Some(blob)) if store.check_layer(&diff_id, &blob.digest).is_ok() => {
            Ok(Some(Some(LayerRef { diff_id, blob })))
        }
        _ => Ok(None),
    }
}

fn step_err(line: usize, label: &str, message: String) -> BuildError {
    BuildError::Step {
        line,
        label: label.to_string(),
        message,
    }
}

fn execute_step(
    shared: &Shared<'_>,
    state: &mut ImageState,
    root: &mut WorkRoot,
    step: &check::Step,
    node: &Node,
    fetched: &BTreeMap<String, crate::fetch::Fetched>,
    from_stage: Option<&StageDone>,
) -> Result<Option<LayerInfo>> {
    let store = shared.store;
    let epoch = shared.opts.source_date_epoch;
    let scratch = shared.work.join(format!("step-{}", &node.id[7..23]));
    let report = |bytes: u64| {
        shared.observer.event(BuildEvent::StepBytes {
            id: node.id.clone(),
            bytes,
        })
    };
    let progress: Option<crate::rootfs::Progress<'_>> = Some(&report);
    match &step.op {
        Op::Run(run) => {
            let rootfs = root.sync(store, &state.layers)?.to_path_buf();
            let mut env: Vec<(String, String)> = state.env();
            for (k, v) in &run.env {
                match env.iter_mut().find(|(key, _)| key == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => env.push((k.clone(), v.clone())),
                }
            }
            if !env.iter().any(|(k, _)| k == "PATH") {
                env.push(("PATH".into(), DEFAULT_PATH.into()));
            }
            let command = match &run.command {
                check::Command::Shell(s) => RunCommand::Shell(s.clone()),
                check::Command::Exec(argv) => RunCommand::Exec(argv.clone()),
            };
            let spec = crate::sandbox::RunSpec {
                lower: rootfs,
                scratch: scratch.clone(),
                command,
                env,
                network: shared.opts.network,
            };
            let result = crate::run::run_step(store, &spec, epoch, progress)?;
            let text = crate::events::printable(&result.output);
            for line in text.lines() {
                shared.observer.event(BuildEvent::StepOutput {
                    id: node.id.clone(),
                    line: line.to_string(),
                });
            }
            if result.exit_code != 0 {
                return Err(BuildError::RunFailed {
                    line: step.line,
                    command: match &run.command {
                        check::Command::Shell(s) => s.clone(),
                        check::Command::Exec(a) => serde_json::to_string(a).unwrap_or_default(),
                    },
                    exit_code: result.exit_code,
                    output: text,
                });
            }
            Ok(result.layer)
        }
        Op::Copy(c) | Op::Add(c) => {
            let is_add = matches!(step.op, Op::Add(_));
            let mut trees = Vec::new();
            for (si, s) in c.sources.iter().enumerate() {
                match s {
                    Source::Local { path, matches } => {
                        if let Some(done) = from_stage {
                            let mut other = done.root.lock().unwrap_or_else(|e| e.into_inner());
                            let other_root = other.sync(store, &done.state.layers)?.to_path_buf();
                            trees.push(tree_in(&other_root, path, &node.label, step.line)?);
                        } else {
                            for m in matches {
                                let t = context_tree(&shared.context, m, &node.label, step.line)?;
                                if is_add && !t.is_dir {
                                    if let Some(extracted) = crate::archive::maybe_extract(
                                        store,
                                        &t.root,
                                        &scratch.join(format!("add-{si}")),
                                    )? {
                                        trees.push(extracted);
                                        continue;
                                    }
                                }
                                trees.push(t);
                            }
                        }
                    }
                    Source::Remote { url } => {
                        let f = fetched.get(url).ok_or_else(|| {
                            step_err(step.line, &node.label, format!("{url} was not fetched"))
                        })?;
                        if let Some(sum) = &c.checksum {
                            if *sum != f.digest.to_string() {
                                return Err(step_err(
                                    step.line,
                                    &node.label,
                                    format!(
                                        "{url} has digest {} but --checksum wants {sum}",
                                        f.digest
                                    ),
                                ));
                            }
                        }
                        trees.push(materialize_fetched(
                            store,
                            f,
                            &scratch.join(format!("remote-{si}")),
                        )?);
                    }
                }
            }
            let chown = match &c.chown {
                None => None,
                Some(ch) => {
                    let layers = state.layers.clone();
                    let mut rootfs = || root.sync(store, &layers).map(Path::to_path_buf);
                    Some(
                        copy::resolve_chown(&ch.user, ch.group.as_deref(), &mut rootfs).map_err(
                            |e| step_err(step.line, &node.label, chasi_layers::error::chain(&e)),
                        )?,
                    )
                }
            };
            let mappings = map_with_root(store, state, root, &trees, &c.dest)
                .map_err(|m| step_err(step.line, &node.label, m))?;
            let info = copy::write_layer(
                store,
                &mappings,
                &CopyOptions {
                    chown,
                    chmod: c.chmod,
                    epoch,
                },
                progress,
            )?;
            let _ = std::fs::remove_dir_all(&scratch);
            Ok(Some(info))
        }
        Op::App(app) => {
            let mut trees = Vec::new();
            for (si, s) in app.sources.iter().enumerate() {
                match s {
                    Source::Local { matches, .. } => {
                        for m in matches {
                            trees.push(context_tree(&shared.context, m, &node.label, step.line)?);
                        }
                    }
                    Source::Remote { url } => {
                        let f = fetched.get(url).ok_or_else(|| {
                            step_err(step.line, &node.label, format!("{url} was not fetched"))
                        })?;
                        trees.push(materialize_fetched(
                            store,
                            f,
                            &scratch.join(format!("remote-{si}")),
                        )?);
                    }
                }
            }
            let dest = if app.dest.ends_with('/') {
                app.dest.clone()
            } else {
                format!("{}/", app.dest)
            };
            let mappings = map_with_root(store, state, root, &trees, &dest)
                .map_err(|m| step_err(step.line, &node.label, m))?;
            let info = copy::write_layer(
                store,
                &mappings,
                &CopyOptions {
                    chown: None,
                    chmod: None,
                    epoch,
                },
                progress,
            )?;
            let _ = std::fs::remove_dir_all(&scratch);
            Ok(Some(info))
        }
        _ => Ok(None),
    }
}

/// Applies Docker's destination rules, looking at the stage's filesystem only when it has one.
fn map_with_root(
    store: &Store,
    state: &ImageState,
    root: &mut WorkRoot,
    trees: &[SourceTree],
    dest: &str,
) -> std::result::Result<Vec<Mapping>, String> {
    if state.layers.is_empty() {
        return copy::map_into_image(trees, dest, None);
    }
    let path = root
        .sync(store, &state.layers)
        .map_err(|e| chasi_layers::error::chain(&e))?
        .to_path_buf();
    copy::map_into_image(trees, dest, Some(&path))
}

fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_string()
}

/// A context source (already resolved and checked by the compiler), with `.kubefileignore` applied.
fn context_tree(
    context: &Mutex<Context>,
    rel: &str,
    label: &str,
    line: usize,
) -> Result<SourceTree> {
    let entries = context
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .walk(rel)
        .map_err(|e| step_err(line, label, chasi_layers::error::chain(&e)))?;
    let top = entries.iter().find(|e| e.rel.is_empty()).ok_or_else(|| {
        step_err(
            line,
            label,
            format!("{rel} vanished from the build context"),
        )
    })?;
    let is_dir = top.kind == check::context::EntryKind::Dir;
    Ok(SourceTree {
        root: top.path.clone(),
        is_dir,
        below: entries
            .iter()
            .filter(|e| !e.rel.is_empty())
            .map(|e| e.rel.clone())
            .collect(),
        file_name: base_name(rel),
    })
}

/// A path inside another stage's filesystem (`COPY --from`), never leaving it.
fn tree_in(root: &Path, path: &str, label: &str, line: usize) -> Result<SourceTree> {
    let (parts, _) = copy::normalize_dest(path);
    let rel = parts.join("/");
    let full = root.join(&rel);
    // Refuse a source that is, or passes through, a symlink: it could point anywhere.
    let mut walk = root.to_path_buf();
    for p in &parts {
        walk.push(p);
        let meta = std::fs::symlink_metadata(&walk).map_err(|_| {
            step_err(
                line,
                label,
                format!("/{rel} does not exist in the source stage"),
            )
        })?;
        if meta.file_type().is_symlink() {
            return Err(step_err(
                line,
                label,
                format!("/{rel} goes through a symbolic link in the source stage"),
            ));
        }
    }
    let meta = std::fs::symlink_metadata(&full).map_err(|_| {
        step_err(
            line,
            label,
            format!("/{rel} does not exist in the source stage"),
        )
    })?;
    let is_dir = meta.is_dir() || rel.is_empty();
    Ok(SourceTree {
        below: if is_dir {
            copy::list_tree(&full)?
        } else {
            Vec::new()
        },
        root: full,
        is_dir,
        file_name: base_name(&rel),
    })
}

/// Writes a fetched blob to a file named after its URL, for copying.
fn materialize_fetched(store: &Store, f: &crate::fetch::Fetched, dir: &Path) -> Result<SourceTree> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(&f.file_name);
    let mut out = std::fs::File::create(&path).map_err(io("create", &path))?;
    store.copy_blob(&f.digest, &mut out)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(io("chmod", &path))?;
    Ok(SourceTree {
        root: path,
        is_dir: false,
        below: Vec::new(),
        file_name: f.file_name.clone(),
    })
}

//! One stage: its base (`FROM`), then its steps in order, each keyed and looked up in the cache.
//! The final image's stage checks the image its files start from against `--type` before its
//! first step (`chasi_compiler::check::imagetype::check_base`).
//!
//! Configuration steps change the image state and the running key only; layer steps are
//! keyed with what the plan cannot know (remote source digests, the key of a `COPY --from`
//! stage), served from the cache when [`cache::lookup`] finds their layer, and executed by
//! [`ops::execute`] otherwise.

use super::cache::{self, CacheRecord};
use super::ops::{self, StepInput};
use super::slots::{wait_stage, StageDone, StageSlot};
use super::Session;
use crate::assemble;
use crate::error::{BuildError, Result, StepError};
use crate::events::BuildEvent;
use crate::fetch::{Fetched, Fetcher};
use crate::rootfs::WorkRoot;
use crate::state::{resolve_base, ImageState, LayerRef};
use chasi_compiler::check::imagetype::{check_base, BaseType};
use chasi_compiler::check::{Base, CopyFrom, ImageType, Op, Source};
use chasi_compiler::plan::{Node, NodeStep};
use chasi_layers::Digest;
use chasi_oci::Platform;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One stage's part of the plan, checked for shape once.
pub(super) struct StageInput<'a> {
    target_index: usize,
    index: usize,
    /// The target platform (the one events name).
    platform: &'a Platform,
    base_node: &'a Node,
    base: &'a Base,
    /// The stage's own platform (`FROM --platform`), which picks the base image's manifest.
    base_platform: &'a Platform,
    steps: Vec<(&'a Node, &'a Op)>,
    /// For the final image's stage, `--type`: its base is checked against it.
    image_type: Option<ImageType>,
}

impl<'a> StageInput<'a> {
    /// Takes a stage's nodes: the `FROM` node, then one node per step.
    pub(super) fn new(
        target_index: usize,
        index: usize,
        platform: &'a Platform,
        nodes: &'a [Node],
        image_type: Option<ImageType>,
        problem: impl Fn(&str) -> BuildError,
    ) -> Result<Self> {
        let Some((
            base_node @ Node {
                step:
                    NodeStep::From {
                        base,
                        platform: base_platform,
                        ..
                    },
                ..
            },
            rest,
        )) = nodes.split_first()
        else {
            return Err(problem("it does not start with a FROM node"));
        };
        let steps = rest
            .iter()
            .map(|node| match &node.step {
                NodeStep::Step { op, .. } => Ok((node, op)),
                _ => Err(problem(&format!("node {} is not a step", node.id))),
            })
            .collect::<Result<_>>()?;
        Ok(StageInput {
            target_index,
            index,
            platform,
            base_node,
            base,
            base_platform,
            steps,
            image_type,
        })
    }
}

/// What every step of a stage shares.
struct StageCx<'s, 'a> {
    session: &'s Session<'a>,
    slots: &'s [StageSlot],
    /// The target platform, as events name it.
    platform: String,
    /// The stage's own platform (`FROM --platform`, else the target's): what `RUN` executes.
    stage_platform: String,
    /// The history entries' `created`.
    created: String,
    fetcher: Fetcher<'s>,
    stage: usize,
}

/// Builds one stage: its base, then each step.
pub(super) fn build_stage(
    session: &Session<'_>,
    input: &StageInput<'_>,
    slots: &[StageSlot],
) -> Result<Arc<StageDone>> {
    let epoch = session.opts.source_date_epoch;
    let cx = StageCx {
        session,
        slots,
        platform: input.platform.to_string(),
        stage_platform: input.base_platform.to_string(),
        created: assemble::rfc3339(epoch),
        fetcher: Fetcher::new(session.store, session.opts.offline),
        stage: input.index,
    };
    let (mut state, mut key) = start(&cx, input)?;
    let root_dir = session
        .work
        .join(format!("t{}-s{}", input.target_index, input.index));
    let mut root = WorkRoot::new(root_dir);
    let count = input.steps.len();
    for (n, (node, op)) in input.steps.iter().enumerate() {
        if ops::config::apply(&mut state, op, &cx.created, &node.label) {
            key = cache::key_of(&[&key.to_string(), &node.id.to_string()]);
            continue;
        }
        let label = format!("[{}/{}] {}", n + 1, count, node.label);
        key = layer_step(&cx, &mut state, &mut root, node, op, &key, label)?;
    }
    Ok(Arc::new(StageDone {
        state,
        key,
        root: Mutex::new(root),
    }))
}

/// The stage's starting state and key.
fn start(cx: &StageCx<'_, '_>, input: &StageInput<'_>) -> Result<(ImageState, Digest)> {
    // File times are clamped to the epoch, so layers made with another epoch differ.
    let version = format!("chasi.build/v1 epoch={}", cx.session.opts.source_date_epoch);
    let id = &input.base_node.id.to_string();
    let (state, key) = match input.base {
        Base::Scratch => (ImageState::scratch(), cache::key_of(&[&version, id])),
        Base::Image { reference } => {
            let mut state = resolve_base(
                cx.session.store,
                reference,
                input.base_platform,
                cx.session.opts,
            )?;
            if let Some(origin) = &mut state.origin {
                if let NodeStep::From { span, .. } = &input.base_node.step {
                    origin.span = *span;
                }
                origin.at = ops::at(input.base_node);
            }
            let base = state.base_digest.map(|d| d.to_string()).unwrap_or_default();
            (state, cache::key_of(&[&version, id, &base]))
        }
        Base::Stage { index } => {
            let done = wait_stage(cx.slots, input.index, *index)?;
            let key = cache::key_of(&[&version, id, &done.key.to_string()]);
            (done.state.clone(), key)
        }
    };
    if let Some(image_type) = input.image_type {
        check_image_type(cx, image_type, &state)?;
    }
    Ok((state, key))
}

/// `--type` against the image the final image starts from (`chasi_compiler::check::imagetype`):
/// a refusal (KF241) stops the build before its first step, a warning (KF242) is reported.
fn check_image_type(cx: &StageCx<'_, '_>, image_type: ImageType, state: &ImageState) -> Result<()> {
    let Some(origin) = &state.origin else {
        return Ok(());
    };
    let base = match &origin.sealer_type {
        Some(text) => BaseType::Sealer(text),
        None => BaseType::NotSealer,
    };
    let Some(diagnostic) = check_base(image_type, &origin.reference, base, origin.span) else {
        return Ok(());
    };
    if diagnostic.is_error() {
        return Err(BuildError::ImageType {
            at: origin.at.clone(),
            diagnostic: Box::new(diagnostic),
        });
    }
    cx.session.observer.event(BuildEvent::Warning {
        platform: cx.platform.clone(),
        message: format!(
            "{}: {} {}",
            origin.at,
            diagnostic.code.as_str(),
            diagnostic.message
        ),
    });
    Ok(())
}

/// What a layer step resolved before it can be keyed.
struct Resolved {
    /// Digests entering the key: remote sources, then the `COPY --from` stage's key.
    extra: Vec<String>,
    fetched: BTreeMap<String, Fetched>,
    from_stage: Option<Arc<StageDone>>,
}

/// Fetches remote sources and waits for a `COPY --from` stage.
fn resolve(cx: &StageCx<'_, '_>, node: &Node, op: &Op) -> Result<Resolved> {
    let mut extra: Vec<String> = Vec::new();
    let mut fetched = BTreeMap::new();
    let sources: &[Source] = match op {
        Op::Copy(c) | Op::Add(c) => &c.sources,
        Op::App(a) => &a.sources,
        _ => &[],
    };
    for s in sources {
        if let Source::Remote { url } = s {
            let (f, _) = cx
                .fetcher
                .fetch(url)
                .map_err(|e| ops::step_err(node, e.into()))?;
            extra.push(f.digest.to_string());
            fetched.insert(url.clone(), f);
        }
    }
    let mut from_stage = None;
    if let Op::Copy(c) | Op::Add(c) = op {
        match &c.from {
            Some(CopyFrom::Stage { index }) => {
                let done = wait_stage(cx.slots, cx.stage, *index)?;
                extra.push(done.key.to_string());
                from_stage = Some(done);
            }
            Some(CopyFrom::Image { reference }) => {
                let reference = reference.clone();
                let e = StepError::CopyFromImage { reference };
                return Err(ops::step_err(node, e));
            }
            None => {}
        }
    }
    Ok(Resolved {
        extra,
        fetched,
        from_stage,
    })
}

/// Keys a layer step, serves it from the cache or executes and records it; returns its key.
fn layer_step(
    cx: &StageCx<'_, '_>,
    state: &mut ImageState,
    root: &mut WorkRoot,
    node: &Node,
    op: &Op,
    parent_key: &Digest,
    label: String,
) -> Result<Digest> {
    let session = cx.session;
    let resolved = resolve(cx, node, op)?;
    let mut parts = vec![parent_key.to_string(), node.id.to_string()];
    parts.extend(resolved.extra);
    let key = cache::key_of(&parts.iter().map(String::as_str).collect::<Vec<_>>());
    let cached = if session.opts.no_cache {
        None
    } else {
        cache::lookup(session.store, &key)?
    };
    if let Some(hit) = cached {
        session.observer.event(BuildEvent::StepCached {
            id: node.id,
            platform: cx.platform.clone(),
            label,
        });
        let empty = hit.is_none();
        if let Some(layer) = hit {
            state.layers.push(layer);
        }
        state.push_history(&cx.created, &node.label, empty);
        session.count(true);
        if let Some(value) = session.store.get_cache(&key)? {
            session.remember(key, value);
        }
        return Ok(key);
    }
    session.observer.event(BuildEvent::StepStarted {
        id: node.id,
        platform: cx.platform.clone(),
        label: label.clone(),
    });
    let t0 = Instant::now();
    let input = StepInput {
        session,
        node,
        op,
        platform: &cx.stage_platform,
        fetched: &resolved.fetched,
        from_stage: resolved.from_stage.as_deref(),
    };
    let layer = ops::execute(&input, state, root)?;
    // The manifest needs the compressed blob's digest; the store computes it from the chunks once.
    let layer = match layer {
        Some(info) => {
            let blob = session.store.layer_blob(&info.diff_id)?;
            Some((info, blob))
        }
        None => None,
    };
    let record = match &layer {
        Some((info, blob)) => CacheRecord::layer(info, blob),
        None => CacheRecord::Unchanged,
    };
    cache::record(session.store, &key, &record)?;
    session.remember(key, record.to_json());
    let layer_bytes = layer.as_ref().map(|(l, _)| l.size).unwrap_or(0);
    let empty = layer.is_none();
    if let Some((info, blob)) = layer {
        state.layers.push(LayerRef {
            diff_id: info.diff_id,
            blob,
        });
    }
    state.push_history(&cx.created, &node.label, empty);
    session.count(false);
    session.observer.event(BuildEvent::StepDone {
        id: node.id,
        platform: cx.platform.clone(),
        label,
        layer_bytes,
        seconds: t0.elapsed().as_secs_f64(),
    });
    Ok(key)
}

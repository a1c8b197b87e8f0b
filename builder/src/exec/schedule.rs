//! Scheduling: each target platform on its own thread, and inside a platform each stage on
//! its own thread, waiting only for the stages it reads (`FROM <stage>`, `COPY --from`).
//!
//! So independent stages and platforms build concurrently, and the store's chunk compression
//! spreads over the cores within each step. A stage publishes its result (or its failure) in
//! a [`StageSlot`] that the stages reading it wait on; the first failure that is not just
//! "a dependency failed" is the one reported.

use super::carry;
use super::slots::{StageDone, StageSlot};
use super::stage::{build_stage, StageInput};
use super::Session;
use crate::assemble::{self, ManifestSpec};
use crate::error::{BuildError, BuildThread, Result};
use crate::events::BuildEvent;
use chasi_compiler::check::ImageType;
use chasi_compiler::plan::{NodeStep, Plan, TargetPlan};
use chasi_oci::Descriptor;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Builds every target on its own thread; returns, in plan order, each platform's manifest.
pub(super) fn build_targets(
    session: &Session<'_>,
    plan: &Plan,
) -> Result<Vec<(String, Descriptor)>> {
    let results: Vec<Result<(String, Descriptor)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .targets
            .iter()
            .enumerate()
            .map(|(i, tplan)| scope.spawn(move || build_target(session, i, tplan)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(BuildError::ThreadPanicked(BuildThread::Target)))
            })
            .collect()
    });
    results.into_iter().collect()
}

fn malformed(tplan: &TargetPlan, problem: String) -> BuildError {
    BuildError::MalformedPlan {
        platform: tplan.platform.to_string(),
        problem,
    }
}

/// Builds one platform: its stages on threads, then its config and manifest.
fn build_target(
    session: &Session<'_>,
    target_index: usize,
    tplan: &TargetPlan,
) -> Result<(String, Descriptor)> {
    let image_node = tplan
        .nodes
        .get(tplan.image)
        .ok_or_else(|| malformed(tplan, format!("no image node #{}", tplan.image)))?;
    let NodeStep::Image(image) = &image_node.step else {
        return Err(malformed(
            tplan,
            format!("node #{} is not the image node", tplan.image),
        ));
    };
    let done = build_stages(session, target_index, tplan, image.extension.image_type)?;
    let extension = assemble::extension_json(&image.extension, &done.state.inherited_apps);
    let opts = session.opts;
    let mut state = done.state.clone();
    let mut annotations = opts.annotations.clone();
    let carried = carry::carry(
        &carry::CarryInput {
            store: session.store,
            options: &opts.carry,
            registry: &opts.registry,
            observer: session.observer,
            platform: &tplan.platform,
            work: session.work.join(format!("carry-{target_index}")),
            parent_key: &done.key,
            no_cache: opts.no_cache,
            offline: opts.offline,
            epoch: opts.source_date_epoch,
            created: assemble::rfc3339(opts.source_date_epoch),
            remember: &|key, value| session.remember(key, value),
        },
        &mut state,
    )?;
    if let Some(list) = carried {
        annotations.insert(carry::ANNOTATION_CONTAINER_IMAGES.to_string(), list);
    }
    let started = Instant::now();
    let desc = assemble::write_manifest(
        session.store,
        &state,
        &ManifestSpec {
            platform: &tplan.platform,
            extension: &extension,
            labels: &opts.labels,
            annotations: &annotations,
            epoch: opts.source_date_epoch,
            compression: opts.compression,
            commands: &image.extension.launch.cmds,
            oci_cmd: opts.oci_cmd,
        },
    )?;
    session.observer.event(BuildEvent::StepDone {
        id: image_node.id,
        platform: tplan.platform.to_string(),
        label: image_node.label.clone(),
        layer_bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok((tplan.platform.to_string(), desc))
}

/// Runs each stage of a platform on its own thread (the last one checks its base against
/// `image_type`); returns the last stage.
fn build_stages(
    session: &Session<'_>,
    target_index: usize,
    tplan: &TargetPlan,
    image_type: ImageType,
) -> Result<Arc<StageDone>> {
    let mut inputs = Vec::with_capacity(tplan.stages.len());
    let mut next = 0;
    for (si, stage) in tplan.stages.iter().enumerate() {
        if stage.index != si || stage.nodes.start != next {
            return Err(malformed(
                tplan,
                format!(
                    "stage #{si} (index {}, nodes {:?}) does not follow node #{next}",
                    stage.index, stage.nodes
                ),
            ));
        }
        next = stage.nodes.end;
        let nodes = tplan.nodes.get(stage.nodes.clone()).ok_or_else(|| {
            malformed(
                tplan,
                format!("stage {si} has nodes {:?} out of range", stage.nodes),
            )
        })?;
        let problem = |what: &str| malformed(tplan, format!("stage {si}: {what}"));
        let last = si + 1 == tplan.stages.len();
        inputs.push(StageInput::new(
            target_index,
            si,
            &tplan.platform,
            nodes,
            last.then_some(image_type),
            problem,
        )?);
    }
    let Some(last) = inputs.len().checked_sub(1) else {
        return Err(malformed(tplan, "it has no stage".into()));
    };
    if next != tplan.image {
        return Err(malformed(
            tplan,
            format!(
                "its stages end at node #{next}, not at the image node #{}",
                tplan.image
            ),
        ));
    }
    let slots: Vec<StageSlot> = inputs.iter().map(|_| OnceLock::new()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(si, input)| {
                let slots = &slots;
                scope.spawn(move || {
                    let res = build_stage(session, input, slots);
                    let stored = match &res {
                        Ok(done) => Ok(done.clone()),
                        Err(_) => Err(si),
                    };
                    let _ = slots[si].set(stored);
                    res
                })
            })
            .collect();
        let results = handles.into_iter().map(|h| {
            h.join()
                .unwrap_or(Err(BuildError::ThreadPanicked(BuildThread::Stage)))
        });
        last_or_root_cause(results, last)
    })
}

/// The last stage's result, unless a stage failed: then the first failure that is not just
/// "a dependency failed" (the root cause).
fn last_or_root_cause(
    results: impl Iterator<Item = Result<Arc<StageDone>>>,
    last: usize,
) -> Result<Arc<StageDone>> {
    let mut final_result = None;
    let mut first_error: Option<(bool, BuildError)> = None;
    for (si, r) in results.enumerate() {
        match r {
            Ok(done) if si == last => final_result = Some(done),
            Ok(_) => {}
            Err(e) => {
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
        (None, Some(done)) => Ok(done),
        (None, None) => Err(BuildError::NoResult),
    }
}

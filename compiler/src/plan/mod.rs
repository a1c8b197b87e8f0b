//! The build plan: a checked [`Program`] lowered to a DAG of nodes per target platform.
//!
//! Nodes are a stage's base (`FROM`), each layer-producing step (`COPY`, `ADD`, `RUN`,
//! `APP`/`CNI`/`CSI`), each configuration step (`ENV`, `LABEL`, `ARG`, `MAINTAINER`, and
//! the labels of `KUBEVERSION`/`CNI`/`CSI`) and one final image node (the OCI configuration
//! plus the sealer extension). Edges are the parent chain inside a stage (a `FROM <stage>`
//! continues from that stage's last node) and `COPY --from=<stage>` dependencies.
//!
//! Every node carries an identity, [`Node::id`], that the builder uses as its cache key (its
//! doc comment says exactly what is hashed), and the checked step it stands for,
//! [`Node::step`], so the plan is all the builder needs: a stage's nodes are
//! [`StagePlan::nodes`], its base node first. The carried step is neither hashed (the id is
//! computed from `definition` alone) nor serialized (the JSON view shows `definition`). The same inputs give the same ids on any machine:
//! no times, no path of the context directory itself, no map-order dependence (canonical JSON,
//! [`digest`]). `compiler/tests/check.rs` proves the consequences: touching files or passing
//! an unused build argument changes no id; changing a byte, a mode, a used build argument, the
//! instruction or the platform changes that node and every node after it. What the plan
//! cannot know (the digest a base reference resolves to, the content of remote sources) the
//! builder adds to its cache key. The planner reads the context only through
//! [`crate::check::context`] (content digests, cached per path).
//!
//! Rendering (text, JSON, Graphviz DOT) is in [`render`]. How to read `chasi plan`:
//!
//! ```text
//! platform linux/amd64
//!   stage 0
//!     #0   4d8575db5af8  base    FROM scratch AS tools               line 5, args BASE=scratch
//!     #1   0858a084e800  layer   COPY src/ src/                      line 6, content f6fde3159d5e
//!   stage 1
//!     #5   74a098e6adc8  layer   COPY --from=tools out/bin/greet …   line 11, reads #2
//!   image sha256:222bfd…
//! ```
//!
//! Columns: the node number (its index in `nodes`), the first 12 hex digits of its id, the
//! kind, a summary with variables expanded, then the Kubefile line, the build args used, the
//! content digest, and `reads #n` for a `COPY --from` dependency. A node's parent is the line
//! above it in its stage. `--format json` has the full ids, the hashed definitions and the
//! edges; `--format dot` draws the same graph (solid = parent, dashed = `--from`).

pub mod digest;
pub mod files;
pub mod render;

use crate::check::context::{Context, ContextError};
use crate::check::{Base, CopyFrom, Image, Op, Platform, Program, Source, Step};
use crate::source::Span;
use chasi_oci::Digest;
use digest::{canonical_json, ContentHasher, NODE_DIGEST_VERSION};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ops::Range;

/// The build plan: one DAG per target platform.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// In the order of the requested platforms.
    pub targets: Vec<TargetPlan>,
}

/// The DAG for one platform. Nodes are topologically ordered: a node's parent and
/// dependencies always come before it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPlan {
    /// The target platform.
    #[serde(serialize_with = "crate::check::platform_json")]
    pub platform: Platform,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Index of the final image node (the last node).
    pub image: usize,
    /// The stages in file order, each with its range of nodes (not in the JSON view, which
    /// shows each node's `stage`).
    #[serde(skip)]
    pub stages: Vec<StagePlan>,
}

/// One stage of a [`TargetPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// 0-based position among the stages.
    pub index: usize,
    /// Its nodes in [`TargetPlan::nodes`]: the base node (`FROM`), then one node per step.
    pub nodes: Range<usize>,
}

/// The checked step a node stands for: what the builder executes.
#[derive(Debug, Clone)]
pub enum NodeStep {
    /// A stage's `FROM`.
    From {
        /// What the stage starts from.
        base: Base,
        /// The platform of the stage (`FROM --platform`, else the target's).
        platform: Platform,
        /// The `FROM` instruction.
        span: Span,
    },
    /// A step of a stage.
    Step {
        /// 0-based position among the stage's steps.
        index: usize,
        /// What the step does.
        op: Op,
        /// The instruction.
        span: Span,
    },
    /// The final image: its configuration and sealer extension.
    Image(Image),
}

/// What a node produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A stage's starting filesystem and configuration (`FROM`).
    Base,
    /// A filesystem layer (`COPY`, `ADD`, `RUN`, `APP`, `CNI`, `CSI`).
    Layer,
    /// A configuration change without a layer (`ENV`, `LABEL`, `ARG`, `MAINTAINER`, …).
    Config,
    /// The final image: configuration plus the sealer extension.
    Image,
}

/// One node of the DAG.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// The node's identity and cache key: `sha256:<hex>` of the canonical JSON of
    ///
    /// ```json
    /// { "version":    "chasi.plan.node/v1",
    ///   "parent":     "<parent node id>" | null,
    ///   "deps":       ["<node id of the last node of each COPY --from stage>", ...],
    ///   "definition": <the normalized instruction, below>,
    ///   "build_args": { "<NAME>": "<value>" | null, ... },
    ///   "content":    "sha256:<content digest>" | null }
    /// ```
    ///
    /// Canonical JSON = object keys sorted by bytes, no whitespace (see
    /// [`digest::canonical_json`]). `definition` is, for a base node,
    /// `{"op":"from","base":…,"platform":"os/arch[/variant]"}` (the target platform enters
    /// every id through its chain), for a step the serialized [`Op`] (expanded values, all
    /// sources, flags; `RUN` includes its environment), and for the image node
    /// `{"op":"image","image":<the Image: env, labels, maintainer, sealer extension>}`.
    /// `build_args` are the build arguments the node consulted (a `RUN` consults every `ARG`
    /// in scope); `null` marks an `ARG` declared without a value. `content` is present only
    /// with a build context and only for steps with local sources: see
    /// [`digest::ContentHasher::digest`] — SHA-256 over, per source in order, the matched
    /// context path and, per entry below it sorted by relative path, kind, relative path,
    /// permission bits, and file size and content digest (BLAKE3) or symlink target. Modification times
    /// and the `.kubefileignore`d files are never part of it, owners only for `--chown=preserve`
    /// (with the extended attributes: [`digest::ContentHasher::digest_with`]).
    ///
    /// Consequences: an id changes when anything it depends on changes — a byte of a source,
    /// a mode, a used build argument, the instruction, the platform, or any ancestor — and
    /// stays the same otherwise (touching files, unrelated build args, comments, layout).
    /// Remote sources (`http(s)://`) enter by URL (and `--checksum`) only, and base images
    /// by reference: the builder must extend the key with the resolved digests.
    pub id: Digest,
    /// What the node produces.
    pub kind: NodeKind,
    /// The stage it belongs to (the image node: the last stage).
    pub stage: usize,
    /// The previous node in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<usize>,
    /// Other nodes whose output this one reads (`COPY --from`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<usize>,
    /// 1-based Kubefile line (none for the image node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Where the instruction is, `FILE:LINE:COLUMN`, for messages (set by [`locate`] from the
    /// source the plan was compiled from; not serialized, not part of [`Node::id`]).
    #[serde(skip)]
    pub location: Option<String>,
    /// A one-line human summary with expanded values.
    pub label: String,
    /// The normalized instruction that is hashed.
    pub definition: Value,
    /// Build arguments used, with values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, Option<String>>,
    /// The content digest of local sources, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Digest>,
    /// The checked step, for the builder. Not part of [`Node::id`] (which hashes `definition`)
    /// and not serialized.
    #[serde(skip)]
    pub step: NodeStep,
}

fn node_id(
    parent: Option<&Digest>,
    deps: &[&Digest],
    definition: &Value,
    build_args: &BTreeMap<String, Option<String>>,
    content: Option<&Digest>,
) -> Digest {
    // The canonical JSON of {"build_args","content","definition","deps","parent","version"}
    // (keys in byte order), written directly to avoid copying the definition.
    let mut text = String::with_capacity(256);
    text.push_str("{\"build_args\":");
    canonical_json(&json!(build_args), &mut text);
    text.push_str(",\"content\":");
    canonical_json(&json!(content), &mut text);
    text.push_str(",\"definition\":");
    canonical_json(definition, &mut text);
    text.push_str(",\"deps\":");
    canonical_json(&json!(deps), &mut text);
    text.push_str(",\"parent\":");
    canonical_json(&json!(parent), &mut text);
    text.push_str(",\"version\":");
    canonical_json(&json!(NODE_DIGEST_VERSION), &mut text);
    text.push('}');
    Digest::of(text.as_bytes())
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn source_text(source: &Source) -> String {
    match source {
        Source::Local { path, .. } => path.clone(),
        Source::Remote { url } => url.clone(),
    }
}

fn label_of(op: &Op, stage_names: &[Option<String>]) -> String {
    let text = match op {
        Op::Copy(c) | Op::Add(c) => {
            let mut parts = vec![op.keyword().to_string()];
            match &c.from {
                Some(CopyFrom::Stage { index }) => parts.push(format!(
                    "--from={}",
                    stage_names
                        .get(*index)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| index.to_string())
                )),
                Some(CopyFrom::Image { reference }) => parts.push(format!("--from={reference}")),
                None => {}
            }
            if c.preserve_owners {
                parts.push("--chown=preserve".into());
            }
            if let Some(chown) = &c.chown {
                match &chown.group {
                    Some(g) => parts.push(format!("--chown={}:{g}", chown.user)),
                    None => parts.push(format!("--chown={}", chown.user)),
                }
            }
            if let Some(mode) = c.chmod {
                parts.push(format!("--chmod={mode:04o}"));
            }
            parts.extend(c.sources.iter().map(source_text));
            parts.push(c.dest.clone());
            parts.join(" ")
        }
        Op::Run(run) => match &run.command {
            crate::check::Command::Shell(s) => format!("RUN {s}"),
            crate::check::Command::Exec(argv) => {
                format!("RUN {}", serde_json::to_string(argv).unwrap_or_default())
            }
        },
        Op::App(app) => {
            let mut parts = vec![app.kind.keyword().to_string(), app.name.clone()];
            for s in &app.sources {
                match s {
                    Source::Local { path, .. } => parts.push(format!("local://{path}")),
                    Source::Remote { url } => parts.push(url.clone()),
                }
            }
            parts.join(" ")
        }
        Op::Env { vars } => format!(
            "ENV {}",
            vars.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Op::Label { labels } => format!(
            "LABEL {}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Op::Arg { name, default } => match default {
            Some(d) => format!("ARG {name}={d}"),
            None => format!("ARG {name}"),
        },
        Op::Maintainer { text } => format!("MAINTAINER {text}"),
    };
    truncate(&text, 80)
}

fn local_paths(step: &Step) -> Vec<String> {
    let sources = match &step.op {
        Op::Copy(c) | Op::Add(c) if c.from.is_none() => &c.sources,
        Op::App(app) => &app.sources,
        _ => return Vec::new(),
    };
    sources
        .iter()
        .filter_map(|s| match s {
            Source::Local { matches, .. } => Some(matches.iter().cloned()),
            Source::Remote { .. } => None,
        })
        .flatten()
        .collect()
}

/// Lowers a program to its plan. With a context, the content of local sources is hashed
/// (this reads every source file once, or not at all when `files` knows its stamp); without one, `content` stays empty.
pub fn plan(
    program: &Program,
    context: Option<&Context>,
    files: Option<&dyn files::FileDigests>,
) -> Result<Plan, ContextError> {
    let mut hasher = context.map(|c| ContentHasher::with_file_digests(c, files));
    let mut targets = Vec::new();
    for target in &program.targets {
        let mut nodes: Vec<Node> = Vec::new();
        let mut stage_last: Vec<usize> = Vec::new();
        let mut stages: Vec<StagePlan> = Vec::new();
        let stage_names: Vec<Option<String>> =
            target.stages.iter().map(|s| s.name.clone()).collect();
        for stage in &target.stages {
            let parent = match stage.base {
                Base::Stage { index } => stage_last.get(index).copied(),
                _ => None,
            };
            let definition = json!({
                "op": "from",
                "base": stage.base,
                "platform": stage.platform.to_string(),
            });
            let base_label = match &stage.base {
                Base::Scratch => "FROM scratch".to_string(),
                Base::Image { reference } => format!("FROM {reference}"),
                Base::Stage { index } => format!(
                    "FROM {}",
                    stage_names[*index]
                        .clone()
                        .unwrap_or_else(|| format!("stage {index}"))
                ),
            };
            let label = match &stage.name {
                Some(n) => format!("{base_label} AS {n}"),
                None => base_label,
            };
            let id = node_id(
                parent.map(|p| &nodes[p].id),
                &[],
                &definition,
                &stage.build_args,
                None,
            );
            nodes.push(Node {
                id,
                kind: NodeKind::Base,
                stage: stage.index,
                parent,
                deps: Vec::new(),
                line: Some(stage.line),
                location: None,
                label,
                definition,
                build_args: stage.build_args.clone(),
                content: None,
                step: NodeStep::From {
                    base: stage.base.clone(),
                    platform: stage.platform.clone(),
                    span: stage.span,
                },
            });
            let first = nodes.len() - 1;
            let mut previous = first;
            for (index, step) in stage.steps.iter().enumerate() {
                let deps: Vec<usize> = match &step.op {
                    Op::Copy(c) => match c.from {
                        Some(CopyFrom::Stage { index }) => {
                            stage_last.get(index).copied().into_iter().collect()
                        }
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                let paths = local_paths(step);
                let owners = matches!(&step.op, Op::Copy(c) | Op::Add(c) if c.preserve_owners);
                let content = match (&mut hasher, paths.is_empty()) {
                    (Some(h), false) => Some(h.digest_with(&paths, owners)?),
                    _ => None,
                };
                let definition = serde_json::to_value(&step.op).unwrap_or(Value::Null);
                let dep_ids: Vec<&Digest> = deps.iter().map(|d| &nodes[*d].id).collect();
                let id = node_id(
                    Some(&nodes[previous].id),
                    &dep_ids,
                    &definition,
                    &step.build_args,
                    content.as_ref(),
                );
                nodes.push(Node {
                    id,
                    kind: if step.is_layer() {
                        NodeKind::Layer
                    } else {
                        NodeKind::Config
                    },
                    stage: stage.index,
                    parent: Some(previous),
                    deps,
                    line: Some(step.line),
                    location: None,
                    label: label_of(&step.op, &stage_names),
                    definition,
                    build_args: step.build_args.clone(),
                    content,
                    step: NodeStep::Step {
                        index,
                        op: step.op.clone(),
                        span: step.span,
                    },
                });
                previous = nodes.len() - 1;
            }
            stage_last.push(previous);
            stages.push(StagePlan {
                index: stage.index,
                nodes: first..previous + 1,
            });
        }
        let parent = stage_last.last().copied();
        let definition = json!({
            "op": "image",
            "image": target.image,
        });
        let id = node_id(
            parent.map(|p| &nodes[p].id),
            &[],
            &definition,
            &BTreeMap::new(),
            None,
        );
        nodes.push(Node {
            id,
            kind: NodeKind::Image,
            stage: target.stages.len().saturating_sub(1),
            parent,
            deps: Vec::new(),
            line: None,
            location: None,
            label: format!("image {}", target.platform),
            definition,
            build_args: BTreeMap::new(),
            content: None,
            step: NodeStep::Image(target.image.clone()),
        });
        targets.push(TargetPlan {
            platform: target.platform.clone(),
            image: nodes.len() - 1,
            nodes,
            stages,
        });
    }
    Ok(Plan { targets })
}

/// Sets every instruction node's [`Node::location`] from `source`, the file it came from.
pub fn locate(plan: &mut Plan, source: &crate::source::SourceFile) {
    for node in plan.targets.iter_mut().flat_map(|t| t.nodes.iter_mut()) {
        let span = match &node.step {
            NodeStep::From { span, .. } | NodeStep::Step { span, .. } => *span,
            NodeStep::Image(_) => continue,
        };
        let at = source.line_col(span.start);
        node.location = Some(format!("{}:{}:{}", source.name(), at.line, at.column));
    }
}

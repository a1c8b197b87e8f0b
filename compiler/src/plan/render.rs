//! Renders a [`Plan`] as text (for people), JSON (for tools) and Graphviz DOT (for pictures).
//!
//! The three views show the same data: per platform, the stages with their nodes in build
//! order, each node's kind, short id (the first 12 hex digits of its identity), summary,
//! Kubefile line, used build arguments, content digest and `COPY --from` dependencies.

use super::{Node, NodeKind, Plan};
use chasi_oci::Digest;
use std::fmt::Write;

fn short(id: &Digest) -> String {
    id.hex()[..12].to_string()
}

fn kind_str(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Base => "base",
        NodeKind::Layer => "layer",
        NodeKind::Config => "config",
        NodeKind::Image => "image",
    }
}

fn details(node: &Node, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(line) = node.line {
        out.push(format!("line {line}"));
    }
    if !node.build_args.is_empty() {
        let args: Vec<String> = node
            .build_args
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => format!("{k} (unset)"),
            })
            .collect();
        out.push(format!("args {}", args.join(" ")));
    }
    if let Some(content) = &node.content {
        out.push(format!("content {}", short(content)));
    }
    for dep in &node.deps {
        out.push(format!("reads {prefix}{dep}"));
    }
    out
}

/// The plan as aligned text: one block per platform, one line per node.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    for (t, target) in plan.targets.iter().enumerate() {
        if t > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "platform {}", target.platform);
        let width = target
            .nodes
            .iter()
            .map(|n| n.label.chars().count())
            .max()
            .unwrap_or(0);
        let mut stage = usize::MAX;
        for (i, node) in target.nodes.iter().enumerate() {
            if node.kind != NodeKind::Image && node.stage != stage {
                stage = node.stage;
                let _ = writeln!(out, "  stage {stage}");
            }
            let detail = details(node, "#");
            let line = format!(
                "    #{i:<3} {}  {:<6}  {:<width$}  {}",
                short(&node.id),
                kind_str(node.kind),
                node.label,
                detail.join(", "),
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let image = &target.nodes[target.image];
        let _ = writeln!(out, "  image {}", image.id);
    }
    out
}

/// The plan as pretty JSON (`{"targets":[{"platform":…,"nodes":[…],"image":N}]}`).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|_| "{}".into())
}

fn dot_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The plan as a Graphviz digraph: a cluster per platform and per stage, solid edges for
/// the parent chain, dashed edges for `COPY --from`.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::from(
        "digraph plan {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    for (t, target) in plan.targets.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_t{t} {{");
        let _ = writeln!(
            out,
            "    label=\"{}\";",
            dot_escape(&target.platform.to_string())
        );
        let mut stages: Vec<usize> = target
            .nodes
            .iter()
            .filter(|n| n.kind != NodeKind::Image)
            .map(|n| n.stage)
            .collect();
        stages.dedup();
        for stage in stages {
            let _ = writeln!(out, "    subgraph cluster_t{t}_s{stage} {{");
            let _ = writeln!(out, "      label=\"stage {stage}\"; style=rounded;");
            for (i, node) in target.nodes.iter().enumerate() {
                if node.kind == NodeKind::Image || node.stage != stage {
                    continue;
                }
                let shape = match node.kind {
                    NodeKind::Base => ", shape=house",
                    NodeKind::Config => ", style=dashed",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "      t{t}n{i} [label=\"{}\\n{} {}\"{shape}];",
                    dot_escape(&node.label),
                    kind_str(node.kind),
                    short(&node.id)
                );
            }
            out.push_str("    }\n");
        }
        let image = &target.nodes[target.image];
        let _ = writeln!(
            out,
            "    t{t}n{} [label=\"{}\\n{}\", shape=doubleoctagon];",
            target.image,
            dot_escape(&image.label),
            short(&image.id)
        );
        out.push_str("  }\n");
        for (i, node) in target.nodes.iter().enumerate() {
            if let Some(p) = node.parent {
                let _ = writeln!(out, "  t{t}n{p} -> t{t}n{i};");
            }
            for d in &node.deps {
                let _ = writeln!(
                    out,
                    "  t{t}n{d} -> t{t}n{i} [style=dashed, label=\"--from\"];"
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

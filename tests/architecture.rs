//! Keeps `ARCHITECTURE.md` true where a machine can tell: every repository path it writes in
//! backticks exists, every crate it names in backticks is a workspace crate, and the crate
//! dependencies it states are exactly the path dependencies in the crates' `Cargo.toml` files.
//!
//! The document's conventions this test relies on:
//! - a backticked word made only of path characters (`A-Z a-z 0-9 _ . - + /`) that contains a
//!   `/` or ends in a source-file extension is a path relative to the repository root
//!   (a leading `./` is allowed); write other slashed words (platforms, store files such as
//!   `<store>/refs/`) so that they contain another character, or without backticks;
//! - a line whose first word is a workspace crate followed by `→` states that crate's
//!   complete list of workspace dependencies, comma-separated, or `(none)`; every workspace
//!   crate has exactly one such line.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const EXTENSIONS: &[&str] = &[".rs", ".sh", ".md", ".toml", ".pest", ".json", ".lock"];

/// Workspace crate → its normal path dependencies that are workspace crates.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The dependency graph of the workspace, from `cargo metadata` (which reads every
/// member's `[dependencies]`, workspace-inherited ones resolved).
fn workspace_graph() -> Graph {
    let m = common::cargo_metadata(&["--no-deps"]);
    let packages = m["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let mut graph = Graph::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let deps = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null() && d["path"].is_string())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| names.contains(*d))
            .map(str::to_string)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// Every backticked span of the document, with its 1-based line number.
fn backticked(doc: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            out.push((n + 1, inside));
        }
    }
    out
}

fn looks_like_path(word: &str) -> bool {
    let path_chars = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-+/".contains(c));
    let pathy = word.contains('/') || EXTENSIONS.iter().any(|e| word.ends_with(e));
    path_chars && pathy && !word.starts_with('/') && !word.starts_with('-')
}

/// Paths the document names that do not exist below `root`.
fn missing_paths(doc: &str, root: &Path) -> Vec<String> {
    backticked(doc)
        .into_iter()
        .filter(|(_, w)| looks_like_path(w))
        .filter(|(_, w)| !root.join(w.trim_start_matches("./")).exists())
        .map(|(n, w)| format!("line {n}: `{w}` does not exist"))
        .collect()
}

/// Backticked `chasi…` words that look like crate names but are not workspace crates.
fn unknown_crates(doc: &str, graph: &Graph) -> Vec<String> {
    backticked(doc)
        .into_iter()
        .filter(|(_, w)| {
            w.starts_with("chasi-") && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .filter(|(_, w)| !graph.contains_key(*w))
        .map(|(n, w)| format!("line {n}: `{w}` is not a workspace crate"))
        .collect()
}

/// The dependency statements of the document, or the problems found reading them.
fn stated_graph(doc: &str, graph: &Graph) -> Result<Graph, Vec<String>> {
    let mut stated = Graph::new();
    let mut problems = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        let Some((left, right)) = line.split_once('→') else {
            continue;
        };
        let left = left.trim().trim_matches('`');
        if !graph.contains_key(left) {
            continue;
        }
        if right.contains('→') {
            problems.push(format!(
                "line {}: write one `crate → deps` statement per line",
                n + 1
            ));
            continue;
        }
        let deps: BTreeSet<String> = if right.trim() == "(none)" {
            BTreeSet::new()
        } else {
            right
                .split(',')
                .map(|d| d.trim().trim_matches('`').to_string())
                .collect()
        };
        if stated.insert(left.to_string(), deps).is_some() {
            problems.push(format!("line {}: a second statement for {left}", n + 1));
        }
    }
    for name in graph.keys() {
        if !stated.contains_key(name) {
            problems.push(format!("no `{name} → …` statement"));
        }
    }
    if problems.is_empty() {
        Ok(stated)
    } else {
        Err(problems)
    }
}

/// Differences between the stated and the real dependencies.
fn wrong_arrows(doc: &str, graph: &Graph) -> Vec<String> {
    let stated = match stated_graph(doc, graph) {
        Ok(s) => s,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for (name, real) in graph {
        let said = &stated[name];
        for d in said.difference(real) {
            problems.push(format!("{name} → {d} is stated but not in its Cargo.toml"));
        }
        for d in real.difference(said) {
            problems.push(format!("{name} → {d} is in its Cargo.toml but not stated"));
        }
    }
    problems
}

fn architecture_md() -> String {
    let path = root().join("ARCHITECTURE.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn every_path_in_architecture_md_exists() {
    let problems = missing_paths(&architecture_md(), root());
    assert!(problems.is_empty(), "ARCHITECTURE.md: {problems:#?}");
}

#[test]
fn every_crate_in_architecture_md_exists() {
    let problems = unknown_crates(&architecture_md(), &workspace_graph());
    assert!(problems.is_empty(), "ARCHITECTURE.md: {problems:#?}");
}

#[test]
fn architecture_md_states_the_real_crate_dependencies() {
    let problems = wrong_arrows(&architecture_md(), &workspace_graph());
    assert!(problems.is_empty(), "ARCHITECTURE.md: {problems:#?}");
}

/// The checks themselves catch what they are for: an absent path, a wrong, missing or
/// unparseable arrow, an invented crate.
#[test]
fn the_checks_fail_on_wrong_documents() {
    let doc = "`kubefiles/` and `builder/src/nope.rs`, not `<store>/refs/` or `os/arch[/variant]`.";
    assert_eq!(missing_paths(doc, root()).len(), 2, "{doc}");
    assert!(missing_paths("`./scripts/test`, `layers/`, `Cargo.toml`", root()).is_empty());

    let graph: Graph = [("a", vec!["b"]), ("b", vec![]), ("chasi-x", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect();
    let right = "`a` → `b`\n`b` → (none)\n`chasi-x` → (none)\n";
    assert!(wrong_arrows(right, &graph).is_empty());
    let extra = "`a` → `b`, `chasi-x`\n`b` → (none)\n`chasi-x` → (none)\n";
    assert_eq!(wrong_arrows(extra, &graph).len(), 1);
    let missing_dep = "`a` → (none)\n`b` → (none)\n`chasi-x` → (none)\n";
    assert_eq!(wrong_arrows(missing_dep, &graph).len(), 1);
    let missing_line = "`a` → `b`\n`b` → (none)\n";
    assert_eq!(wrong_arrows(missing_line, &graph).len(), 1);
    let chained = "`a` → `b` → `chasi-x`\n`b` → (none)\n`chasi-x` → (none)\n";
    assert!(!wrong_arrows(chained, &graph).is_empty());

    assert_eq!(unknown_crates("`chasi-x` and `chasi-y`", &graph).len(), 1);
}

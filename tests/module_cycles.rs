//! Keeps the imports between a crate's top-level modules running one way: a module never
//! imports, directly or through others, a module that imports it. Read from the source text:
//! every `super::NAME` / `crate::NAME` path (and each first name of a `super::{…}` group) in a
//! top-level module's code, comments and `#[cfg(test)]` blocks left out.
//!
//! The crates listed in `CHECKED` are checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Source directories whose top-level modules must not import each other in a circle.
const CHECKED: &[&str] = &[
    "oci/src",
    "layers/src",
    "images/src",
    "compiler/src",
    "runtime/src",
    "formats/src",
    "builder/src",
    "tar/src",
    "delta/src",
    "registry/src",
    "detect/src",
    "src",
];

/// Module → the sibling modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The code of a module file: comment lines and everything from `#[cfg(test)]` on removed.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first names of the items of a `{…}` group starting at `s` (just after `{`).
fn group_names(s: &str) -> Vec<String> {
    let mut depth = 0;
    let mut names = Vec::new();
    let mut item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                names.push(ident(&s[i..]).to_string());
                item_start = false;
            }
            _ => {}
        }
    }
    names
}

/// The sibling modules `code` names through `super::` or `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["super::", "crate::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            match rest.strip_prefix('{') {
                Some(group) => out.extend(group_names(group)),
                None => {
                    out.insert(ident(rest).to_string());
                }
            }
        }
    }
    out
}

/// The import graph of the top-level modules under `dir` (`x.rs` and `x/mod.rs`).
fn module_graph(dir: &Path) -> Graph {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let file = if path.is_dir() {
            path.join("mod.rs")
        } else if path.extension().is_some_and(|e| e == "rs") {
            path.clone()
        } else {
            continue;
        };
        if file.is_file() && stem != "lib" && stem != "main" {
            files.insert(stem.to_string(), file);
        }
    }
    let mut graph = Graph::new();
    for (name, file) in &files {
        let text = std::fs::read_to_string(file).expect("a readable module");
        let deps = imports(&code(&text))
            .into_iter()
            .filter(|d| d != name && files.contains_key(d))
            .collect();
        graph.insert(name.clone(), deps);
    }
    graph
}

/// One cycle of `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_import_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in CHECKED {
        let graph = module_graph(&root.join(dir));
        assert!(graph.len() >= 3, "{dir}: too few modules found: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{dir}: modules import each other: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_reader_sees_groups_and_cycles() {
    let text =
        "use super::a::X;\nuse crate::{b::{Y, Z}, c};\n// super::d\n#[cfg(test)]\nuse super::e;";
    let found: Vec<String> = imports(&code(text)).into_iter().collect();
    assert_eq!(found, ["a", "b", "c"]);
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

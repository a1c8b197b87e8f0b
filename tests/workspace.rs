//! The workspace's declared `rust-version` stays true: every crate inherits it, no locked
//! dependency needs a newer toolchain, and no std API newer than it is used. Only one toolchain
//! can be installed on our machines, so this replaces building with the old one.

mod common;

use std::path::Path;

/// `1.89` and `1.89.0` are the same version.
fn version(v: &str) -> [u32; 3] {
    let mut out = [0; 3];
    for (slot, part) in out.iter_mut().zip(v.split('.')) {
        *slot = part.parse().unwrap_or(0);
    }
    out
}

fn metadata() -> serde_json::Value {
    common::cargo_metadata(&[])
}

#[test]
fn rust_version_is_inherited_and_covers_every_dependency() {
    let m = metadata();
    let members: Vec<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let packages = m["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "chasi")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the chasi package declares rust-version");
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let declared = p["rust_version"].as_str();
        if members.contains(&p["id"].as_str().unwrap_or("")) {
            assert_eq!(
                declared,
                Some(ours),
                "crate {name} must inherit the workspace rust-version"
            );
        } else if let Some(v) = declared {
            assert!(
                version(v) <= version(ours),
                "dependency {name} {} needs Rust {v}, newer than the workspace's {ours}: raise rust-version",
                p["version"].as_str().unwrap_or("")
            );
        }
    }
}

/// std APIs stabilised after the declared version (a tripwire, not a complete list).
const NEWER_STD: &[(&str, &str)] = &[
    ("file_prefix(", "1.91"),
    ("ceil_char_boundary(", "1.91"),
    ("floor_char_boundary(", "1.91"),
    ("Duration::from_mins(", "1.91"),
    ("Duration::from_hours(", "1.91"),
];

#[test]
fn no_std_api_newer_than_rust_version() {
    let m = metadata();
    let ours = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "chasi")
        .and_then(|p| p["rust_version"].as_str())
        .unwrap()
        .to_string();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(p);
                }
            } else if name.ends_with(".rs") && p != Path::new(file!()) && !p.ends_with(file!()) {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for (api, since) in NEWER_STD {
                    // A function of our own with that name is not the std API.
                    let own = api.rsplit("::").next().unwrap_or(api).trim_end_matches('(');
                    let defined_here = text.contains(&format!("fn {own}("));
                    if version(since) > version(&ours) && text.contains(api) && !defined_here {
                        found.push(format!("{}: {api} (Rust {since})", p.display()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "std APIs newer than rust-version {ours}: {found:?}"
    );
}

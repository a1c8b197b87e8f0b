//! Keeps `docs/diagnostics.md` identical to the code table in `diagnostics.rs`.
//! Run with `UPDATE_DOCS=1` to regenerate the file after adding a code.

use chasi_compiler::diagnostics::code_table_markdown;

const HEADER: &str = "# Diagnostic codes\n\n\
Every problem `chasi check` reports carries one of these stable codes.\n\
A code never changes meaning once released; new problems get new codes.\n\
Errors make `chasi check` exit 1, warnings do not.\n\
This file is generated from `compiler/src/diagnostics.rs` (`UPDATE_DOCS=1 cargo test -p chasi-compiler --test docs`).\n\n";

#[test]
fn diagnostics_doc_matches_code_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/diagnostics.md");
    let expected = format!("{HEADER}{}", code_table_markdown());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &expected).expect("write docs/diagnostics.md");
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/diagnostics.md is out of date: run UPDATE_DOCS=1 cargo test -p chasi-compiler --test docs"
    );
}

//! Fuzz target: any bytes through `parse_bytes`, `compile` and both renderers must not panic.
#![no_main]

use chasi_compiler::syntax::parse_bytes;
use chasi_compiler::{compile, render, CompileOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, parse) = parse_bytes("Kubefile", data);
    let _ = render::human(&source, &parse.diagnostics);
    let _ = render::json(&source, &parse.diagnostics);
    if let Ok(compiled) = compile(&source, &CompileOptions::default()) {
        let _ = render::human(&source, &compiled.diagnostics);
    }
});

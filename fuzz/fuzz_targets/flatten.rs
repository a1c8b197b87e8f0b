//! Fuzz target: any one or two layers ingested into a store must flatten without a panic, and
//! the flattened tar must apply cleanly. Input: a byte `n`, then layer bytes; with `n` odd the
//! rest is split at `n` into two layers (a stack, so whiteouts and replacements cross layers).
//! A layer whose first byte is 0 is a hostile-entry script (see `layers/tests/hostile`), else a
//! raw tar.
#![no_main]

#[path = "../../layers/tests/hostile/mod.rs"]
mod hostile;

use chasi_layers::apply::apply_layer;
use chasi_layers::{ApplyOptions, Store};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static STORE: (tempfile::TempDir, Store) = {
        let t = tempfile::tempdir().expect("tempdir");
        let s = Store::open(t.path().join("store")).expect("store");
        (t, s)
    };
}

fn layer_bytes(data: &[u8]) -> Vec<u8> {
    match data.split_first() {
        Some((0, script)) => hostile::tar_from_script(script, "tmp/canary"),
        _ => data.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let parts: Vec<&[u8]> = if n % 2 == 1 && usize::from(n) < rest.len() {
        let (a, b) = rest.split_at(usize::from(n));
        vec![a, b]
    } else {
        vec![rest]
    };
    STORE.with(|(t, s)| {
        let mut layers = Vec::new();
        for p in parts {
            match s.ingest_tar(&layer_bytes(p)[..]) {
                Ok(info) => layers.push(info.diff_id),
                Err(_) => return,
            }
        }
        let mut flat = Vec::new();
        if s.flatten(&layers, &mut flat).is_err() {
            return;
        }
        let out = tempfile::tempdir_in(t.path()).expect("tempdir");
        let opts = ApplyOptions {
            chown: false,
            devices: false,
            xattrs: false,
            only: Vec::new(),
        };
        if let Err(e) = apply_layer(&flat[..], out.path(), &opts, "flattened") {
            panic!("a flattened tar does not apply: {e}");
        }
    });
});

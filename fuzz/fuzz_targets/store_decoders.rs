//! Fuzz target: the layer store's decoders (pack index, layer index, `layout.json`, the bounded JSON reader) must
//! not panic on any bytes, and a pack index that decodes must re-encode to the same bytes.
#![no_main]

use chasi_layers::pack::PackIndex;
use chasi_layers::{json, Digest, LayerIndex, Layout};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("fuzz");
    if let Ok(idx) = PackIndex::decode(data, p) {
        let _ = idx.frames();
        assert_eq!(idx.encode(), data);
    }
    // The same bytes with a valid trailing checksum, so that the field checks behind it are reached too.
    if data.len() > 32 {
        let mut fixed = data[..data.len() - 32].to_vec();
        let sum = Digest::of(&fixed);
        fixed.extend_from_slice(&sum.0);
        if let Ok(idx) = PackIndex::decode(&fixed, p) {
            assert_eq!(idx.encode(), fixed);
        }
    }
    let _ = LayerIndex::decode(data, p);
    let _ = Layout::parse(data, p);
    let _ = json::parse::<serde_json::Value>(data, json::MAX_DOC, "document", p);
});

//! Fuzz target: a delta's decoders (the binary layer index, the config JSON) on any bytes: an error or a
//! value, never a panic or an allocation beyond the input.
#![no_main]

use chasi_delta::format::{DeltaConfig, LayerIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = LayerIndex::decode(data, "fuzz") {
        assert_eq!(LayerIndex::decode(&index.encode(), "fuzz").ok(), Some(index));
    }
    let _ = chasi_oci::json::parse_document::<DeltaConfig>(data, "delta config", &"fuzz");
});

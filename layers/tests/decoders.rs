//! The store's decoders (pack index, layer index, `layout.json`, the bounded JSON reader) over thousands of mutated
//! inputs: never a panic, a clear error or a value, and a pack index that decodes re-encodes to the same bytes. The
//! same decoders are the cargo-fuzz target `fuzz/fuzz_targets/store_decoders.rs`; this runs in the default suite.

mod common;

use chasi_layers::pack::PackIndex;
use chasi_layers::{json, Digest, LayerIndex, Layout, Store, TarOptions};
use std::fs;
use std::path::Path;

/// xorshift64: deterministic, so a failure names a reproducible case.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits: flip, overwrite with a structural byte, insert, delete a range, duplicate a range,
/// truncate.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const SPECIAL: &[u8] = b"{}[]\",:0-9eE\\\x00\xff";
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len() + 1);
        match rng.below(6) {
            0 if at < d.len() => d[at] ^= 1 << rng.below(8),
            1 if at < d.len() => d[at] = SPECIAL[rng.below(SPECIAL.len())],
            2 => d.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            3 => {
                let end = (at + rng.below(64)).min(d.len());
                d.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(64)).min(d.len());
                let copy = d[at..end].to_vec();
                d.splice(at..at, copy);
            }
            _ => d.truncate(at),
        }
    }
    d
}

/// The same bytes with a valid trailing checksum, so that the pack index's field checks are reached.
fn with_checksum(d: &[u8]) -> Vec<u8> {
    let mut body = d[..d.len().saturating_sub(32)].to_vec();
    let sum = Digest::of(&body);
    body.extend_from_slice(&sum.0);
    body
}

fn decode_all(data: &[u8]) {
    let p = Path::new("mutant");
    if let Ok(idx) = PackIndex::decode(data, p) {
        let _ = idx.frames();
        assert_eq!(
            idx.encode(),
            data,
            "a decoded pack index re-encodes to its bytes"
        );
    }
    if let Err(e) = LayerIndex::decode(data, p) {
        assert!(e.to_string().contains("mutant"), "{e}");
    }
    if let Err(e) = Layout::parse(data, p) {
        assert!(e.to_string().contains("mutant"), "{e}");
    }
    let _ = json::parse::<serde_json::Value>(data, json::MAX_DOC, "document", p);
}

#[test]
fn store_decoders_survive_thousands_of_mutations() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let s = Store::open_with_layout(&root, common::small_layout()).unwrap();
    common::make_tree(&t.path().join("src"), 9, 12);
    let l = s
        .ingest_dir(&t.path().join("src"), &TarOptions::default())
        .unwrap();
    let first = |dir: &str, ext: &str| {
        fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .map(|p| fs::read(p).unwrap())
            .unwrap()
    };
    let seeds = [
        first("packs", "idx"),
        fs::read(
            root.join("layers")
                .join(format!("{}.json", l.diff_id.hex())),
        )
        .unwrap(),
        fs::read(root.join("layout.json")).unwrap(),
    ];
    // The seeds themselves decode.
    let p = Path::new("seed");
    PackIndex::decode(&seeds[0], p).unwrap();
    assert_eq!(LayerIndex::decode(&seeds[1], p).unwrap().diff_id, l.diff_id);
    Layout::parse(&seeds[2], p).unwrap();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (i, seed) in seeds.iter().enumerate() {
        for n in 0..1500 {
            let m = mutate(&mut rng, seed);
            let res = std::panic::catch_unwind(|| {
                decode_all(&m);
                decode_all(&with_checksum(&m));
            });
            assert!(res.is_ok(), "seed {i}, mutation {n} panicked: {m:?}");
        }
    }
    // Hostile shapes: deep nesting, huge counts, empty input.
    let deep = format!(
        "{{\"chunks\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = LayerIndex::decode(deep.as_bytes(), p).unwrap_err();
    assert!(e.to_string().contains("nested deeper than 64"), "{e}");
    let e = Layout::parse(deep.as_bytes(), p).unwrap_err();
    assert!(e.to_string().contains("nested deeper than 64"), "{e}");
    let mut huge = seeds[0][..56].to_vec();
    huge[48..56].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(PackIndex::decode(&with_checksum(&[huge, vec![0; 32]].concat()), p).is_err());
    decode_all(b"");
}

//! An image's hooks and tree summary, read two ways (the store's flattened view for apply, the layer
//! scan for a dry run), which must agree: name order, executables only, later layers and whiteouts win,
//! a symlinked hook refused.

mod common;

use chasi_layers::{Digest, Store};
use chasi_runtime::content::{Content, HookPhase, LayerInput};
use common::*;

fn both(
    store: &Store,
    layers: &[Digest],
) -> (
    chasi_runtime::Result<Content>,
    chasi_runtime::Result<Content>,
) {
    let exact = Content::from_store(store, layers, 4096);
    let inputs = layers
        .iter()
        .map(|d| LayerInput {
            diff_id: *d,
            reader: Some(Box::new(store.open_layer(d).unwrap()) as Box<dyn std::io::Read>),
            tar_size: 0,
        })
        .collect();
    (exact, Content::scan(inputs, 4096))
}

fn ingest(store: &Store, tars: &[Vec<u8>]) -> Vec<Digest> {
    tars.iter()
        .map(|t| store.ingest_tar(&t[..]).unwrap().diff_id)
        .collect()
}

#[test]
fn hooks_are_executables_in_name_order_and_later_layers_win() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("s")).unwrap();
    let d = "etc/chasi/hooks/pre-check.d";
    let lower = hooks(&[
        ("pre-check", "20-b", "#!/bin/sh\necho lower\n"),
        ("pre-check", "30-gone", "#!/bin/sh\n"),
        ("post-verify", "10-p", "#!/bin/sh\n"),
    ]);
    let upper = tar(&[
        Item::Dir("etc"),
        Item::Dir("etc/chasi"),
        Item::Dir("etc/chasi/hooks"),
        Item::Dir(d),
        Item::Exec(&format!("{d}/20-b"), "#!/bin/sh\necho upper\n"),
        Item::Exec(&format!("{d}/10-a"), "#!/bin/sh\n"),
        Item::Whiteout(&format!("{d}/.wh.30-gone")),
        Item::File(&format!("{d}/README"), b"not a hook\n".to_vec()),
        Item::Dir(&format!("{d}/subdir")),
        Item::Exec(&format!("{d}/.hidden"), "#!/bin/sh\n"),
    ]);
    let layers = ingest(&store, &[lower, upper]);
    let (exact, scanned) = both(&store, &layers);
    let (exact, scanned) = (exact.unwrap(), scanned.unwrap());
    let names = |c: &Content, p| {
        c.hooks(p)
            .iter()
            .map(|h| h.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&exact, HookPhase::PreCheck), ["10-a", "20-b"]);
    assert_eq!(names(&exact, HookPhase::PostVerify), ["10-p"]);
    assert_eq!(exact.pre_check[1].data, b"#!/bin/sh\necho upper\n");
    assert_eq!(exact.pre_check, scanned.pre_check);
    assert_eq!(exact.post_verify, scanned.post_verify);
    assert_eq!((exact.files, exact.bytes), (scanned.files, scanned.bytes));
    assert!(!scanned.estimated);
}

#[test]
fn a_symlinked_hook_is_refused_by_both_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("s")).unwrap();
    let layer = tar(&[
        Item::Dir("etc"),
        Item::Dir("etc/chasi"),
        Item::Dir("etc/chasi/hooks"),
        Item::Dir("etc/chasi/hooks/post-verify.d"),
        Item::Link("etc/chasi/hooks/post-verify.d/10-x", "/bin/true"),
    ]);
    let layers = ingest(&store, &[layer]);
    let (exact, scanned) = both(&store, &layers);
    for r in [exact, scanned] {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("post-verify.d/10-x") && e.contains("not a regular file"),
            "{e}"
        );
    }
}

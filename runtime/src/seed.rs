//! The node state a disk exported with `chasi export --slots ab` starts with, written into its data
//! partition: a store holding the image (imported by the same path `apply` takes, so every blob and
//! DiffID is checked), so the first delta applies against it, and a table whose slot `a` holds it,
//! confirmed. No history line: an export must stay a pure function of the image.

use crate::error::{NodeError, Result};
use crate::slots::{slot_ref, SlotId, INCOMING_REF};
use crate::source::Source;
use crate::state::{ImageRecord, NodePaths, SlotRecord, SlotState, SlotTable};
use chasi_layers::Store;
use chasi_oci::Platform;
use std::path::Path;

/// Writes the state of a node whose slot `a` runs the image at `source` (an OCI layout or archive) into
/// `state` (the future `/var/lib/chasi-node`); returns the image as the table records it.
pub fn seed_state(state: &Path, source: &Path, platform: &Platform) -> Result<ImageRecord> {
    let paths = NodePaths {
        root: state.to_path_buf(),
        state: state.to_path_buf(),
    };
    paths.create()?;
    let store = Store::open(paths.store())?;
    let src = Source::find(source)?;
    let plan = src.plan(&store, platform)?;
    if plan.base.is_some() {
        return Err(NodeError::BadSource {
            path: source.to_path_buf(),
            reason: "a delta cannot be the first image of a node".into(),
        });
    }
    src.import(&store, &plan)?;
    store.set_ref(&slot_ref(SlotId::A), &plan.image.manifest)?;
    store.delete_ref(INCOMING_REF)?;
    let table = SlotTable {
        a: SlotRecord {
            state: SlotState::Good,
            image: Some(plan.image.clone()),
        },
        ..SlotTable::default()
    };
    table.save(&paths.table())?;
    Ok(plan.image)
}

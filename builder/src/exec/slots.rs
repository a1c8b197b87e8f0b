//! What stages hand each other: a finished stage, and the slot its thread leaves it in.
//!
//! Its own module so that the scheduler (which makes the slots), a stage (which fills its own
//! and waits on others) and the step executors (which read a `COPY --from` stage) depend on it,
//! and not on each other.

use crate::error::{BuildError, Result};
use crate::rootfs::WorkRoot;
use crate::state::ImageState;
use chasi_layers::Digest;
use std::sync::{Arc, Mutex, OnceLock};

/// The finished state of one stage.
pub(super) struct StageDone {
    pub(super) state: ImageState,
    pub(super) key: Digest,
    pub(super) root: Mutex<WorkRoot>,
}

/// Where a stage's thread leaves its result: the finished stage, or its index on failure.
pub(super) type StageSlot = OnceLock<std::result::Result<Arc<StageDone>, usize>>;

/// Waits for stage `index` (read by stage `me`).
pub(super) fn wait_stage(slots: &[StageSlot], me: usize, index: usize) -> Result<Arc<StageDone>> {
    let slot = slots.get(index).ok_or(BuildError::StageMissing { index })?;
    match slot.wait() {
        Ok(done) => Ok(done.clone()),
        Err(_) => Err(BuildError::DependencyFailed {
            stage: me,
            dependency: index,
        }),
    }
}

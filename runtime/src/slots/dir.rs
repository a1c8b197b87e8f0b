//! Directory slots: `slots/a` and `slots/b` beside a `current` symlink naming the active one, for
//! platform payload on an existing OS and for tests without root.
//!
//! The switch writes the new link under a temporary name and renames it over `current` (`rename(2)` is
//! atomic), then syncs the directory: after a crash `current` names the old slot or the new one. A slot is
//! staged by removing its tree (never following a symlink: `remove_dir_all` unlinks links), unpacking the
//! layers through the store's safe apply, then `syncfs` before the engine records it complete.

use super::{show, SlotId, Slots, Space, StageReport};
use crate::error::{IoCtx, NodeError, Result};
use crate::fsutil;
use crate::verify::{self, VerifyReport};
use chasi_layers::{ApplyOptions, Digest, Store};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The name of the link to the active slot.
pub const CURRENT: &str = "current";

/// Directory slots under one directory.
#[derive(Debug)]
pub struct DirSlots {
    dir: PathBuf,
    apply: ApplyOptions,
}

impl DirSlots {
    /// The slots under `dir` (created with `a` and `b` when missing).
    pub fn open(dir: &Path) -> Result<DirSlots> {
        for s in [SlotId::A, SlotId::B] {
            let p = dir.join(s.name());
            fs::create_dir_all(&p).ctx("create slot", &p)?;
        }
        Ok(DirSlots {
            dir: dir.to_path_buf(),
            apply: ApplyOptions::default(),
        })
    }

    fn current(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    fn link(&self, target: &str) -> Result<()> {
        let tmp = self
            .dir
            .join(format!(".{CURRENT}.tmp-{}", std::process::id()));
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NodeError::io("remove", &tmp, e));
            }
            _ => {}
        }
        std::os::unix::fs::symlink(target, &tmp).ctx("create link", &tmp)?;
        fs::rename(&tmp, self.current()).ctx("switch link", &self.current())?;
        fsutil::sync_dir(&self.dir)
    }
}

impl Slots for DirSlots {
    fn kind(&self) -> &'static str {
        "directory"
    }

    fn active(&self) -> Result<Option<SlotId>> {
        let cur = self.current();
        match fs::read_link(&cur) {
            Ok(t) => {
                let name = t.to_string_lossy();
                SlotId::parse(&name).map(Some).ok_or_else(|| {
                    NodeError::bad_state(&cur, format!("points at {name:?}, not at a or b"))
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io("read link", &cur, e)),
        }
    }

    fn booted(&self) -> Result<Option<SlotId>> {
        self.active()
    }

    fn slot_dir(&self, slot: SlotId) -> PathBuf {
        self.dir.join(slot.name())
    }

    fn space(&self, slot: SlotId) -> Result<Space> {
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(|e| NodeError::io("statvfs", &self.dir, e.into()))?;
        let block = st.f_frsize.max(512);
        Ok(Space {
            path: self.dir.clone(),
            available: st.f_bavail.saturating_mul(block),
            reclaimable: disk_usage(&self.slot_dir(slot))?,
            block,
        })
    }

    fn stage(&mut self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<StageReport> {
        let dir = self.slot_dir(slot);
        if self.active()? == Some(slot) {
            return Err(NodeError::Slot {
                slot,
                detail: "refusing to stage the active slot".into(),
            });
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(NodeError::io("empty slot", &dir, e));
            }
            _ => {}
        }
        fs::create_dir(&dir).ctx("create slot", &dir)?;
        let stats = store.unpack(layers, &dir, &self.apply)?;
        let f = File::open(&dir).ctx("open", &dir)?;
        rustix::fs::syncfs(&f).map_err(|e| NodeError::io("sync file system of", &dir, e.into()))?;
        Ok(StageReport::from(&stats))
    }

    fn switch(&mut self, slot: SlotId) -> Result<()> {
        self.link(slot.name())
    }

    fn rollback(&mut self, to: Option<SlotId>) -> Result<()> {
        match to {
            Some(s) => self.link(s.name()),
            None => fsutil::remove_durably(&self.current()),
        }
    }

    fn confirm(&mut self, _slot: SlotId) -> Result<()> {
        // A directory slot runs as soon as it is switched to: there is no try to count.
        Ok(())
    }

    fn verify(&self, slot: SlotId, store: &Store, layers: &[Digest]) -> Result<VerifyReport> {
        let dir = self.slot_dir(slot);
        if !dir.is_dir() {
            return Err(NodeError::Slot {
                slot,
                detail: format!("{} is not a directory", show(&dir)),
            });
        }
        verify::compare(store, layers, &dir, &self.apply)
    }
}

/// Bytes a tree occupies (allocated blocks, each inode once), never following a symlink.
fn disk_usage(root: &Path) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(NodeError::io("stat", &p, e)),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
        if meta.is_dir() {
            for e in fs::read_dir(&p).ctx("read directory", &p)? {
                stack.push(e.ctx("read directory", &p)?.path());
            }
        }
    }
    Ok(total)
}

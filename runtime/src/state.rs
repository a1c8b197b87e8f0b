//! The node's state files under `ROOT/var/lib/chasi-node/`: where they are, the slot table, the journal
//! of the apply in progress and the history. Formats are in the crate documentation.

use crate::error::{IoCtx, NodeError, Result};
use crate::fsutil;
use crate::slot::SlotId;
use chasi_layers::Digest;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The version of `slots.json` and `journal.json` this runtime writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// Largest state file read (the table and the journal are a few KiB).
const MAX_STATE_BYTES: u64 = 1 << 20;

/// The paths of a node's state.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// The `--root` (`/` on a real node).
    pub root: PathBuf,
    /// `ROOT/var/lib/chasi-node`.
    pub state: PathBuf,
}

impl NodePaths {
    /// The paths of the node rooted at `root`.
    pub fn new(root: &Path) -> NodePaths {
        NodePaths {
            root: root.to_path_buf(),
            state: root.join("var/lib/chasi-node"),
        }
    }
    /// The chasi store.
    pub fn store(&self) -> PathBuf {
        self.state.join("store")
    }
    /// The directory slots and the `current` link.
    pub fn slots(&self) -> PathBuf {
        self.state.join("slots")
    }
    /// The slot table.
    pub fn table(&self) -> PathBuf {
        self.state.join("slots.json")
    }
    /// The journal of the apply in progress.
    pub fn journal(&self) -> PathBuf {
        self.state.join("journal.json")
    }
    /// The history, one JSON record per line.
    pub fn history(&self) -> PathBuf {
        self.state.join("history.jsonl")
    }
    /// The node lock.
    pub fn lock(&self) -> PathBuf {
        self.state.join("lock")
    }
    /// Scratch space (extracted hooks and their output); emptied by every command that takes the lock.
    pub fn tmp(&self) -> PathBuf {
        self.state.join("tmp")
    }
    /// Creates the state directory.
    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.state).ctx("create", &self.state)
    }
}

/// An image as a slot holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Its name in the source (`name:tag`), when it had one.
    pub name: Option<String>,
    /// Its root digest (index or manifest): what a delta's base names.
    pub root: Digest,
    /// The node platform's manifest digest.
    pub manifest: Digest,
    /// That manifest's platform (`os/arch[/variant]`).
    pub platform: String,
    /// Its layers' DiffIDs, bottom first: what staging unpacks and `verify` compares with.
    pub diff_ids: Vec<Digest>,
}

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotState {
    /// Holds nothing.
    Empty,
    /// Being written (or left half-written by a crash): never switched to.
    Staging,
    /// Completely written and synced, not (or no longer) confirmed.
    Staged,
    /// Ran and was confirmed (post-verify passed or `mark-good`).
    Good,
    /// Failed post-verify or was abandoned unconfirmed.
    Bad,
}

/// One slot's row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// Its state.
    pub state: SlotState,
    /// The image it holds (or is being staged with).
    pub image: Option<ImageRecord>,
}

impl SlotRecord {
    /// An empty slot.
    pub fn empty() -> SlotRecord {
        SlotRecord {
            state: SlotState::Empty,
            image: None,
        }
    }
    /// The image, when the slot holds a complete one.
    pub fn complete_image(&self) -> Option<&ImageRecord> {
        match self.state {
            SlotState::Staged | SlotState::Good | SlotState::Bad => self.image.as_ref(),
            SlotState::Empty | SlotState::Staging => None,
        }
    }
}

/// `slots.json`: what each slot holds. Which slot is active is the backend's to say (the `current` link,
/// the boot loader), so the table can never contradict the one atomic switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotTable {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Slot A.
    pub a: SlotRecord,
    /// Slot B.
    pub b: SlotRecord,
    /// The active slot was switched to and is not confirmed yet.
    pub pending: bool,
    /// The slot to fall back to while `pending` (none on a node that had no slot).
    pub fallback: Option<SlotId>,
}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable {
            format: STATE_FORMAT,
            a: SlotRecord::empty(),
            b: SlotRecord::empty(),
            pending: false,
            fallback: None,
        }
    }
}

impl SlotTable {
    /// Reads the table, or an empty one when the node has none yet.
    pub fn load(path: &Path) -> Result<SlotTable> {
        match read_json::<SlotTable>(path)? {
            Some(t) if t.format != STATE_FORMAT => Err(NodeError::bad_state(
                path,
                format!("format {} (this runtime reads {STATE_FORMAT})", t.format),
            )),
            Some(t) => Ok(t),
            None => Ok(SlotTable::default()),
        }
    }
    /// Writes the table atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
    /// A slot's row.
    pub fn slot(&self, id: SlotId) -> &SlotRecord {
        match id {
            SlotId::A => &self.a,
            SlotId::B => &self.b,
        }
    }
    /// A slot's row, to change.
    pub fn slot_mut(&mut self, id: SlotId) -> &mut SlotRecord {
        match id {
            SlotId::A => &mut self.a,
            SlotId::B => &mut self.b,
        }
    }
}

/// The phases of an apply, in order; the journal records each before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Checks that touch no slot.
    PreCheck,
    /// Writing the inactive slot.
    Stage,
    /// Importing the container images the staged slot carries into containerd.
    Images,
    /// Making it active.
    Switch,
    /// Its post-verify hooks.
    PostVerify,
}

impl Phase {
    /// The phase's name in JSON and messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::PreCheck => "pre-check",
            Phase::Stage => "stage",
            Phase::Images => "images",
            Phase::Switch => "switch",
            Phase::PostVerify => "post-verify",
        }
    }
}

/// `journal.json`: the apply in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// The source as given.
    pub source: PathBuf,
    /// The phase started last.
    pub phase: Phase,
    /// The slot being staged.
    pub slot: SlotId,
    /// The slot that was active when the apply started.
    pub from: Option<SlotId>,
    /// The image being applied, once pre-check knows it.
    pub image: Option<ImageRecord>,
    /// When the apply started (seconds since the epoch).
    pub started: u64,
}

impl Journal {
    /// The journal at `path`, if an apply was interrupted.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        match read_json::<Journal>(path)? {
            Some(j) if j.format != STATE_FORMAT => Err(NodeError::bad_state(
                path,
                format!("format {} (this runtime reads {STATE_FORMAT})", j.format),
            )),
            j => Ok(j),
        }
    }
    /// Records the journal atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Seconds since the epoch.
    pub time: u64,
    /// `applied`, `rolled-back`, `failed`, `interrupted`, `recovered`, `rollback`, `mark-good`.
    pub event: String,
    /// The slot concerned.
    pub slot: Option<SlotId>,
    /// The image concerned.
    pub image: Option<Digest>,
    /// The source of an apply.
    pub source: Option<PathBuf>,
    /// Why (the error chain of a failure).
    pub reason: Option<String>,
}

/// Appends a record to the history.
pub fn record(paths: &NodePaths, rec: &HistoryRecord) -> Result<()> {
    let line = serde_json::to_string(rec)
        .map_err(|e| NodeError::bad_state(paths.history(), e.to_string()))?;
    fsutil::append_line(&paths.history(), &line)
}

/// Reads the history (every record; a torn last line from a crash is skipped).
pub fn history(paths: &NodePaths) -> Result<Vec<HistoryRecord>> {
    let path = paths.history();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io("read", &path, e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(NodeError::bad_state(&path, format!("line {}: {e}", i + 1)));
            }
        }
    }
    Ok(out)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io("stat", path, e)),
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(NodeError::bad_state(
            path,
            format!("{} bytes, more than {MAX_STATE_BYTES}", meta.len()),
        ));
    }
    let data = fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| NodeError::bad_state(path, e.to_string()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut data =
        serde_json::to_vec_pretty(value).map_err(|e| NodeError::bad_state(path, e.to_string()))?;
    data.push(b'\n');
    // The one atomic writer of the workspace: temp file (locked while written, swept when its writer died),
    // fsync, rename, fsync of the directory.
    let mut out = chasi_oci::output::Output::create(path)?;
    out.writer().write_all(&data).ctx("write", path)?;
    out.commit()?;
    Ok(())
}

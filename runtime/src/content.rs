//! What an image's tree holds, before it is staged: how many entries and bytes (for the free-space check
//! and `--dry-run`), the image's own hooks (`/etc/chasi/hooks/pre-check.d/*`, `post-verify.d/*`), and how
//! many container images its `registry/` carries (so pre-check knows whether containerd is needed).
//!
//! Two readers give the same [`Content`]: [`Content::from_store`] reads the store's flattened view of the
//! image (exact: the rules staging follows), and [`Content::scan`] reads layer tars from wherever a
//! dry run finds them (the node store, the source's blobs) without writing anything; it merges entries
//! with the OCI whiteout rules by path and counts a layer it cannot read (one a delta rebuilds) by the
//! length of its tar, an upper bound, with [`Content::estimated`] set.
//!
//! Hooks are read from the image rather than from a staged slot, because staging empties the inactive
//! slot, the one a rollback needs, and a pre-check must change nothing. A hook is an executable regular
//! file directly in the phase's directory whose name does not start with `.`; other files there are
//! ignored (as `run-parts` does), a symlink or a hook larger than [`MAX_HOOK_BYTES`] is refused.

use crate::error::{NodeError, Result};
use chasi_layers::{Digest, EntryKind, Store};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// The directory of an image's hooks (without the leading `/`).
pub const HOOKS_DIR: &str = "etc/chasi/hooks";

/// Largest hook read from an image.
pub const MAX_HOOK_BYTES: u64 = 16 << 20;

/// The hook phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// Before anything is touched.
    PreCheck,
    /// After the switch.
    PostVerify,
}

impl HookPhase {
    /// `pre-check` or `post-verify`.
    pub fn name(self) -> &'static str {
        match self {
            HookPhase::PreCheck => "pre-check",
            HookPhase::PostVerify => "post-verify",
        }
    }
    fn of_path(path: &[u8]) -> Option<(HookPhase, &[u8])> {
        let rest = path
            .strip_prefix(HOOKS_DIR.as_bytes())?
            .strip_prefix(b"/")?;
        for p in [HookPhase::PreCheck, HookPhase::PostVerify] {
            let dir = format!("{}.d/", p.name());
            if let Some(name) = rest.strip_prefix(dir.as_bytes()) {
                if !name.is_empty() && !name.contains(&b'/') && !name.starts_with(b".") {
                    return Some((p, name));
                }
            }
        }
        None
    }
}

/// One hook of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Its file name (the sort key).
    pub name: String,
    /// Its content.
    pub data: Vec<u8>,
}

/// An image's tree, summarised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// Entries (files, directories, links, devices).
    pub entries: u64,
    /// Regular files (hard links not counted again).
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Bytes on disk: each file rounded up to the block size, plus one block per other entry.
    pub disk_bytes: u64,
    /// Counts include upper bounds for layers that could not be read.
    pub estimated: bool,
    /// Layers not read (a dry run of a delta cannot read the layers it rebuilds).
    pub unread: Vec<Digest>,
    /// `pre-check.d` hooks, in name order.
    pub pre_check: Vec<Hook>,
    /// `post-verify.d` hooks, in name order.
    pub post_verify: Vec<Hook>,
    /// Tagged container images in the image's `registry/` directory (its tags' `current/link`
    /// files), which the `images` phase of apply imports into containerd.
    pub container_images: u64,
}

impl Content {
    /// The hooks of `phase`.
    pub fn hooks(&self, phase: HookPhase) -> &[Hook] {
        match phase {
            HookPhase::PreCheck => &self.pre_check,
            HookPhase::PostVerify => &self.post_verify,
        }
    }

    fn add(&mut self, path: &[u8], kind: &EntryKind, size: u64, block: u64) {
        self.entries += 1;
        if *kind == EntryKind::File && crate::images::is_tag_link(path) {
            self.container_images += 1;
        }
        match kind {
            EntryKind::File => {
                self.files += 1;
                self.bytes += size;
                self.disk_bytes += size.div_ceil(block) * block;
            }
            EntryKind::Hardlink(_) => {}
            _ => self.disk_bytes += block,
        }
    }

    fn push_hook(&mut self, phase: HookPhase, name: &[u8], data: Vec<u8>) {
        let hook = Hook {
            name: String::from_utf8_lossy(name).into_owned(),
            data,
        };
        match phase {
            HookPhase::PreCheck => self.pre_check.push(hook),
            HookPhase::PostVerify => self.post_verify.push(hook),
        }
    }

    fn sort_hooks(&mut self) {
        self.pre_check.sort_by(|a, b| a.name.cmp(&b.name));
        self.post_verify.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The tree of the image made of `layers`, from the store's flattened view (every chunk verified).
    pub fn from_store(store: &Store, layers: &[Digest], block: u64) -> Result<Content> {
        let mut view = store.flat_view(layers)?;
        let mut c = Content::default();
        let block = block.max(1);
        let mut hooks = Vec::new();
        for (i, e) in view.entries().iter().enumerate() {
            c.add(&e.entry.path, &e.entry.kind, e.entry.size, block);
            if let Some((phase, name)) = HookPhase::of_path(&e.entry.path) {
                let target = match &e.entry.kind {
                    EntryKind::Hardlink(t) => {
                        view.entries().iter().position(|x| &x.entry.path == t)
                    }
                    _ => Some(i),
                };
                let Some(t) = target else { continue };
                let target = &view.entries()[t].entry;
                hook_check(&e.entry.path, &e.entry.kind, target)?;
                if target.kind == EntryKind::File && target.mode & 0o111 != 0 {
                    hooks.push((phase, name.to_vec(), t));
                }
            }
        }
        for (phase, name, i) in hooks {
            let mut data = Vec::new();
            view.read_file(i, &mut data)?;
            c.push_hook(phase, &name, data);
        }
        c.sort_hooks();
        Ok(c)
    }

    /// The tree of an image from its layer tars (bottom first), without the store's flattener: what a dry
    /// run can know without writing anything.
    pub fn scan(layers: Vec<LayerInput<'_>>, block: u64) -> Result<Content> {
        let block = block.max(1);
        let mut tree: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
        let mut c = Content::default();
        for layer in layers {
            match layer.reader {
                Some(r) => scan_layer(&mut tree, r, &layer.diff_id)?,
                None => {
                    c.estimated = true;
                    c.unread.push(layer.diff_id);
                    c.bytes += layer.tar_size;
                    c.disk_bytes += layer.tar_size.div_ceil(block) * block;
                }
            }
        }
        for (path, node) in tree {
            c.add(&path, &node.kind, node.size, block);
            if let (Some((phase, name)), Some(data)) = (HookPhase::of_path(&path), node.data) {
                if node.mode & 0o111 != 0 {
                    c.push_hook(phase, name, data);
                }
            }
        }
        c.sort_hooks();
        Ok(c)
    }
}

/// A layer for [`Content::scan`]: its uncompressed tar when it can be read.
pub struct LayerInput<'a> {
    /// Its DiffID.
    pub diff_id: Digest,
    /// Its tar, or `None` when it cannot be read without writing.
    pub reader: Option<Box<dyn Read + 'a>>,
    /// The length of its tar (counted when it cannot be read).
    pub tar_size: u64,
}

fn hook_check(path: &[u8], kind: &EntryKind, target: &chasi_layers::TarEntry) -> Result<()> {
    let show = String::from_utf8_lossy(path).into_owned();
    match kind {
        EntryKind::File | EntryKind::Hardlink(_) if target.kind == EntryKind::File => {
            if target.size > MAX_HOOK_BYTES {
                return Err(NodeError::BadHook {
                    path: show,
                    reason: format!("{} bytes, more than {MAX_HOOK_BYTES}", target.size),
                });
            }
            Ok(())
        }
        EntryKind::Dir => Ok(()),
        _ => Err(NodeError::BadHook {
            path: show,
            reason: "not a regular file (a hook must be one)".into(),
        }),
    }
}

struct Node {
    kind: EntryKind,
    size: u64,
    mode: u32,
    data: Option<Vec<u8>>,
}

fn scan_layer(
    tree: &mut BTreeMap<Vec<u8>, Node>,
    r: Box<dyn Read + '_>,
    diff_id: &Digest,
) -> Result<()> {
    let bad = |detail: String| NodeError::BadSource {
        path: format!("layer {diff_id}").into(),
        reason: detail,
    };
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, r));
    let mut deletions: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut additions: Vec<(Vec<u8>, Node)> = Vec::new();
    for e in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut e = e.map_err(|e| bad(e.to_string()))?;
        let Some(path) = normalize(&e.path_bytes()) else {
            continue;
        };
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (path[..i].to_vec(), path[i + 1..].to_vec()),
            None => (Vec::new(), path.clone()),
        };
        if name == b".wh..wh..opq" {
            deletions.push((dir, true));
            continue;
        }
        if let Some(victim) = name.strip_prefix(b".wh.") {
            deletions.push((join(&dir, victim), false));
            continue;
        }
        let h = e.header();
        let mode = h.mode().unwrap_or(0);
        let size = h.size().unwrap_or(0);
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink(Vec::new()),
            tar::EntryType::Link => EntryKind::Hardlink(Vec::new()),
            tar::EntryType::Fifo => EntryKind::Fifo,
            tar::EntryType::Char => EntryKind::Char(0, 0),
            tar::EntryType::Block => EntryKind::Block(0, 0),
            _ => continue,
        };
        let mut data = None;
        if HookPhase::of_path(&path).is_some() {
            if kind != EntryKind::File {
                hook_check(
                    &path,
                    &kind,
                    &chasi_layers::TarEntry::file(&path, mode, 0, 0),
                )?;
            } else if size <= MAX_HOOK_BYTES {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf).map_err(|e| bad(e.to_string()))?;
                data = Some(buf);
            } else {
                hook_check(
                    &path,
                    &kind,
                    &chasi_layers::TarEntry::file(&path, mode, 0, size),
                )?;
            }
        }
        let size = if kind == EntryKind::File { size } else { 0 };
        additions.push((
            path,
            Node {
                kind,
                size,
                mode,
                data,
            },
        ));
    }
    for (path, opaque) in deletions {
        remove_below(tree, &path);
        if !opaque {
            tree.remove(&path);
        }
    }
    for (path, node) in additions {
        if node.kind != EntryKind::Dir {
            remove_below(tree, &path);
        }
        tree.insert(path, node);
    }
    Ok(())
}

fn remove_below(tree: &mut BTreeMap<Vec<u8>, Node>, dir: &[u8]) {
    let prefix = if dir.is_empty() {
        Vec::new()
    } else {
        join(dir, b"")
    };
    let doomed: Vec<Vec<u8>> = tree
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// A tar name made relative (`./`, leading and trailing `/` and empty components dropped); `None` for
/// the root itself.
fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let parts: Vec<&[u8]> = raw
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(&b'/'))
    }
}

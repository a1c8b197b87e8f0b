//! Flattening: the merged file system of a stack of layers, as a sorted entry list with random-access content,
//! or streamed as one reproducible tar — without unpacking anything to disk.
//!
//! Two passes. Pass 1 reads each layer's tar (headers only are kept: path, metadata, and the offset of the file
//! data inside the layer's uncompressed tar) and applies it to an in-memory tree with the same rules as
//! [`crate::apply`]: whiteouts, opaque directories, replacement, symlinked parents resolved as the image sees them,
//! escapes rejected. Pass 2 emits the tree in the writer's canonical order (depth-first, siblings by name bytes)
//! and reads each file's data from the chunks that hold it (the chunk index gives random access). Hard links are
//! regrouped in the merged view: the first path of a group in output order carries the data, so a link whose
//! original target was deleted or replaced becomes a regular file. Memory is proportional to the number of
//! entries, not to data size.

use crate::digest::Digest;
use crate::entry::{self, EntryOp, LinkTarget};
use crate::error::{Error, Result};
use crate::store::{LayerReader, Store};
use crate::tarwriter::{EntryKind, TarEntry, TarWriter};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{self, Read, Write};

type Key = Vec<Vec<u8>>;

#[derive(Debug, Clone)]
struct Node {
    meta: TarEntry,
    /// (layer index, data offset) for regular-file content; also the hard-link group identity.
    source: Option<(usize, u64)>,
}

/// One entry of the merged file system.
#[derive(Debug, Clone)]
pub struct FlatEntry {
    /// Metadata; `path` is normalized (relative, no trailing slash). Hard links point at an earlier entry.
    pub entry: TarEntry,
    source: Option<(usize, u64)>,
}

/// The merged view of a stack of layers.
pub struct FlatView<'a> {
    readers: Vec<LayerReader<'a>>,
    entries: Vec<FlatEntry>,
}

impl<'a> FlatView<'a> {
    /// Entries in canonical order (a directory before its contents, siblings sorted by name bytes).
    pub fn entries(&self) -> &[FlatEntry] {
        &self.entries
    }

    /// Reads the content of a regular-file entry (verified chunk by chunk).
    pub fn read_file(&mut self, i: usize, mut out: impl Write) -> Result<u64> {
        let Some(e) = self.entries.get(i) else {
            return Ok(0);
        };
        let (Some((layer, offset)), EntryKind::File) = (e.source, &e.entry.kind) else {
            return Ok(0);
        };
        let size = e.entry.size;
        let mut buf = vec![0u8; (1usize << 20).min(size as usize)];
        let mut done = 0u64;
        while done < size {
            let n = buf.len().min((size - done) as usize);
            self.readers[layer].read_at(offset + done, &mut buf[..n])?;
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("write", "<flatten output>", e))?;
            done += n as u64;
        }
        Ok(size)
    }

    /// Streams the merged file system as one reproducible tar; returns the number of tar bytes.
    pub fn write_tar(mut self, out: impl Write) -> Result<u64> {
        let mut tw = TarWriter::new(out);
        for i in 0..self.entries.len() {
            let entry = self.entries[i].entry.clone();
            if entry.kind == EntryKind::File && entry.size > 0 {
                let mut data = Vec::new();
                // Files are staged one at a time; large files stream through a bounded pipe instead.
                if entry.size <= 64 << 20 {
                    self.read_file(i, &mut data)?;
                    tw.append(&entry, Some(&mut &data[..]))
                        .map_err(|e| Error::io("write", "<flatten output>", e))?;
                } else {
                    let mut r = FileReader {
                        view: &mut self,
                        i,
                        done: 0,
                    };
                    tw.append(&entry, Some(&mut r))
                        .map_err(|e| Error::io("write", "<flatten output>", e))?;
                }
            } else {
                tw.append(&entry, None)
                    .map_err(|e| Error::io("write", "<flatten output>", e))?;
            }
        }
        let n = tw.written() + 1024;
        tw.finish()
            .map_err(|e| Error::io("write", "<flatten output>", e))?;
        Ok(n)
    }
}

struct FileReader<'v, 'a> {
    view: &'v mut FlatView<'a>,
    i: usize,
    done: u64,
}
impl Read for FileReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let e = &self.view.entries[self.i];
        let (Some((layer, offset)), size) = (e.source, e.entry.size) else {
            return Ok(0);
        };
        let n = buf.len().min((size - self.done) as usize).min(1 << 20);
        if n == 0 {
            return Ok(0);
        }
        self.view.readers[layer]
            .read_at(offset + self.done, &mut buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, crate::error::chain(&e)))?;
        self.done += n as u64;
        Ok(n)
    }
}

fn remove_subtree(tree: &mut BTreeMap<Key, Node>, key: &Key) {
    let doomed: Vec<Key> = tree
        .range(key.clone()..)
        .take_while(|(k, _)| k.starts_with(key))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

/// Resolves a parent directory inside the in-memory tree (symlinks followed as the image sees them).
fn resolve(
    tree: &mut BTreeMap<Key, Node>,
    comps: &[Vec<u8>],
    create: Option<i64>,
    entry: &str,
) -> Result<Key> {
    let unsafe_entry = |reason: &str| Error::UnsafeEntry {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let mut stack: Key = Vec::new();
    let mut queue: VecDeque<Vec<u8>> = comps.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        match &c[..] {
            b"" | b"." => continue,
            b".." => {
                if stack.pop().is_none() {
                    return Err(unsafe_entry(
                        "a symlink in its path points outside the target",
                    ));
                }
                continue;
            }
            _ => {}
        }
        let mut k = stack.clone();
        k.push(c.clone());
        match tree.get(&k).map(|n| n.meta.kind.clone()) {
            Some(EntryKind::Dir) => stack = k,
            Some(EntryKind::Symlink(t)) => {
                hops += 1;
                if hops > 40 {
                    return Err(unsafe_entry("too many levels of symbolic links"));
                }
                if t.first() == Some(&b'/') {
                    stack.clear();
                }
                let mut rest: VecDeque<Vec<u8>> =
                    t.split(|&b| b == b'/').map(|s| s.to_vec()).collect();
                rest.extend(queue.drain(..));
                queue = rest;
            }
            Some(_) => return Err(unsafe_entry("a parent is not a directory")),
            None => match create {
                Some(mtime) => {
                    let meta = TarEntry {
                        path: k.join(&b'/'),
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime,
                        size: 0,
                        xattrs: BTreeMap::new(),
                    };
                    tree.insert(k.clone(), Node { meta, source: None });
                    stack = k;
                }
                None => return Err(unsafe_entry("a parent does not exist")),
            },
        }
    }
    Ok(stack)
}

impl Store {
    /// Builds the merged view of a stack of layers (bottom first, by DiffID).
    pub fn flat_view(&self, layers: &[Digest]) -> Result<FlatView<'_>> {
        let mut tree: BTreeMap<Key, Node> = BTreeMap::new();
        let mut readers = Vec::new();
        for (li, l) in layers.iter().enumerate() {
            let what = l.to_string();
            let r = self.open_layer(l)?;
            let framed = crate::tarframe::Framed::new(io::BufReader::with_capacity(1 << 20, r));
            let pax = framed.records();
            let mut archive = tar::Archive::new(framed);
            let mut created: HashSet<Key> = HashSet::new();
            let entries = archive.entries().map_err(|e| Error::BadTar {
                what: what.clone(),
                detail: crate::error::chain(&e),
            })?;
            for e in entries {
                let mut e = e.map_err(|e| Error::BadTar {
                    what: what.clone(),
                    detail: crate::error::chain(&e),
                })?;
                let Some(meta) = crate::apply::read_meta(&mut e, &pax, &what)? else {
                    continue;
                };
                let offset = e.raw_file_position();
                let show = String::from_utf8_lossy(&meta.path).into_owned();
                let (parent, name) = match entry::classify(&meta.path, &show)? {
                    EntryOp::Root => continue,
                    EntryOp::Opaque { parent } => {
                        let dir = resolve(&mut tree, &parent, Some(meta.mtime), &show)?;
                        let doomed: Vec<Key> = tree
                            .range(dir.clone()..)
                            .take_while(|(k, _)| k.starts_with(&dir))
                            .filter(|(k, _)| {
                                k.len() > dir.len() && !created.contains(&k[..dir.len() + 1])
                            })
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            tree.remove(&k);
                        }
                        continue;
                    }
                    EntryOp::Whiteout { parent, name } => {
                        let mut k = resolve(&mut tree, &parent, Some(meta.mtime), &show)?;
                        k.push(name);
                        remove_subtree(&mut tree, &k);
                        continue;
                    }
                    EntryOp::Put { parent, name } => (parent, name),
                };
                let dir = resolve(&mut tree, &parent, Some(meta.mtime), &show)?;
                let mut key = dir.clone();
                key.push(name.clone());
                let mut node = Node {
                    meta: TarEntry {
                        path: key.join(&b'/'),
                        ..meta
                    },
                    source: None,
                };
                match node.meta.kind.clone() {
                    EntryKind::File => node.source = Some((li, offset)),
                    EntryKind::Hardlink(t) => {
                        let (tparent, tname) = entry::hard_link_target(&t, &show)?;
                        let mut tk = resolve(&mut tree, &tparent, None, &show)?;
                        tk.push(tname);
                        let found = match tree.get(&tk) {
                            None => LinkTarget::Missing,
                            Some(n) if n.meta.kind == EntryKind::Dir => LinkTarget::Directory,
                            Some(_) => LinkTarget::Other,
                        };
                        if let Some(refused) = entry::hard_link_refusal(found, &t, &show) {
                            return Err(refused);
                        }
                        let Some(target) = tree.get(&tk).cloned() else {
                            continue;
                        };
                        node = Node {
                            meta: TarEntry {
                                path: key.join(&b'/'),
                                ..target.meta
                            },
                            source: target.source,
                        };
                    }
                    _ => {}
                }
                let keep_children = node.meta.kind == EntryKind::Dir
                    && tree
                        .get(&key)
                        .is_some_and(|n| n.meta.kind == EntryKind::Dir);
                if !keep_children {
                    remove_subtree(&mut tree, &key);
                }
                created.insert(key.clone());
                tree.insert(key, node);
            }
            drop(archive);
            readers.push(self.open_layer(l)?);
        }
        // Regroup hard links in output order.
        let mut first: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
        let mut entries = Vec::with_capacity(tree.len());
        for (_, mut n) in tree {
            if let (EntryKind::File, Some(src)) = (&n.meta.kind, n.source) {
                if let Some(p) = first.get(&src) {
                    n.meta.kind = EntryKind::Hardlink(p.clone());
                    n.meta.size = 0;
                    entries.push(FlatEntry {
                        entry: n.meta,
                        source: None,
                    });
                    continue;
                }
                first.insert(src, n.meta.path.clone());
            }
            entries.push(FlatEntry {
                entry: n.meta,
                source: n.source,
            });
        }
        Ok(FlatView { readers, entries })
    }

    /// Streams the flattened file system of a stack of layers as one reproducible tar. Returns its size.
    pub fn flatten(&self, layers: &[Digest], out: impl Write) -> Result<u64> {
        self.flat_view(layers)?.write_tar(out)
    }
}

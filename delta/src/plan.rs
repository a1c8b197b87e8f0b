//! Deciding, per target layer, which bytes come from the base as they are and which are carried in the
//! compressed stream, and what each stream piece is patched against.
//!
//! Matching, cheapest first, for each entry of the target tar:
//! 1. the whole entry (header blocks, content, padding) is byte-identical to a base entry: a reuse
//!    operation, merged with its neighbours when their base ranges are contiguous, so an unchanged
//!    directory tree costs one operation;
//! 2. its content is in the base (a renamed or re-owned file) and large enough to be worth an operation:
//!    the header goes to the stream, the content is reused;
//! 3. otherwise the entry goes to the stream with a *reference*: the base entry it most likely evolved from
//!    (same content, same path, same path once version numbers are masked — `lib/modules/6.1.0-55/…` and
//!    `lib/modules/6.1.0-56/…` — or the same file name with a size within 30 %, OSTree's rule), which the
//!    zstd parts use as their prefix so a changed file costs about what changed; at the release level a
//!    changed executable is bsdiff-patched against it instead when that compresses smaller (decided when
//!    encoding, `encode.rs`).
//!
//! The stream is cut into parts whose reference plus output stay within the memory budget, because apply
//! keeps one part's reference and window in memory; an entry larger than that is split, each piece patched
//! against the same proportion of its reference.

use crate::format::{Range, Stats};
use crate::tarscan::{Entry, Scan};
use std::collections::HashMap;

/// Content smaller than this that is found in the base is streamed with the base copy as reference
/// rather than reused by its own operation: an operation costs ~20 bytes, a long match in the stream a few.
const MIN_REUSE: u64 = 16 * 1024;
/// OSTree's rename rule: a candidate's size within this percentage of the new file's.
const SIZE_SIMILARITY_PERCENT: u64 = 30;

/// Where an entry of a base layer is.
#[derive(Debug, Clone, Copy)]
struct At {
    layer: u32,
    entry: u32,
}

/// The base layers of one platform, indexed for matching.
pub(crate) struct BaseIndex<'a> {
    scans: Vec<&'a Scan>,
    whole: HashMap<([u8; 32], [u8; 32]), At>,
    content: HashMap<[u8; 32], At>,
    path: HashMap<&'a str, At>,
    masked: HashMap<String, Vec<At>>,
    name: HashMap<&'a str, Vec<At>>,
}

impl<'a> BaseIndex<'a> {
    /// Indexes the base layers, bottom first (an upper layer's entry wins a path).
    pub fn new(scans: Vec<&'a Scan>) -> Self {
        let mut ix = BaseIndex {
            scans: Vec::new(),
            whole: HashMap::new(),
            content: HashMap::new(),
            path: HashMap::new(),
            masked: HashMap::new(),
            name: HashMap::new(),
        };
        for (l, scan) in scans.iter().enumerate() {
            for (i, e) in scan.entries.iter().enumerate() {
                let at = At {
                    layer: l as u32,
                    entry: i as u32,
                };
                ix.whole.entry((e.meta_hash, e.content_hash)).or_insert(at);
                ix.path.insert(e.path.as_str(), at);
                if e.regular && e.size > 0 {
                    ix.content.entry(e.content_hash).or_insert(at);
                    ix.masked
                        .entry(mask_versions(&e.path))
                        .or_default()
                        .push(at);
                    ix.name.entry(file_name(&e.path)).or_default().push(at);
                }
            }
        }
        ix.scans = scans;
        ix
    }

    fn get(&self, at: At) -> &Entry {
        &self.scans[at.layer as usize].entries[at.entry as usize]
    }

    /// The base entry a target entry most likely evolved from.
    fn similar(&self, e: &Entry) -> Option<At> {
        if e.regular && e.size > 0 {
            if let Some(&at) = self.content.get(&e.content_hash) {
                return Some(at);
            }
        }
        if let Some(&at) = self.path.get(e.path.as_str()) {
            return Some(at);
        }
        if !(e.regular && e.size > 0) {
            return None;
        }
        let closest = |cands: Option<&Vec<At>>, bounded: bool| {
            cands?
                .iter()
                .copied()
                .filter(|&at| !bounded || similar_size(self.get(at).size, e.size))
                .min_by_key(|&at| (self.get(at).size.abs_diff(e.size), at.layer, at.entry))
        };
        closest(self.masked.get(&mask_versions(&e.path)), false)
            .or_else(|| closest(self.name.get(file_name(&e.path)), true))
    }
}

fn similar_size(old: u64, new: u64) -> bool {
    old.abs_diff(new) * 100 <= new.max(1) * SIZE_SIMILARITY_PERCENT
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The path with every run of digits replaced by `#`, so versioned directories and file names match
/// across versions.
pub(crate) fn mask_versions(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// One operation as planned: its digest is computed when the target is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Planned {
    Reuse(Range),
    Stream(u64),
    /// A bsdiff patch of the base range `src` giving `len` bytes; the patch is made when encoding.
    Bspatch {
        src: Range,
        len: u64,
    },
}

/// A piece of the stream and the base ranges it is patched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub out_len: u64,
    pub refs: Vec<Range>,
    /// For a bsdiff patch: its operation's index (its length is known once it is made; it is never split).
    pub bspatch: Option<usize>,
}

/// The parts of the stream, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartPlan {
    /// Where its output starts in the stream.
    pub out_start: u64,
    pub out_len: u64,
    pub refs: Vec<Range>,
}

/// What to do for one target layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerPlan {
    pub ops: Vec<Planned>,
    /// The stream's pieces, in order; [`cut_parts`] groups them once bsdiff patch lengths are known.
    pub items: Vec<Item>,
    pub stats: Stats,
}

/// Executables at least this large, changed, with an executable to patch from, get a bsdiff patch (release
/// level): measured on the Debian update, bsdiff encodes rebuilt code (every address shifted) in fewer bytes
/// than a zstd reference prefix, whose matches break at each changed address.
const BSDIFF_MIN: u64 = 64 * 1024;
/// bsdiff's suffix sort takes memory and time in proportion to the old file: larger pairs are zstd-patched.
const BSDIFF_MAX: u64 = 64 << 20;
const ELF: [u8; 4] = *b"\x7fELF";

/// Plans a target layer against the base; `bsdiff` allows bsdiff patches for executables whose old and new
/// versions fit in `budget` together.
pub(crate) fn plan_layer(
    base: &BaseIndex<'_>,
    target: &Scan,
    budget: u64,
    bsdiff: bool,
) -> LayerPlan {
    let mut b = Builder::default();
    for e in &target.entries {
        if let Some(&at) = base.whole.get(&(e.meta_hash, e.content_hash)) {
            let be = base.get(at);
            b.reuse(at.layer, be.start, e.end - e.start);
            continue;
        }
        let similar = base.similar(e).map(|at| (at, base.get(at)));
        let reusable = (e.regular && e.size >= MIN_REUSE)
            .then(|| base.content.get(&e.content_hash))
            .flatten();
        if let Some(&at) = reusable {
            let refs: Vec<Range> = similar
                .map(|(sat, s)| range(sat.layer, s.start, s.data))
                .into_iter()
                .collect();
            b.stream(e.data - e.start, refs);
            b.reuse(at.layer, base.get(at).data, e.size);
            b.stream(e.end - e.data - e.size, Vec::new());
            continue;
        }
        match similar {
            Some((at, s))
                if bsdiff
                    && e.regular
                    && s.regular
                    && e.magic == ELF
                    && s.magic == ELF
                    && e.size >= BSDIFF_MIN
                    && e.size + s.size <= BSDIFF_MAX.min(budget / 2) =>
            {
                b.stream(e.data - e.start, vec![range(at.layer, s.start, s.data)]);
                b.bspatch(range(at.layer, s.data, s.data + s.size), e.size);
                b.stream(e.end - e.data - e.size, Vec::new());
                b.stats.patched += e.size;
                b.stats.patched_from += s.size;
            }
            Some((at, s)) => {
                b.stream(e.end - e.start, vec![range(at.layer, s.start, s.end)]);
                if e.regular {
                    b.stats.patched += e.size;
                    b.stats.patched_from += s.size;
                } else {
                    b.stats.literal += e.size;
                }
            }
            None => {
                b.stream(e.end - e.start, Vec::new());
                b.stats.literal += e.size;
            }
        }
    }
    let tail = target.len - target.tail_start();
    b.stream(tail, Vec::new());
    let mut plan = LayerPlan {
        ops: b.ops,
        items: b.items,
        stats: b.stats,
    };
    plan.stats.reused = plan
        .ops
        .iter()
        .map(|o| match o {
            Planned::Reuse(r) => r.len,
            _ => 0,
        })
        .sum();
    plan
}

fn range(layer: u32, start: u64, end: u64) -> Range {
    Range {
        layer,
        offset: start,
        len: end - start,
    }
}

#[derive(Default)]
struct Builder {
    ops: Vec<Planned>,
    items: Vec<Item>,
    stats: Stats,
}

impl Builder {
    fn reuse(&mut self, layer: u32, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        if let Some(Planned::Reuse(r)) = self.ops.last_mut() {
            if r.layer == layer && r.offset + r.len == offset {
                r.len += len;
                return;
            }
        }
        self.ops.push(Planned::Reuse(Range { layer, offset, len }));
    }

    fn stream(&mut self, len: u64, refs: Vec<Range>) {
        if len == 0 {
            return;
        }
        match self.ops.last_mut() {
            Some(Planned::Stream(l)) => *l += len,
            _ => self.ops.push(Planned::Stream(len)),
        }
        self.items.push(Item {
            out_len: len,
            refs,
            bspatch: None,
        });
    }

    fn bspatch(&mut self, src: Range, len: u64) {
        self.items.push(Item {
            out_len: 0,
            refs: Vec::new(),
            bspatch: Some(self.ops.len()),
        });
        self.ops.push(Planned::Bspatch { src, len });
    }
}

/// Reference plus output of the parts small items are grouped into. Measured on the Debian update of
/// `bench-data`: parts of 4 to 64 MiB give deltas within 1 % of each other (the reference of each file travels
/// with it, so little is lost at a cut), while small parts compress in parallel and keep the memory of apply
/// low. A file larger than this gets a part of its own, as large as the memory budget allows.
pub(crate) const PART_TARGET: u64 = 8 << 20;

/// Groups consecutive items into parts of at most [`PART_TARGET`] (and `budget`) bytes of (distinct)
/// reference plus output; an item larger than that gets parts of its own, split to fit `budget`.
pub(crate) fn cut_parts(items: &[Item], budget: u64) -> Vec<PartPlan> {
    let budget = budget.max(4096);
    let target = PART_TARGET.min(budget);
    let mut parts: Vec<PartPlan> = Vec::new();
    let mut cur = PartPlan {
        out_start: 0,
        out_len: 0,
        refs: Vec::new(),
    };
    let mut cur_ref = 0u64;
    let mut pos = 0u64;
    for item in items.iter().flat_map(|i| split(i, budget)) {
        let new_ref: u64 = item
            .refs
            .iter()
            .filter(|r| !cur.refs.contains(r))
            .map(|r| r.len)
            .sum();
        if cur.out_len > 0 && cur_ref + new_ref + cur.out_len + item.out_len > target {
            let next = pos;
            parts.push(std::mem::replace(
                &mut cur,
                PartPlan {
                    out_start: next,
                    out_len: 0,
                    refs: Vec::new(),
                },
            ));
            cur_ref = 0;
        }
        for r in item.refs {
            if !cur.refs.contains(&r) {
                cur_ref += r.len;
                push_merged(&mut cur.refs, r);
            }
        }
        cur.out_len += item.out_len;
        pos += item.out_len;
    }
    if cur.out_len > 0 {
        parts.push(cur);
    }
    parts
}

fn push_merged(refs: &mut Vec<Range>, r: Range) {
    if let Some(last) = refs.last_mut() {
        if last.layer == r.layer && last.offset + last.len == r.offset {
            last.len += r.len;
            return;
        }
    }
    refs.push(r);
}

/// An item cut into pieces of at most half the budget of output, each with the same proportion of the
/// reference (at most half the budget).
fn split(item: &Item, budget: u64) -> Vec<Item> {
    let ref_len: u64 = item.refs.iter().map(|r| r.len).sum();
    if item.out_len + ref_len <= budget || item.bspatch.is_some() {
        return vec![item.clone()];
    }
    let half = budget / 2;
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < item.out_len {
        let n = half.min(item.out_len - done);
        let refs = if ref_len == 0 {
            Vec::new()
        } else {
            let start = (done as u128 * ref_len as u128 / item.out_len as u128) as u64;
            let start = start.min(ref_len.saturating_sub(half));
            slice(&item.refs, start, half.min(ref_len))
        };
        out.push(Item {
            out_len: n,
            refs,
            bspatch: None,
        });
        done += n;
    }
    out
}

/// `len` bytes from `start` of the concatenation of `refs`.
fn slice(refs: &[Range], mut start: u64, mut len: u64) -> Vec<Range> {
    let mut out = Vec::new();
    for r in refs {
        if len == 0 {
            break;
        }
        if start >= r.len {
            start -= r.len;
            continue;
        }
        let n = (r.len - start).min(len);
        out.push(Range {
            layer: r.layer,
            offset: r.offset + start,
            len: n,
        });
        len -= n;
        start = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_masked() {
        assert_eq!(
            mask_versions("lib/modules/6.1.0-55-amd64/kernel/x.ko"),
            "lib/modules/#.#.#-#-amd#/kernel/x.ko"
        );
        assert_eq!(
            mask_versions("usr/lib/python3.11/os.py"),
            "usr/lib/python#.#/os.py"
        );
    }

    #[test]
    fn parts_respect_the_budget_and_cover_the_stream() {
        let items: Vec<Item> = (0..50)
            .map(|i| Item {
                out_len: 1000 + i,
                refs: vec![Range {
                    layer: 0,
                    offset: i * 5000,
                    len: 900,
                }],
                bspatch: None,
            })
            .chain([Item {
                out_len: 100_000,
                refs: vec![Range {
                    layer: 1,
                    offset: 0,
                    len: 90_000,
                }],
                bspatch: None,
            }])
            .collect();
        let parts = cut_parts(&items, 20_000);
        let total: u64 = items.iter().map(|i| i.out_len).sum();
        assert_eq!(parts.iter().map(|p| p.out_len).sum::<u64>(), total);
        let mut pos = 0;
        for p in &parts {
            assert_eq!(p.out_start, pos);
            pos += p.out_len;
            let r: u64 = p.refs.iter().map(|r| r.len).sum();
            assert!(r + p.out_len <= 20_000, "{p:?}");
        }
    }
}

//! Running a layer payload's operations: copies from the base, decoded parts, bsdiff patches, each checked
//! against its digest, in target order, into the pipe to the store (`pipe.rs`).

use crate::error::{DeltaError, Result};
use crate::format::{LayerDelta, LayerIndex, Op, Part, MAX_WINDOW_LOG};
use crate::pipe::Sink;
use chasi_layers::{Digest, LayerReader, Store};
use std::io::{self, Read};

/// The platform's base layers, read through one reader each, for the target layer being rebuilt.
struct Base<'a, 's> {
    store: &'s Store,
    layers: &'a [Digest],
    readers: Vec<Option<LayerReader<'s>>>,
    target: &'a LayerDelta,
}

/// Where the operations are.
struct Cursor<'a> {
    ops: &'a [Op],
    i: usize,
    left: u64,
    hasher: blake3::Hasher,
}

/// Runs the operations of layer `l` in order, decoding the parts as the stream operations need them, and
/// writes the rebuilt tar to `sink`.
pub(crate) fn produce(
    store: &Store,
    base: &[Digest],
    l: &LayerDelta,
    index: &LayerIndex,
    payload: &mut impl io::BufRead,
    sink: &mut Sink,
) -> Result<()> {
    let mut src = Base {
        store,
        layers: base,
        readers: (0..base.len()).map(|_| None).collect(),
        target: l,
    };
    let mut cur = Cursor {
        ops: &index.ops,
        i: 0,
        left: index.ops.first().map_or(0, Op::len),
        hasher: blake3::Hasher::new(),
    };
    let mut buf = vec![0u8; 1 << 20];
    for (pi, part) in index.parts.iter().enumerate() {
        let prefix = src.prefix(pi, part)?;
        let part_err = |detail: String| DeltaError::Op {
            layer: l.diff_id,
            op: pi,
            kind: "part",
            detail,
        };
        let frame = (&mut *payload).take(part.compressed_len);
        let mut dec = zstd::stream::read::Decoder::with_ref_prefix(frame, &prefix)
            .map_err(|e| part_err(format!("cannot start decoding: {e}")))?;
        dec.window_log_max(part.window_log.min(MAX_WINDOW_LOG) as u32)
            .map_err(|e| part_err(format!("cannot set the window: {e}")))?;
        let mut part_left = part.out_len;
        while part_left > 0 {
            match cur.ops.get(cur.i) {
                None => return Err(part_err("the operations end before the part".into())),
                Some(Op::Reuse { .. }) => src.reuse(&mut cur, sink, &mut buf)?,
                Some(Op::Stream { .. }) => {
                    let n = cur.left.min(part_left).min(buf.len() as u64) as usize;
                    dec.read_exact(&mut buf[..n])
                        .map_err(|e| part_err(format!("decoding failed: {e}")))?;
                    cur.hasher.update(&buf[..n]);
                    sink.write(&buf[..n])?;
                    cur.left -= n as u64;
                    part_left -= n as u64;
                    if cur.left == 0 {
                        finish_op(l, &mut cur)?;
                    }
                }
                Some(&Op::Bspatch { patch_len, .. }) => {
                    if patch_len > part_left {
                        return Err(DeltaError::Op {
                            layer: l.diff_id,
                            op: cur.i,
                            kind: "bspatch",
                            detail: format!(
                                "its {patch_len}-byte patch runs past the end of part {pi}"
                            ),
                        });
                    }
                    let mut patch = vec![0u8; patch_len as usize];
                    dec.read_exact(&mut patch)
                        .map_err(|e| part_err(format!("decoding failed: {e}")))?;
                    part_left -= patch_len;
                    src.bspatch(&mut cur, sink, &patch)?;
                }
            }
        }
        // The frame must end exactly here (its checksum is checked on the way).
        let mut one = [0u8; 1];
        match dec.read(&mut one) {
            Ok(0) => {}
            Ok(_) => {
                return Err(part_err(
                    "the part decodes to more bytes than recorded".into(),
                ))
            }
            Err(e) => return Err(part_err(format!("decoding failed: {e}"))),
        }
        let mut rest = dec.finish();
        if rest
            .read(&mut one)
            .map_err(|e| part_err(format!("reading the payload: {e}")))?
            != 0
        {
            return Err(part_err(
                "the compressed part is longer than its frame".into(),
            ));
        }
    }
    while let Some(op) = cur.ops.get(cur.i) {
        match op {
            Op::Reuse { .. } => src.reuse(&mut cur, sink, &mut buf)?,
            Op::Stream { .. } if cur.left == 0 => finish_op(l, &mut cur)?,
            Op::Stream { .. } | Op::Bspatch { .. } => {
                return Err(DeltaError::Op {
                    layer: l.diff_id,
                    op: cur.i,
                    kind: op_kind(op),
                    detail: "the parts end before this operation".into(),
                })
            }
        }
    }
    // Nothing may follow the last part; reading to the end also checks the payload's digest.
    let mut one = [0u8; 1];
    match payload.read(&mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(DeltaError::malformed(
            format!("payload of layer {}", l.diff_id),
            "bytes after the last part",
        )),
        Err(e) => Err(DeltaError::malformed(
            format!("payload of layer {}", l.diff_id),
            e.to_string(),
        )),
    }
}

fn finish_op(l: &LayerDelta, cur: &mut Cursor<'_>) -> Result<()> {
    let op = &cur.ops[cur.i];
    let want = match op {
        Op::Reuse { digest, .. } | Op::Stream { digest, .. } | Op::Bspatch { digest, .. } => digest,
    };
    let kind = op_kind(op);
    let got = crate::format::op_digest(&cur.hasher);
    if &got != want {
        return Err(DeltaError::Op {
            layer: l.diff_id,
            op: cur.i,
            kind,
            detail: format!(
                "its {} bytes hash to {}, the delta records {}",
                op.len(),
                hex(&got),
                hex(want)
            ),
        });
    }
    cur.i += 1;
    cur.left = cur.ops.get(cur.i).map_or(0, Op::len);
    cur.hasher = blake3::Hasher::new();
    Ok(())
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Reuse { .. } => "reuse",
        Op::Stream { .. } => "stream",
        Op::Bspatch { .. } => "bspatch",
    }
}

impl<'s> Base<'_, 's> {
    /// Applies a bsdiff patch to its old file (checked against its digest first) and writes the result.
    fn bspatch(&mut self, cur: &mut Cursor<'_>, sink: &mut Sink, patch: &[u8]) -> Result<()> {
        let l = self.target;
        let Op::Bspatch {
            src,
            src_digest,
            len,
            ..
        } = cur.ops[cur.i]
        else {
            return Ok(());
        };
        let err = |detail: String| DeltaError::Op {
            layer: l.diff_id,
            op: cur.i,
            kind: "bspatch",
            detail,
        };
        let mut old = vec![0u8; src.len as usize];
        let base_layer = self.layers[src.layer as usize];
        self.reader(src.layer)?
            .read_at(src.offset, &mut old)
            .map_err(|e| {
                err(format!(
                    "reading base layer {base_layer}: {}",
                    crate::chain(&e)
                ))
            })?;
        let got = crate::encode::digest_of(&old);
        if got != src_digest {
            return Err(err(format!(
                "its source (base layer {}, {} bytes at {}) hashes to {}, the delta records {}",
                base_layer,
                src.len,
                src.offset,
                hex(&got),
                hex(&src_digest)
            )));
        }
        let mut new = Vec::with_capacity(len as usize);
        bsdiff::patch(&old, &mut &patch[..], &mut new)
            .map_err(|e| err(format!("the patch does not apply: {e}")))?;
        if new.len() as u64 != len {
            return Err(err(format!(
                "the patch makes {} bytes, the delta records {len}",
                new.len()
            )));
        }
        cur.hasher.update(&new);
        sink.write(&new)?;
        finish_op(l, cur)
    }

    /// Copies a base range to the sink, checking it against the operation's digest.
    fn reuse(&mut self, cur: &mut Cursor<'_>, sink: &mut Sink, buf: &mut [u8]) -> Result<()> {
        let l = self.target;
        let Op::Reuse { src, .. } = cur.ops[cur.i] else {
            return Ok(());
        };
        let base_layer = self.layers[src.layer as usize];
        let reader = self.reader(src.layer)?;
        let mut done = 0u64;
        while done < src.len {
            let n = (src.len - done).min(buf.len() as u64) as usize;
            reader
                .read_at(src.offset + done, &mut buf[..n])
                .map_err(|e| DeltaError::Op {
                    layer: l.diff_id,
                    op: cur.i,
                    kind: "reuse",
                    detail: format!("reading base layer {base_layer}: {}", crate::chain(&e)),
                })?;
            cur.hasher.update(&buf[..n]);
            sink.write(&buf[..n])?;
            done += n as u64;
        }
        finish_op(l, cur)
    }

    /// The reader of one base layer, opened on first use.
    fn reader(&mut self, layer: u32) -> Result<&mut LayerReader<'s>> {
        let slot = &mut self.readers[layer as usize];
        if slot.is_none() {
            *slot = Some(self.store.open_layer(&self.layers[layer as usize])?);
        }
        Ok(slot.as_mut().expect("set above"))
    }

    /// A part's reference, each range checked against its digest before it is used.
    fn prefix(&mut self, pi: usize, part: &Part) -> Result<Vec<u8>> {
        let l = self.target;
        let mut prefix = vec![0u8; part.ref_len() as usize];
        let mut at = 0usize;
        for (ri, r) in part.refs.iter().enumerate() {
            let dst = &mut prefix[at..at + r.src.len as usize];
            self.reader(r.src.layer)?.read_at(r.src.offset, dst)?;
            let got = crate::encode::digest_of(dst);
            if got != r.digest {
                return Err(DeltaError::Op {
                layer: l.diff_id,
                op: pi,
                kind: "part",
                detail: format!(
                    "reference {ri} (base layer {}, {} bytes at {}) hashes to {}, the delta records {}",
                    self.layers[r.src.layer as usize],
                    r.src.len,
                    r.src.offset,
                    hex(&got),
                    hex(&r.digest)
                ),
            });
            }
            at += r.src.len as usize;
        }
        Ok(prefix)
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

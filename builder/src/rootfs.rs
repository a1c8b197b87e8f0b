//! Materialised stage filesystems, made only when a step needs to look at one.
//!
//! Most Kubefile steps never need the stage's files: a `COPY` onto `scratch` only reads the
//! build context. `RUN`, `COPY --from`, a `COPY` whose destination may be an existing
//! directory, and `--chown` by name do. [`WorkRoot`] applies the stage's layers into a work
//! directory the first time one of those needs it, and afterwards only the layers added since.

use crate::error::{io, Result};
use crate::state::LayerRef;
use chasi_layers::{ApplyOptions, Digest, Store};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A stage's filesystem in a work directory, kept in step with the stage's layers.
#[derive(Debug)]
pub struct WorkRoot {
    dir: PathBuf,
    applied: Vec<Digest>,
}

impl WorkRoot {
    /// A work root in `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        WorkRoot {
            dir,
            applied: Vec::new(),
        }
    }

    /// Brings the directory to exactly `layers` and returns its path.
    pub fn sync(&mut self, store: &Store, layers: &[LayerRef]) -> Result<&Path> {
        let wanted: Vec<Digest> = layers.iter().map(|l| l.diff_id).collect();
        let is_prefix =
            wanted.len() >= self.applied.len() && wanted[..self.applied.len()] == self.applied[..];
        if !is_prefix {
            if self.dir.exists() {
                fs::remove_dir_all(&self.dir).map_err(io("remove", &self.dir))?;
            }
            self.applied.clear();
        }
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let missing = &wanted[self.applied.len()..];
        if !missing.is_empty() {
            store.unpack(missing, &self.dir, &ApplyOptions::default())?;
            self.applied.extend_from_slice(missing);
        }
        Ok(&self.dir)
    }

    /// The directory (whatever state it is in).
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// Streams a tar produced by `write` into the store as a layer, without a temporary file:
/// the producer runs on its own thread and hands the stream to the store's ingest
/// ([`Store::ingest_written`]) as it is written.
pub fn ingest_stream<F>(
    store: &Store,
    progress: Option<Progress<'_>>,
    write: F,
) -> Result<chasi_layers::LayerInfo>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send,
{
    // A built layer's blob is needed at once (the image's manifest names it): make its frames now.
    let ingested = store.ingest_written(chasi_layers::Framing::BlobFrames, |out| {
        let mut counted = Counting {
            inner: out,
            pending: 0,
            progress,
        };
        let res = write(&mut counted);
        counted.report();
        res
    })?;
    Ok(ingested?)
}

/// Reports bytes as they are processed (the live progress display's byte count and rate).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Counts what the producer writes and reports it in 1 MiB steps (and the rest at the end).
struct Counting<'p, W> {
    inner: W,
    pending: u64,
    progress: Option<Progress<'p>>,
}

impl<W> Counting<'_, W> {
    fn report(&mut self) {
        if let (Some(report), true) = (self.progress, self.pending > 0) {
            report(self.pending);
            self.pending = 0;
        }
    }
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        if self.pending >= 1 << 20 {
            self.report();
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

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
/// the producer runs on its own thread and writes into a pipe the store reads from.
pub fn ingest_stream<F>(
    store: &Store,
    progress: Option<Progress<'_>>,
    write: F,
) -> Result<chasi_layers::LayerInfo>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send,
{
    let (reader, writer) = std::io::pipe().map_err(io("create a pipe for", store.root()))?;
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, writer);
            let res = write(&mut w);
            // Flushing closes the pipe for the reader either way (the writer drops here).
            let flushed = w.flush().map_err(io("write a layer for", store.root()));
            res.and(flushed)
        });
        let ingested = store.ingest_tar(Counting {
            inner: reader,
            pending: 0,
            progress,
        });
        let produced = producer
            .join()
            .unwrap_or(Err(crate::BuildError::ThreadPanicked(
                crate::error::BuildThread::LayerWriter,
            )));
        // The producer's error explains a broken stream better than the reader's.
        produced?;
        Ok(ingested?)
    })
}

/// Reports bytes as they are processed (the live progress display's byte count and rate).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Counts what the store reads and reports it in 1 MiB steps (and the rest at the end).
struct Counting<'p, R> {
    inner: R,
    pending: u64,
    progress: Option<Progress<'p>>,
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(report) = self.progress {
            self.pending += n as u64;
            if self.pending >= 1 << 20 || (n == 0 && self.pending > 0) {
                report(self.pending);
                self.pending = 0;
            }
        }
        Ok(n)
    }
}

//! A bounded byte pipe between threads: a producer writes a tar (`Write`) while a consumer ingests it (`Read`), so
//! the stream never exists in full in memory or on disk. Used to ingest a directory and to ingest a diff.
//! [`read_ahead`] runs the other way: a thread reads a stream (a layer: chunks decompressed and verified) a few
//! blocks ahead of its consumer (the applier creating files), so the two overlap, and a read error reaches the
//! consumer as it was.

use std::io::{self, Read, Write};

/// A writer and the reader of what it writes, at most `depth` writes apart.
pub(crate) fn channel(depth: usize) -> (ChannelWriter, ChannelReader) {
    let (tx, rx) = std::sync::mpsc::sync_channel(depth);
    (ChannelWriter { tx }, ChannelReader::new(rx))
}

pub(crate) struct ChannelWriter {
    pub(crate) tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
}
impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "ingest stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The consumer side of a channel of blocks: the bytes in order, then a producer's error (if it sent one), then
/// end of stream once every sender is gone.
pub(crate) struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}
impl ChannelReader {
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}
impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(block) => {
                    self.cur = block?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `r` on a thread of `scope`, at most `depth` blocks of `block` bytes ahead of the returned reader. The
/// reader gives the bytes in order, then the error `r` failed with (if any), then end of stream. Dropping the
/// reader stops the thread at its next block.
pub(crate) fn read_ahead<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    mut r: R,
    block: usize,
    depth: usize,
) -> ChannelReader {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(depth);
    scope.spawn(move || loop {
        let mut buf = Vec::with_capacity(block);
        let sent = match (&mut r).take(block as u64).read_to_end(&mut buf) {
            Ok(0) => return,
            Ok(_) => tx.send(Ok(buf)),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    });
    ChannelReader::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data`, then fails.
    struct Failing {
        data: io::Cursor<Vec<u8>>,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.data.read(buf)? {
                0 => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk c1 is corrupt",
                )),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn read_ahead_keeps_order_and_the_error() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let got = std::thread::scope(|s| {
            let mut r = read_ahead(s, io::Cursor::new(data.clone()), 333, 2);
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        });
        assert_eq!(got.expect("read"), data);
        let err = std::thread::scope(|s| {
            let mut r = read_ahead(
                s,
                Failing {
                    data: io::Cursor::new(data.clone()),
                },
                4096,
                1,
            );
            let mut out = Vec::new();
            let e = r.read_to_end(&mut out).expect_err("the source fails");
            (out.len(), e)
        });
        assert_eq!(
            err.0,
            data.len() / 4096 * 4096,
            "whole blocks before the failing one"
        );
        assert!(
            err.1.to_string().contains("chunk c1 is corrupt"),
            "{}",
            err.1
        );
    }

    #[test]
    fn dropping_the_reader_stops_the_thread() {
        let endless = io::repeat(1);
        std::thread::scope(|s| {
            let mut r = read_ahead(s, endless, 1024, 1);
            let mut b = [0u8; 10];
            r.read_exact(&mut b).expect("read");
            drop(r);
        });
    }
}

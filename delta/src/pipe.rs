//! The bounded pipe between a layer's rebuild and the store's ingest: the rebuild always holds its latest
//! buffer back, so the store sees the end of the tar only once every check passed, and an error otherwise.

use crate::error::{DeltaError, Result};
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender};

/// The producer's end of the pipe to the store: it always holds the latest buffer back, so that the
/// store sees the end of the tar only once every check passed, and an error instead otherwise.
pub(crate) struct Sink {
    tx: Option<SyncSender<std::result::Result<Vec<u8>, String>>>,
    held: Vec<u8>,
}

const SINK_BUF: usize = 1 << 20;

impl Sink {
    pub(crate) fn new(tx: SyncSender<std::result::Result<Vec<u8>, String>>) -> Self {
        Sink {
            tx: Some(tx),
            held: Vec::with_capacity(SINK_BUF),
        }
    }

    /// Queues `data`; [`DeltaError::StoreStopped`] once the store has stopped reading (its own error is the one
    /// to report), so the rebuild stops too instead of decoding the rest for nothing.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.held.len() + data.len() > SINK_BUF && !self.held.is_empty() {
            let full = std::mem::replace(&mut self.held, Vec::with_capacity(SINK_BUF));
            let sent = self.tx.as_ref().is_some_and(|tx| tx.send(Ok(full)).is_ok());
            if !sent {
                self.tx = None;
                return Err(DeltaError::StoreStopped);
            }
        }
        self.held.extend_from_slice(data);
        Ok(())
    }

    /// Sends what is held, then the end of the stream (an empty buffer, which `write` never sends).
    pub(crate) fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let held = std::mem::take(&mut self.held);
            if !held.is_empty() && tx.send(Ok(held)).is_err() {
                return;
            }
            let _ = tx.send(Ok(Vec::new()));
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(why));
        }
    }
}

/// The store's end of the pipe.
pub(crate) struct ChannelReader {
    rx: Receiver<std::result::Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ChannelReader {
    pub(crate) fn new(rx: Receiver<std::result::Result<Vec<u8>, String>>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            ended: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(next)) if next.is_empty() => self.ended = true,
                Ok(Ok(next)) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Ok(Err(why)) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
                // The producer ended without finishing: never a complete tar.
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the delta's rebuild stopped",
                    ))
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

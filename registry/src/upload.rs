//! Resumable chunked blob uploads.
//!
//! `oci-client` pushes a blob as a chunked upload it cannot resume: it keeps the upload's URL
//! to itself and has no request for an upload's status, so after a dropped connection the
//! whole blob went again from byte 0. For a layer of hundreds of megabytes over a site's
//! flaky uplink that decides whether a push ever finishes. So the four requests of the
//! distribution spec's chunked upload are spoken here, over `reqwest` (the HTTP client
//! `oci-client` is built on, with the same TLS settings, on the session's runtime), while
//! authentication stays `oci-client`'s (the session's bearer token, or basic credentials):
//!
//! 1. `POST /v2/<name>/blobs/uploads/` opens an upload (`202`, `Location`);
//! 2. `PATCH <location>` sends one piece of at most [`PIECE`] bytes with `Content-Range`
//!    (`202`, the next `Location`, `Range: 0-<last byte held>`);
//! 3. after a failure, `GET <location>` asks how much the registry holds (`204`, `Range`)
//!    and the upload goes on from there; an upload the registry no longer knows or will not
//!    resume (`404`, `400`, `416`) is opened again from byte 0;
//! 4. `PUT <location>?digest=<digest>` closes it (`201`); the registry checks the digest.
//!
//! Failures are sorted as everywhere else ([`Session::give_up`]): connection errors, `5xx`,
//! `408` and `429` are retried after the session's backoff, or after the `Retry-After` the
//! registry names if that is longer (at most [`MAX_RETRY_AFTER`]). The count of tries starts
//! again whenever the registry acknowledges more bytes than before, so a long upload over a
//! link that drops now and then finishes as long as each connection gets a piece through.
//! Credentials are sent only to the registry's own host and port: a `Location` may point
//! elsewhere (object storage behind the registry).
//!
//! The store is read one piece ahead on another thread, so reading and sending overlap.

use crate::client::Session;
use crate::error::{RegistryError, Result};
use bytes::Bytes;
use chasi_layers::{Digest, Store};
use oci_client::errors::OciDistributionError;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The largest piece sent in one `PATCH`.
pub(crate) const PIECE: usize = 4 << 20;

/// The longest `Retry-After` waited for; a registry asking for more is tried again sooner.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Uploads blob `digest` (`size` bytes) of the store to the session's repository.
pub(crate) fn upload(s: &Session, store: &Store, digest: &Digest, size: u64) -> Result<()> {
    let what = format!("blob {digest}");
    std::thread::scope(|scope| {
        let mut up = Upload {
            s,
            pieces: Pieces::new(scope, store, digest),
            digest,
            size,
            location: None,
            acked: 0,
            stale: false,
            asked: false,
        };
        let policy = s.retry_policy();
        let attempts = policy.attempts.max(1);
        let (mut failures, mut best, mut refreshed) = (0u32, 0u64, false);
        loop {
            let broken = match up.step() {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    if up.acked > best {
                        (best, failures, refreshed) = (up.acked, 0, false);
                    }
                    continue;
                }
                Err(b) => b,
            };
            match broken {
                Broken::Store(source) => {
                    return Err(RegistryError::StoreBlob {
                        reference: s.shown.clone(),
                        digest: *digest,
                        source,
                    })
                }
                // A token that expired during a long upload: fetch a new one, once.
                Broken::Http { ref error, .. } if is_unauthorized(error) && !refreshed => {
                    refreshed = true;
                    s.refresh_push_token()?;
                }
                Broken::Http {
                    error,
                    after,
                    reopen,
                } => {
                    failures += 1;
                    if failures >= attempts || !(reopen || s.is_retried(&error)) {
                        return Err(s.give_up(error, failures, "push", &what));
                    }
                    let wait = policy.delay(failures);
                    std::thread::sleep(after.map_or(wait, |a| a.min(MAX_RETRY_AFTER).max(wait)));
                }
            }
        }
    })
}

fn is_unauthorized(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::ServerError { code: 401, .. })
}

/// Why one request did not move the upload on.
enum Broken {
    /// The conversation failed; `after` is the registry's `Retry-After`; `reopen` when the
    /// registry dropped the upload, which is then opened again whatever the status was.
    Http {
        error: OciDistributionError,
        after: Option<Duration>,
        reopen: bool,
    },
    /// Reading the blob from the store failed: not retried.
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl From<reqwest::Error> for Broken {
    fn from(e: reqwest::Error) -> Self {
        Broken::Http {
            error: OciDistributionError::RequestError(e),
            after: None,
            reopen: false,
        }
    }
}

/// One upload in progress.
struct Upload<'scope, 'env> {
    s: &'env Session,
    pieces: Pieces<'scope, 'env>,
    digest: &'env Digest,
    size: u64,
    /// The URL of the open upload, if one is open.
    location: Option<Url>,
    /// Bytes the registry holds.
    acked: u64,
    /// The last request failed: `acked` is to be asked for before sending more.
    stale: bool,
    /// `acked` is what the registry said when asked (so a `416` means it will not resume).
    asked: bool,
}

/// A response's status and headers, and for an error the start of its body (which names the
/// registry's error code, `BLOB_UPLOAD_INVALID`).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    message: String,
}

impl Upload<'_, '_> {
    /// Sends the next request; `Ok(true)` once the blob is committed.
    fn step(&mut self) -> std::result::Result<bool, Broken> {
        let Some(location) = self.location.clone() else {
            let url = self.s.upload_url().map_err(spec)?;
            let a = self.send(Method::POST, url.clone(), None, None)?;
            self.expect(&a, &url)?;
            self.location = Some(self.next_location(&a, &url)?);
            (self.acked, self.stale, self.asked) = (0, false, false);
            return Ok(false);
        };
        if self.stale {
            let a = match self.send(Method::GET, location.clone(), None, None) {
                Ok(a) => a,
                Err(e) => return Err(self.keep_stale(e)),
            };
            self.gone(&a, &location)?;
            self.expect(&a, &location)?;
            self.acked = held(&a.headers).unwrap_or(0).min(self.size);
            self.location = Some(self.next_location(&a, &location)?);
            (self.stale, self.asked) = (false, true);
            return Ok(false);
        }
        if self.acked < self.size {
            let piece = self
                .pieces
                .at(self.acked, self.size)
                .map_err(Broken::Store)?;
            let end = self.acked + piece.len() as u64;
            let range = format!("{}-{}", self.acked, end - 1);
            let a = match self.send(Method::PATCH, location.clone(), Some(&range), Some(piece)) {
                Ok(a) => a,
                Err(e) => return Err(self.keep_stale(e)),
            };
            if a.status == StatusCode::RANGE_NOT_SATISFIABLE && !self.asked {
                // The registry holds another amount than it acknowledged: ask it.
                self.stale = true;
                return Err(status_error(&a, &location, false));
            }
            self.gone(&a, &location)?;
            // A server error may come after part of the piece was stored: ask before going on.
            self.stale = a.status.is_server_error();
            self.expect(&a, &location)?;
            self.location = Some(self.next_location(&a, &location)?);
            self.asked = false;
            match held(&a.headers) {
                // `0-0` after one byte is that byte (see `held`).
                Some(h) if h != end && !(h == 0 && end == 1) => self.stale = true,
                _ => self.acked = end,
            }
            return Ok(false);
        }
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &self.digest.to_string());
        let a = match self.send(Method::PUT, url.clone(), None, Some(Bytes::new())) {
            Ok(a) => a,
            Err(e) => return Err(self.keep_stale(e)),
        };
        self.gone(&a, &url)?;
        self.expect(&a, &url)?;
        Ok(true)
    }

    /// After a failed request the registry's position is unknown.
    fn keep_stale(&mut self, e: Broken) -> Broken {
        self.stale = true;
        e
    }

    /// Fails when the registry dropped or refused the upload, which is then opened again.
    fn gone(&mut self, a: &Answer, url: &Url) -> std::result::Result<(), Broken> {
        let gone = matches!(
            a.status,
            StatusCode::NOT_FOUND
                | StatusCode::BAD_REQUEST
                | StatusCode::GONE
                | StatusCode::RANGE_NOT_SATISFIABLE
        );
        if !gone {
            return Ok(());
        }
        (self.location, self.acked, self.stale, self.asked) = (None, 0, false, false);
        Err(status_error(a, url, true))
    }

    fn expect(&self, a: &Answer, url: &Url) -> std::result::Result<(), Broken> {
        if a.status.is_success() {
            Ok(())
        } else {
            Err(status_error(a, url, false))
        }
    }

    /// The upload's URL after `a`: its `Location`, relative to the request's URL.
    fn next_location(&self, a: &Answer, url: &Url) -> std::result::Result<Url, Broken> {
        let location = a
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(spec(OciDistributionError::RegistryNoLocationError))?;
        url.join(location).map_err(|e| {
            spec(OciDistributionError::UrlParseError(format!(
                "{location}: {e}"
            )))
        })
    }

    fn send(
        &self,
        method: Method,
        url: Url,
        range: Option<&str>,
        body: Option<Bytes>,
    ) -> std::result::Result<Answer, Broken> {
        let s = self.s;
        let mut req = s.http().request(method, url.clone());
        if let Some(auth) = s.upload_auth(&url) {
            req = req.header(AUTHORIZATION, auth);
        }
        if let Some(r) = range {
            req = req.header("Content-Range", r);
        }
        req = match body {
            Some(b) => req
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )
                .body(b),
            None => req.header(CONTENT_LENGTH, 0),
        };
        s.block_on(async {
            let res = req.send().await?;
            let (status, headers) = (res.status(), res.headers().clone());
            let message = if status.is_success() {
                String::new()
            } else {
                let text = res.text().await.unwrap_or_default();
                text.trim().chars().take(400).collect()
            };
            Ok(Answer {
                status,
                headers,
                message,
            })
        })
    }
}

fn status_error(a: &Answer, url: &Url, reopen: bool) -> Broken {
    let mut shown = url.clone();
    shown.set_query(None);
    Broken::Http {
        error: OciDistributionError::ServerError {
            code: a.status.as_u16(),
            url: shown.to_string(),
            message: a.message.clone(),
        },
        after: retry_after(&a.headers, SystemTime::now()),
        reopen,
    }
}

fn spec(e: OciDistributionError) -> Broken {
    Broken::Http {
        error: e,
        after: None,
        reopen: false,
    }
}

/// The bytes a registry holds by its `Range: 0-<last>` header (`0-0` with nothing sent, as
/// the distribution registry writes it, is read as nothing: a byte it does hold is then sent
/// again, which it refuses with `416` and the upload opens again).
fn held(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(reqwest::header::RANGE)?.to_str().ok()?;
    let v = v.trim().strip_prefix("bytes=").unwrap_or(v.trim());
    let (from, to) = v.split_once('-')?;
    let (from, to): (u64, u64) = (from.parse().ok()?, to.parse().ok()?);
    if from != 0 {
        return None;
    }
    Some(if to == 0 { 0 } else { to + 1 })
}

/// `Retry-After` as a wait from `now`: delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = u64::try_from(chasi_oci::time::http_date(v)?).ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// The blob read from the store in pieces, one ahead of the upload, by a reader thread;
/// started again from the beginning when the upload has to go back before the current piece.
struct Pieces<'scope, 'env> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    store: &'env Store,
    digest: &'env Digest,
    rx: Option<mpsc::Receiver<io::Result<Bytes>>>,
    /// The piece last received and its offset.
    current: Bytes,
    current_at: u64,
}

type StoreError = Box<dyn std::error::Error + Send + Sync>;

impl<'scope, 'env> Pieces<'scope, 'env> {
    fn new(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        store: &'env Store,
        digest: &'env Digest,
    ) -> Self {
        Pieces {
            scope,
            store,
            digest,
            rx: None,
            current: Bytes::new(),
            current_at: 0,
        }
    }

    /// The bytes from `offset` to the end of the piece holding it (a blob of `size` bytes).
    fn at(&mut self, offset: u64, size: u64) -> std::result::Result<Bytes, StoreError> {
        if offset < self.current_at {
            self.rx = None; // the reader stops at its next send
            (self.current, self.current_at) = (Bytes::new(), 0);
        }
        loop {
            let end = self.current_at + self.current.len() as u64;
            if offset < end {
                let from = (offset - self.current_at) as usize;
                return Ok(self.current.slice(from..));
            }
            if end >= size {
                return Err(
                    format!("the store's blob ends at byte {end}, before its size {size}").into(),
                );
            }
            if self.rx.is_none() {
                let (tx, rx) = mpsc::sync_channel(1);
                let (store, digest) = (self.store, self.digest);
                self.scope.spawn(move || read_ahead(store, digest, &tx));
                self.rx = Some(rx);
            }
            let next = self
                .rx
                .as_ref()
                .and_then(|rx| rx.recv().ok())
                .unwrap_or_else(|| Err(io::Error::other("the store's reader stopped")))?;
            self.current_at = end;
            self.current = next;
        }
    }
}

/// Sends the blob's pieces until it ends, the receiver goes, or the store fails.
fn read_ahead(store: &Store, digest: &Digest, tx: &mpsc::SyncSender<io::Result<Bytes>>) {
    let mut reader = match store.open_blob(digest) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(io::Error::other(e.to_string())));
            return;
        }
    };
    loop {
        let mut piece = vec![0u8; PIECE];
        let mut n = 0;
        while n < PIECE {
            match reader.read(&mut piece[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if n == 0 {
            return;
        }
        piece.truncate(n);
        if tx.send(Ok(Bytes::from(piece))).is_err() || n < PIECE {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_range_a_registry_holds() {
        assert_eq!(held(&headers(&[("range", "0-4194303")])), Some(4 << 20));
        assert_eq!(held(&headers(&[("range", "bytes=0-9")])), Some(10));
        assert_eq!(held(&headers(&[("range", "0-0")])), Some(0));
        assert_eq!(held(&headers(&[("range", "5-9")])), None);
        assert_eq!(held(&headers(&[("range", "0-x")])), None);
        assert_eq!(held(&headers(&[])), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let h = |v| headers(&[("retry-after", v)]);
        assert_eq!(retry_after(&h("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date passed already"
        );
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }
}

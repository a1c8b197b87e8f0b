//! Remote sources (`APP name https://…`): downloaded once, kept in the store, re-validated cheaply.
//!
//! sealer downloaded every remote file on every build, before checking anything. Here a
//! download is stored as a blob in the layer store (so it is verified on every read and
//! shared between builds and images), and a cache record maps the URL to the blob with the
//! server's validators (`ETag`, `Last-Modified`). A later build sends a conditional request and
//! reuses the blob on `304 Not Modified`; without a network (air-gapped CI) it reuses the last
//! download and says so. The step's cache identity includes the blob digest, so a changed
//! remote file is a cache miss for that step and everything after it.

use chasi_layers::{Digest, Store};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::time::Duration;

/// A remote file available in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The URL it came from.
    pub url: String,
    /// The blob holding its bytes.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The file name it gets in the image (the URL's last path segment).
    pub file_name: String,
    /// Validators from the server, for the next conditional request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Last-Modified` from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// How a fetch was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOrigin {
    /// Downloaded now.
    Downloaded,
    /// The server said the stored copy is current.
    NotModified,
    /// The network was not asked (`offline`) or not reachable; the stored copy was used.
    Stored,
}

/// Why a remote source is not available.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an `http(s)://` URL with a host.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request failed and nothing is stored for this URL.
    #[error("cannot download {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// The transport or HTTP error.
        reason: String,
    },
    /// Offline mode and nothing is stored for this URL.
    #[error("{url} is not in the store and the build is offline")]
    NotStored {
        /// The URL.
        url: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] chasi_layers::Error),
}

/// Downloads remote sources into a store.
pub struct Fetcher<'s> {
    store: &'s Store,
    offline: bool,
    agent: ureq::Agent,
}

impl<'s> Fetcher<'s> {
    /// A fetcher writing into `store`; with `offline` it never touches the network.
    pub fn new(store: &'s Store, offline: bool) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .http_status_as_error(false)
            .user_agent(concat!("chasi/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            store,
            offline,
            agent: config.into(),
        }
    }

    /// Makes `url` available in the store and returns where, and how it got there.
    pub fn fetch(&self, url: &str) -> Result<(Fetched, FetchOrigin), FetchError> {
        let file_name = file_name_of(url)?;
        let key = cache_key(url);
        let stored: Option<Fetched> = self
            .store
            .get_cache(&key)?
            .and_then(|v| serde_json::from_value::<Fetched>(v).ok())
            .filter(|f| f.url == url && self.store.has_blob(&f.digest));
        if self.offline {
            return stored
                .map(|f| (f, FetchOrigin::Stored))
                .ok_or_else(|| FetchError::NotStored { url: url.into() });
        }
        let mut request = self.agent.get(url);
        if let Some(s) = &stored {
            if let Some(etag) = &s.etag {
                request = request.header("If-None-Match", etag);
            }
            if let Some(lm) = &s.last_modified {
                request = request.header("If-Modified-Since", lm);
            }
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(err) => {
                return match stored {
                    Some(s) => Ok((s, FetchOrigin::Stored)),
                    None => Err(FetchError::Download {
                        url: url.into(),
                        reason: chasi_layers::error::chain(&err),
                    }),
                }
            }
        };
        let status = response.status().as_u16();
        if status == 304 {
            if let Some(s) = stored {
                return Ok((s, FetchOrigin::NotModified));
            }
        }
        if !(200..300).contains(&status) {
            return Err(FetchError::Download {
                url: url.into(),
                reason: format!("the server answered HTTP {status}"),
            });
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let last_modified = header("last-modified");
        let expected_len: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
        let mut body = response.into_body();
        let mut reader = BodyReader {
            inner: body.as_reader(),
            received: 0,
            error: None,
        };
        let stored_blob = self.store.put_blob_from(&mut reader, None);
        if let Some(reason) = reader.error {
            return Err(FetchError::Download {
                url: url.into(),
                reason: format!(
                    "the transfer broke after {} bytes: {reason}",
                    reader.received
                ),
            });
        }
        let desc = stored_blob?;
        if let Some(len) = expected_len {
            if len != desc.size {
                return Err(FetchError::Download {
                    url: url.into(),
                    reason: format!("received {} bytes of {len} (connection cut?)", desc.size),
                });
            }
        }
        let fetched = Fetched {
            url: url.into(),
            digest: desc.digest,
            size: desc.size,
            file_name,
            etag,
            last_modified,
        };
        let value = serde_json::to_value(&fetched).map_err(|e| FetchError::Download {
            url: url.into(),
            reason: e.to_string(),
        })?;
        self.store.put_cache(&key, &value)?;
        Ok((fetched, FetchOrigin::Downloaded))
    }
}

/// The response body as the store reads it. It remembers a transport error, so that a broken
/// download is reported as such (the store, seeing a read error, keeps nothing).
struct BodyReader<R> {
    inner: R,
    received: u64,
    error: Option<String>,
}

impl<R: Read> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.received += n as u64;
                Ok(n)
            }
            Err(err) => {
                self.error = Some(err.to_string());
                Err(err)
            }
        }
    }
}

/// The cache key of a URL's record (a name space of its own inside the store's cache).
pub fn cache_key(url: &str) -> Digest {
    Digest::of(format!("chasi.fetch.v1\0{url}").as_bytes())
}

/// The file name a download gets: the last path segment of the URL, which must be a usable,
/// single path segment.
pub fn file_name_of(url: &str) -> Result<String, FetchError> {
    let invalid = |reason: &str| FetchError::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("only http:// and https:// are supported"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("the URL must end in a file name"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            file_name_of("https://example.com/a/kube-flannel.yml?x=1#f").unwrap(),
            "kube-flannel.yml"
        );
        assert!(file_name_of("https://example.com/").is_err());
        assert!(file_name_of("https:///x").is_err());
        assert!(file_name_of("ftp://example.com/x").is_err());
        assert!(file_name_of("https://example.com/a/..").is_err());
    }
}

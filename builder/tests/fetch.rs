//! Remote APP sources against a real HTTP server on loopback: download, conditional
//! re-validation, changed content, offline and unreachable fallbacks, truncated bodies.

use chasi_builder::fetch::{FetchError, FetchOrigin, Fetcher};
use chasi_layers::Store;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the test server serves for `/app.yaml`: body, ETag, and whether to cut the body short.
struct Content {
    body: Vec<u8>,
    etag: String,
    truncate: bool,
}

struct Server {
    base: String,
    content: Arc<Mutex<Content>>,
    requests: Arc<AtomicUsize>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let content = Arc::new(Mutex::new(Content {
        body: b"kind: ConfigMap\n".to_vec(),
        etag: "\"v1\"".into(),
        truncate: false,
    }));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (content.clone(), requests.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            r.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut if_none_match = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("if-none-match:") {
                    if_none_match = Some(v.trim().to_string());
                }
            }
            let content = c.lock().unwrap();
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let response = if path != "/app.yaml" {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            } else if if_none_match.as_deref() == Some(content.etag.as_str()) {
                format!(
                    "HTTP/1.1 304 Not Modified\r\netag: {}\r\nconnection: close\r\n\r\n",
                    content.etag
                )
                .into_bytes()
            } else {
                let sent = if content.truncate {
                    &content.body[..content.body.len() / 2]
                } else {
                    &content.body[..]
                };
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: {}\r\nconnection: close\r\n\r\n",
                    content.body.len(),
                    content.etag
                )
                .into_bytes();
                r.extend_from_slice(sent);
                r
            };
            let _ = stream.write_all(&response);
            let _ = stream.flush();
        }
    });
    Server {
        base,
        content,
        requests,
    }
}

fn read_blob(store: &Store, digest: &chasi_layers::Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_blob(digest)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn download_revalidate_change_offline() {
    let server = serve();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let url = format!("{}/app.yaml", server.base);
    let fetcher = Fetcher::new(&store, false);

    let (first, origin) = fetcher.fetch(&url).unwrap();
    assert_eq!(origin, FetchOrigin::Downloaded);
    assert_eq!(first.file_name, "app.yaml");
    assert_eq!(read_blob(&store, &first.digest), b"kind: ConfigMap\n");

    let (again, origin) = fetcher.fetch(&url).unwrap();
    assert_eq!(origin, FetchOrigin::NotModified);
    assert_eq!(again.digest, first.digest);

    {
        let mut c = server.content.lock().unwrap();
        c.body = b"kind: Secret\n".to_vec();
        c.etag = "\"v2\"".into();
    }
    let (changed, origin) = fetcher.fetch(&url).unwrap();
    assert_eq!(origin, FetchOrigin::Downloaded);
    assert_ne!(changed.digest, first.digest);
    assert_eq!(read_blob(&store, &changed.digest), b"kind: Secret\n");

    let before = server.requests.load(Ordering::SeqCst);
    let (offline, origin) = Fetcher::new(&store, true).fetch(&url).unwrap();
    assert_eq!(origin, FetchOrigin::Stored);
    assert_eq!(offline.digest, changed.digest);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        before,
        "offline never asks the network"
    );
}

#[test]
fn errors_are_precise_and_store_nothing() {
    let server = serve();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let fetcher = Fetcher::new(&store, false);

    let missing = format!("{}/missing.yaml", server.base);
    let err = fetcher.fetch(&missing).unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    server.content.lock().unwrap().truncate = true;
    let url = format!("{}/app.yaml", server.base);
    let err = fetcher.fetch(&url).unwrap_err();
    assert!(matches!(err, FetchError::Download { .. }), "{err}");
    assert!(matches!(
        Fetcher::new(&store, true).fetch(&url),
        Err(FetchError::NotStored { .. })
    ));

    let err = Fetcher::new(&store, true)
        .fetch("https://example.invalid/")
        .unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err}");
}

#[test]
fn unreachable_server_falls_back_to_the_stored_copy() {
    let server = serve();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let url = format!("{}/app.yaml", server.base);
    let (first, _) = Fetcher::new(&store, false).fetch(&url).unwrap();

    // A URL on a port nobody listens on has no record: a clear error.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/app.yaml", closed.local_addr().unwrap());
    drop(closed);
    let err = Fetcher::new(&store, false).fetch(&dead).unwrap_err();
    assert!(err.to_string().contains("cannot download"), "{err}");

    // The stored URL still resolves when its server is gone.
    drop(server);
    let (again, origin) = Fetcher::new(&store, false).fetch(&url).unwrap();
    assert!(matches!(
        origin,
        FetchOrigin::NotModified | FetchOrigin::Stored
    ));
    assert_eq!(again.digest, first.digest);
}

//! `chasi push` and `chasi pull` against a real `docker-registry` (Debian's build of the CNCF
//! distribution registry) that each test starts on a free 127.0.0.1 port with its own storage
//! and stops: skopeo reads what we push and we read what skopeo pushes, with the same digests;
//! a second push uploads nothing; multi-platform indexes; htpasswd basic auth; TLS with a CA
//! made here; bearer tokens from a token server of the test's own; a registry killed in the
//! middle of a push; a blob corrupted in the registry's storage; `--build-mode all` carrying
//! container images; a build cache shared through the registry.

mod common;

use common::{fails, need, ok, run, sh, write_files};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` child; stopped when dropped.
struct Registry {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    htpasswd: Option<PathBuf>,
    /// More configuration (an `auth:` block of another kind).
    extra: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        Self::with(dir, None, None)
    }

    fn with(dir: &Path, tls: Option<(PathBuf, PathBuf)>, htpasswd: Option<PathBuf>) -> Registry {
        need("docker-registry", "docker-registry");
        fs::create_dir_all(dir).unwrap();
        let mut r = Registry {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            log: dir.join("registry.log"),
            tls,
            htpasswd,
            extra: String::new(),
        };
        r.restart();
        r
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    fn restart(&mut self) {
        let storage = self.dir.join("storage");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n  secret: chasi-test\n",
            storage.display(),
            self.addr()
        );
        if let Some((cert, key)) = &self.tls {
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(h) = &self.htpasswd {
            yaml += &format!(
                "auth:\n  htpasswd:\n    realm: chasi-test\n    path: {}\n",
                h.display()
            );
        }
        yaml += &self.extra;
        let config = self.dir.join("config.yml");
        fs::write(&config, yaml).unwrap();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}:\n{}",
                self.addr(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the registry was asked `GET /v2/` (the version check, which also
    /// tells a client how to authenticate).
    fn pings(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("response completed") && l.contains("http.request.uri=/v2/ "))
            .count()
    }

    /// How many requests of `method` on a path containing `path` the registry logged.
    fn requests(&self, method: &str, path: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(&format!("http.request.method={method} ")))
            .filter(|l| l.contains("response completed"))
            .filter(|l| {
                l.split("http.request.uri=")
                    .nth(1)
                    .and_then(|u| u.trim_start_matches('"').split([' ', '"']).next())
                    .is_some_and(|u| u.contains(path))
            })
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds `FROM scratch` + the files as `tag` (for each platform given).
fn build(store: &Path, ctx: &Path, tag: &str, files: &[(&str, &str)], platforms: Option<&str>) {
    let mut all = files.to_vec();
    all.push(("Kubefile", "FROM scratch\nCOPY rootfs/ /\n"));
    write_files(ctx, &all);
    let mut args = vec!["build", "--progress", "plain", "-t", tag];
    if let Some(p) = platforms {
        args.extend(["--platform", p]);
    }
    args.push(ctx.to_str().unwrap());
    ok(store, &args);
}

fn small_image(t: &Path, store: &Path, tag: &str) {
    build(
        store,
        &t.join(format!("ctx-{}", tag.replace([':', '/'], "-"))),
        tag,
        &[
            ("rootfs/etc/app.conf", "answer = 42\n"),
            ("rootfs/usr/share/doc/readme", "a small image\n"),
        ],
        None,
    );
}

fn digest_of(store: &Path, image: &str) -> String {
    common::inspect(store, image)["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn skopeo_inspect(args: &[&str], image: &str) -> serde_json::Value {
    let out = sh(Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .arg(format!("docker://{image}")));
    serde_json::from_str(&out).unwrap()
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn what_we_push_skopeo_reads_with_our_digests_and_a_second_push_uploads_nothing() {
    need("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    small_image(t.path(), &store, "app:1");
    let digest = digest_of(&store, "app:1");
    let reg = Registry::start(&t.path().join("reg"));
    let target = format!("{}/ns/app:1", reg.addr());

    let first = json(&ok(&store, &["push", "app:1", &target, "--format", "json"]));
    assert_eq!(first["digest"], digest.as_str());
    let blobs = common::inspect(&store, "app:1")["images"][0]["layers"]
        .as_array()
        .unwrap()
        .len()
        + 1;
    assert_eq!(
        first["blobs_uploaded"], blobs,
        "the config and the layers: {first}"
    );
    let uploads = reg.requests("POST", "/blobs/uploads/");
    assert_eq!(uploads, blobs, "{}", reg.log_text());
    // The registry asks for no credentials: it is asked how to authenticate once, not before
    // every request.
    assert_eq!(reg.pings(), 1, "{}", reg.log_text());

    let seen = skopeo_inspect(&["--tls-verify=false"], &target);
    assert_eq!(seen["Digest"], digest.as_str());
    let ours = common::inspect(&store, "app:1");
    let layers: Vec<&str> = ours["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let theirs: Vec<&str> = seen["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers, theirs, "layers keep the store's (zstd) digests");

    // skopeo copies it back out byte for byte.
    let layout = t.path().join("copied");
    sh(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:copied", layout.display()),
    ]));
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // The second push only asks (HEAD): no upload is opened.
    let second = json(&ok(&store, &["push", "app:1", &target, "--format", "json"]));
    assert_eq!(second["blobs_uploaded"], 0, "{second}");
    assert_eq!(second["blobs_present"], blobs, "{second}");
    assert_eq!(reg.requests("POST", "/blobs/uploads/"), uploads);
    assert_eq!(reg.requests("HEAD", "/blobs/sha256:"), 2 * blobs);
}

#[test]
fn what_skopeo_pushes_as_docker_schema2_we_pull_with_its_digests() {
    need("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    small_image(t.path(), &store, "app:1");
    let layout = t.path().join("layout");
    ok(
        &store,
        &[
            "save",
            "app:1",
            "--format",
            "oci",
            "--compression",
            "gzip",
            "-o",
            layout.to_str().unwrap(),
        ],
    );
    let reg = Registry::start(&t.path().join("reg"));
    let target = format!("{}/skopeo/app:v2", reg.addr());
    sh(Command::new("skopeo").args([
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{}", layout.display()),
        &format!("docker://{target}"),
    ]));
    let raw: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let want = skopeo_inspect(&["--tls-verify=false"], &target)["Digest"]
        .as_str()
        .unwrap()
        .to_string();

    let fresh = t.path().join("fresh");
    let pulled = json(&ok(&fresh, &["pull", &target, "--format", "json"]));
    assert_eq!(pulled["digest"], want.as_str());
    assert_eq!(pulled["tag"], target.as_str());
    let got = common::inspect(&fresh, &target);
    let orig = common::inspect(&store, "app:1");
    let diff_ids = |v: &serde_json::Value| v["images"][0]["config"]["rootfs"]["diff_ids"].clone();
    assert_eq!(diff_ids(&got), diff_ids(&orig), "same layer contents");
    assert_eq!(
        got["images"][0]["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    // Pulled again: nothing is downloaded (the root is in the store already).
    let gets = reg.requests("GET", "/blobs/sha256:");
    let pings = reg.pings();
    let again = json(&ok(
        &fresh,
        &["pull", &target, "--tag", "copy:1", "--format", "json"],
    ));
    assert_eq!(again["blobs_stored"], 0, "{again}");
    assert_eq!(reg.requests("GET", "/blobs/sha256:"), gets);
    assert_eq!(digest_of(&fresh, "copy:1"), want);
    // The version check, then once more for the manifest client (oci-client's rule).
    assert!(reg.pings() - pings <= 2, "{}", reg.log_text());

    // Pushed on from the store to another registry: the same bytes (gzip layers, Docker
    // media types), so the same digests.
    let reg2 = Registry::start(&t.path().join("reg2"));
    let onward = format!("{}/back/app:v2", reg2.addr());
    let pushed = json(&ok(
        &fresh,
        &["push", "copy:1", &onward, "--format", "json"],
    ));
    assert_eq!(pushed["digest"], want.as_str());
    assert_eq!(
        skopeo_inspect(&["--tls-verify=false"], &onward)["Digest"],
        want.as_str()
    );

    // By digest without --tag: stored, not tagged.
    let by_digest = format!("{}/skopeo/app@{want}", reg.addr());
    let third = t.path().join("third");
    let untagged = json(&ok(&third, &["pull", &by_digest, "--format", "json"]));
    assert_eq!(untagged["digest"], want.as_str());
    assert_eq!(untagged["tag"], serde_json::Value::Null);

    let missing = fails(
        &fresh,
        &["pull", &format!("{}/skopeo/app:nope", reg.addr())],
    );
    assert!(
        missing.contains("not found") && missing.contains("nope"),
        "{missing}"
    );
}

#[test]
fn a_multi_platform_index_round_trips_and_mounts_blobs_between_repositories() {
    need("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    build(
        &store,
        &t.path().join("ctx"),
        "multi:1",
        &[("rootfs/etc/os-release", "NAME=multi\n")],
        Some("linux/amd64,linux/arm64"),
    );
    let digest = digest_of(&store, "multi:1");
    let reg = Registry::start(&t.path().join("reg"));
    let target = format!("{}/ns/multi:1", reg.addr());
    let pushed = json(&ok(
        &store,
        &["push", "multi:1", &target, "--format", "json"],
    ));
    assert_eq!(
        pushed["manifests"], 3,
        "two manifests and the index: {pushed}"
    );

    let raw: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])))
    .unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
    for arch in ["amd64", "arm64"] {
        let one = skopeo_inspect(&["--tls-verify=false", "--override-arch", arch], &target);
        assert_eq!(one["Architecture"], arch);
    }

    let fresh = t.path().join("fresh");
    let pulled = json(&ok(&fresh, &["pull", &target, "--format", "json"]));
    assert_eq!(pulled["digest"], digest.as_str());
    let listed = json(&ok(&fresh, &["images", "--format", "json"]));
    assert_eq!(
        listed[0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );

    // The store knows the image came from ns/multi: pushing it to another repository of the
    // same registry mounts its blobs instead of uploading them.
    let copy = format!("{}/other/multi:1", reg.addr());
    let mounted = json(&ok(&fresh, &["push", &target, &copy, "--format", "json"]));
    assert_eq!(mounted["blobs_uploaded"], 0, "{mounted}");
    assert!(mounted["blobs_mounted"].as_u64().unwrap() >= 3, "{mounted}");
    assert_eq!(
        skopeo_inspect(&["--tls-verify=false", "--raw"], &copy)["manifests"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn basic_auth_needs_credentials_from_the_flag_or_an_auth_file() {
    need("htpasswd", "apache2-utils");
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    small_image(t.path(), &store, "app:1");
    let htpasswd = t.path().join("htpasswd");
    let entry = sh(Command::new("htpasswd").args(["-Bbn", "alice", "wonder land"]));
    fs::write(&htpasswd, entry).unwrap();
    let reg = Registry::with(&t.path().join("reg"), None, Some(htpasswd));
    let target = format!("{}/private/app:1", reg.addr());
    let home = t.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let chasi = |args: &[&str], envs: &[(&str, &Path)]| {
        let mut c = common::chasi();
        c.arg("--store").arg(&store).args(args).env("HOME", &home);
        c.env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };

    let out = chasi(&["push", "app:1", &target], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("401") && err.contains("no credentials") && err.contains(&target),
        "{err}"
    );
    let out = chasi(&["push", "app:1", &target, "--creds", "alice:wrong"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("--creds"), "{err}");

    let out = chasi(
        &["push", "app:1", &target, "--creds", "alice:wonder land"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The auth file docker and podman write: base64 of USER:PASS.
    let auth = t.path().join("auth.json");
    fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6d29uZGVyIGxhbmQ="}}}}}}"#,
            reg.addr()
        ),
    )
    .unwrap();
    let out = chasi(
        &["pull", &target, "--tag", "back:1"],
        &[("REGISTRY_AUTH_FILE", &auth)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And ~/.docker/config.json.
    fs::create_dir_all(home.join(".docker")).unwrap();
    fs::copy(&auth, home.join(".docker/config.json")).unwrap();
    let out = chasi(&["pull", &target, "--tag", "back:2"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&store, "back:2"), digest_of(&store, "app:1"));
}

/// A token server as `docker login` to a hub-like registry meets it: it checks the basic
/// credentials the client sends and answers a JWT (RS256, with its certificate in `x5c`) that
/// grants pull and push on `private/app`, signed with openssl.
struct TokenServer {
    port: u16,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenServer {
    fn start(dir: &Path, user_pass: &str) -> (TokenServer, PathBuf) {
        use base64::Engine as _;
        need("openssl", "openssl");
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        sh(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=chasi-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        sh(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .args(["-out"])
            .arg(dir.join("token.der")));
        let der = fs::read(dir.join("token.der")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [b64.encode(&der)]});
        let claims = serde_json::json!({
            "iss": "chasi-test-issuer", "sub": "alice", "aud": "chasi-test-service",
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "chasi-test",
            "access": [{"type": "repository", "name": "private/app", "actions": ["pull", "push"]}],
        });
        let input = format!(
            "{}.{}",
            url.encode(header.to_string()),
            url.encode(claims.to_string())
        );
        fs::write(dir.join("token.input"), &input).unwrap();
        sh(Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key)
            .arg("-out")
            .arg(dir.join("token.sig"))
            .arg(dir.join("token.input")));
        let token = format!(
            "{input}.{}",
            url.encode(fs::read(dir.join("token.sig")).unwrap())
        );
        let expected = format!("Basic {}", b64.encode(user_pass));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, r) = (served.clone(), refused.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&got);
                let authorized = request.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:")
                        && l[14..].trim() == expected
                });
                let (status, body) = if authorized {
                    s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ("200 OK", serde_json::json!({"token": token, "access_token": token, "expires_in": 3600}).to_string())
                } else {
                    r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (
                        "401 Unauthorized",
                        "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_string(),
                    )
                };
                let _ = std::io::Write::write_all(
                    &mut conn,
                    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
            }
        });
        (
            TokenServer {
                port,
                served,
                refused,
            },
            cert,
        )
    }
}

#[test]
fn bearer_token_auth_gets_a_token_with_the_credentials_and_uses_it() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    small_image(t.path(), &store, "app:1");
    let (tokens, cert) = TokenServer::start(t.path(), "alice:s3cret");
    let mut reg = Registry::start(&t.path().join("reg"));
    reg.stop();
    reg.extra = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: chasi-test-service\n    issuer: chasi-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        cert.display()
    );
    reg.restart();
    let target = format!("{}/private/app:1", reg.addr());
    let err = fails(
        &store,
        &["push", "app:1", &target, "--creds", "alice:wrong"],
    );
    assert!(err.contains("401") && err.contains(&target), "{err}");
    assert!(tokens.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    ok(
        &store,
        &["push", "app:1", &target, "--creds", "alice:s3cret"],
    );
    assert!(tokens.served.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let back = t.path().join("back");
    let mut c = common::chasi();
    c.arg("--store")
        .arg(&back)
        .args(["pull", &target, "--creds", "alice:s3cret"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log_text()
    );
    assert_eq!(digest_of(&back, &target), digest_of(&store, "app:1"));
}

/// A CA and a certificate for 127.0.0.1 it signed, made with openssl.
fn make_tls(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    need("openssl", "openssl");
    fs::create_dir_all(dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=chasi test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]));
    sh(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.pem"),
    ]));
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[test]
fn tls_with_a_ca_file_or_without_verification() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    small_image(t.path(), &store, "app:1");
    let (ca, cert, key) = make_tls(&t.path().join("tls"));
    let reg = Registry::with(&t.path().join("reg"), Some((cert, key)), None);
    let target = format!("{}/tls/app:1", reg.addr());

    let err = fails(&store, &["push", "app:1", &target]);
    assert!(
        err.contains("TLS certificate") && err.contains("--tls-ca"),
        "{err}"
    );
    ok(
        &store,
        &["push", "app:1", &target, "--tls-ca", ca.to_str().unwrap()],
    );
    let fresh = t.path().join("fresh");
    ok(&fresh, &["pull", &target, "--tls-verify=false"]);
    assert_eq!(digest_of(&fresh, &target), digest_of(&store, "app:1"));
    let bad = t.path().join("not-a-ca");
    fs::write(&bad, "hello").unwrap();
    let err = fails(
        &store,
        &["push", "app:1", &target, "--tls-ca", bad.to_str().unwrap()],
    );
    assert!(
        err.contains("not-a-ca") && err.contains("no PEM certificate"),
        "{err}"
    );
}

/// Bytes that zstd cannot shrink, so the layer is as large as its file.
fn noise(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

#[test]
fn a_registry_killed_during_a_push_gives_a_clear_error_and_the_push_succeeds_after_restart() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let big = noise(48 << 20);
    build(
        &store,
        &t.path().join("ctx"),
        "big:1",
        &[("rootfs/data/noise", big.as_str())],
        None,
    );
    let mut reg = Registry::start(&t.path().join("reg"));
    let target = format!("{}/ns/big:1", reg.addr());
    let mut push = common::chasi()
        .arg("--store")
        .arg(&store)
        .args(["push", "big:1", &target, "--retries", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once the upload is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reg.requests("PATCH", "/blobs/uploads/") == 0 {
        assert!(
            Instant::now() < deadline,
            "no upload started:\n{}",
            reg.log_text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.stop();
    let status = push.wait().unwrap();
    let mut err = String::new();
    push.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the registry after 3 tries") && err.contains(&target),
        "{err}"
    );

    reg.restart();
    let out = run(&store, &["push", "big:1", &target, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = t.path().join("fresh");
    ok(&fresh, &["pull", &target]);
    assert_eq!(digest_of(&fresh, &target), digest_of(&store, "big:1"));
}

#[test]
fn a_blob_corrupted_in_the_registry_is_refused_with_both_digests_and_nothing_is_tagged() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    build(
        &store,
        &t.path().join("ctx"),
        "app:1",
        &[("rootfs/data/noise", noise(200_000).as_str())],
        None,
    );
    let reg = Registry::start(&t.path().join("reg"));
    let target = format!("{}/ns/app:1", reg.addr());
    ok(&store, &["push", "app:1", &target]);
    let layer = common::inspect(&store, "app:1")["images"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = layer.trim_start_matches("sha256:");
    let data = reg
        .dir
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&data, &bytes).unwrap();

    let fresh = t.path().join("fresh");
    let err = fails(&fresh, &["pull", &target]);
    let actual = format!("sha256:{}", {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    });
    assert!(
        err.contains(&layer) && err.contains(&actual) && err.contains("nothing was tagged"),
        "{err}"
    );
    let listed = json(&ok(&fresh, &["images", "--format", "json"]));
    assert_eq!(listed, serde_json::json!([]));
}

/// What [`Proxy`] does to the first response of a blob `GET` whose path holds its target.
#[derive(Clone, Copy)]
enum Mischief {
    /// Closes the connection after this many bytes of the body.
    Cut(usize),
    /// Flips a bit of the body byte at this offset.
    Flip(usize),
    /// Answers this status, with no body, to every request on the target (`HEAD` too), this
    /// many times.
    Status(u16, usize),
    /// Closes the connection of the n-th `PATCH` on the target (counted from 1) without
    /// passing it on: the registry holds every piece before it.
    DropPatch(usize),
    /// Passes the n-th `PATCH` on the target on with only this many bytes of its body, then
    /// closes both connections: the registry holds part of the piece.
    CutPatch(usize, usize),
    /// Answers the n-th `PATCH` on the target `429` with `Retry-After: <seconds>`.
    ThrottlePatch(usize, u64),
}

/// A one-request-per-connection HTTP proxy on 127.0.0.1 in front of the registry; it logs
/// each request line (with its `Range` header) and misbehaves on the target blob (once, or as
/// many times as [`Mischief::Status`] says).
struct Proxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: u16, target: String, mischief: Mischief) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut left = match mischief {
                Mischief::Status(_, n) => n,
                _ => 1,
            };
            let mut patches = 0;
            for conn in listener.incoming() {
                let Ok(client) = conn else { return };
                let now = (left > 0).then_some(mischief);
                if Self::relay(client, upstream, &target, now, &log, &mut patches) {
                    left -= 1;
                }
            }
        });
        Proxy { port, seen }
    }

    /// Relays one request; `true` when it misbehaved.
    fn relay(
        mut client: TcpStream,
        upstream: u16,
        target: &str,
        mischief: Option<Mischief>,
        log: &std::sync::Mutex<Vec<String>>,
        patches: &mut usize,
    ) -> bool {
        use std::io::Write;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Plain HTTP only: a TLS hello (the HTTPS probe) is answered by closing, as an HTTP
        // server answers it with an error.
        if client.peek(&mut byte).is_err() || byte[0] == 0x16 {
            return false;
        }
        while !head.ends_with(b"\r\n\r\n") {
            match client.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let request = lines.next().unwrap_or_default().to_string();
        let mut length = 0usize;
        let mut range = String::new();
        let mut forwarded = format!("{request}\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("range:") || lower.starts_with("content-range:") {
                range = l.to_string();
            }
            if !lower.starts_with("connection:") {
                forwarded += &format!("{l}\r\n");
            }
        }
        forwarded += "Connection: close\r\n\r\n";
        let mut body = vec![0u8; length];
        if client.read_exact(&mut body).is_err() {
            return false;
        }
        log.lock().unwrap().push(format!("{request} {range}"));
        if let (Some(Mischief::Status(code, _)), true) = (mischief, request.contains(target)) {
            let answer = format!(
                "HTTP/1.1 {code} Mischief\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = client.write_all(answer.as_bytes());
            return true;
        }
        let patch = request.starts_with("PATCH ") && request.contains(target);
        if patch {
            *patches += 1;
        }
        let cut = match mischief {
            Some(Mischief::DropPatch(n)) if patch && *patches == n => {
                let _ = client.shutdown(std::net::Shutdown::Both);
                return true;
            }
            Some(Mischief::CutPatch(n, keep)) if patch && *patches == n => Some(keep),
            Some(Mischief::ThrottlePatch(n, secs)) if patch && *patches == n => {
                let answer = format!(
                    "HTTP/1.1 429 Slow Down\r\nRetry-After: {secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = client.write_all(answer.as_bytes());
                return true;
            }
            _ => None,
        };
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return false;
        };
        let sent = &body[..cut.unwrap_or(body.len()).min(body.len())];
        if up
            .write_all(forwarded.as_bytes())
            .and_then(|_| up.write_all(sent))
            .is_err()
        {
            return false;
        }
        if cut.is_some() {
            std::thread::sleep(Duration::from_millis(200));
            let _ = up.shutdown(std::net::Shutdown::Both);
            let _ = client.shutdown(std::net::Shutdown::Both);
            return true;
        }
        let mut response = Vec::new();
        let _ = up.read_to_end(&mut response);
        let hit = request.starts_with("GET ") && request.contains(target);
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        let out = match mischief.filter(|_| hit) {
            Some(Mischief::Cut(n)) => &response[..(body_at + n).min(response.len())],
            Some(Mischief::Flip(at)) => {
                if let Some(b) = response.get_mut(body_at + at) {
                    *b ^= 0x01;
                }
                &response[..]
            }
            Some(_) | None => &response[..],
        };
        let _ = client.write_all(out);
        let _ = client.shutdown(std::net::Shutdown::Both);
        hit && mischief.is_some()
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Pushes an image of one incompressible layer; returns the registry, the store, the layer's
/// digest and its size.
fn pushed_noise(t: &Path) -> (Registry, PathBuf, String) {
    let store = t.join("store");
    build(
        &store,
        &t.join("ctx"),
        "app:1",
        &[("rootfs/data/noise", noise(3 << 20).as_str())],
        None,
    );
    let reg = Registry::start(&t.join("reg"));
    ok(
        &store,
        &["push", "app:1", &format!("{}/ns/app:1", reg.addr())],
    );
    let layer = common::inspect(&store, "app:1")["images"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    (reg, store, layer)
}

#[test]
fn a_download_cut_off_resumes_with_a_range_request_and_verifies() {
    let t = tempfile::tempdir().unwrap();
    let (reg, store, layer) = pushed_noise(t.path());
    let proxy = Proxy::start(reg.port, layer.clone(), Mischief::Cut(1 << 20));
    let via = format!("127.0.0.1:{}/ns/app:1", proxy.port);
    let fresh = t.path().join("fresh");
    let pulled = json(&ok(&fresh, &["pull", &via, "--format", "json"]));
    assert_eq!(
        pulled["digest"].as_str(),
        Some(digest_of(&store, "app:1").as_str())
    );
    let gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains(&layer))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].contains("bytes=1048576-"), "{gets:?}");
}

/// Pushes `big:1` (one noise layer of about 15 MB: four pieces) through a proxy that
/// misbehaves once on the uploads (the config's `PATCH` is the first); returns what the
/// proxy saw and the layer's size.
fn push_through(t: &Path, mischief: Mischief) -> (Vec<String>, u64) {
    let store = t.join("store");
    build(
        &store,
        &t.join("ctx"),
        "big:1",
        &[("rootfs/data/noise", noise(18 << 20).as_str())],
        None,
    );
    let size = common::inspect(&store, "big:1")["images"][0]["layers"][0]["size"]
        .as_u64()
        .unwrap();
    assert!((12 << 20..16 << 20).contains(&size), "{size}");
    let reg = Registry::start(&t.join("reg"));
    let proxy = Proxy::start(reg.port, "/blobs/uploads/".into(), mischief);
    let via = format!("127.0.0.1:{}/ns/big:1", proxy.port);
    let pushed = json(&ok(&store, &["push", "big:1", &via, "--format", "json"]));
    assert_eq!(pushed["blobs_uploaded"], 2, "{pushed}");
    // What arrived is the image, byte for byte.
    let fresh = t.join("fresh");
    let direct = format!("{}/ns/big:1", reg.addr());
    ok(&fresh, &["pull", &direct]);
    assert_eq!(digest_of(&fresh, &direct), digest_of(&store, "big:1"));
    (proxy.requests(), size)
}

/// The `PATCH`es of an upload of `size` bytes in pieces, from `from` on.
fn pieces(from: u64, size: u64) -> Vec<String> {
    let piece = 4u64 << 20;
    (from / piece..size.div_ceil(piece))
        .map(|i| format!("PATCH {}-{}", i * piece, ((i + 1) * piece).min(size) - 1))
        .collect()
}

/// The upload requests of the layer (the blob sent in more than one `PATCH`), from the
/// `POST` that opened it: `METHOD` and, for a `PATCH`, its range.
fn upload_of_layer(log: &[String]) -> Vec<String> {
    let log: Vec<String> = log.iter().map(|r| r.to_ascii_lowercase()).collect();
    let first_big = log
        .iter()
        .position(|r| r.starts_with("patch ") && r.contains("content-range: 4194304-"))
        .expect("the layer went in pieces");
    let opened = log[..first_big]
        .iter()
        .rposition(|r| r.starts_with("post "))
        .unwrap();
    log[opened..]
        .iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .map(|r| {
            let (method, rest) = r.split_once(' ').unwrap();
            let range = rest.split("content-range: ").nth(1).unwrap_or_default();
            format!("{} {range}", method.to_ascii_uppercase())
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn an_upload_cut_between_pieces_resumes_where_the_registry_stopped() {
    let t = tempfile::tempdir().unwrap();
    let (log, size) = push_through(t.path(), Mischief::DropPatch(4));
    // The layer's third piece is lost; the registry is asked what it holds and the upload
    // goes on from there: no piece before it is sent again, no second upload is opened.
    let mut want = vec!["POST".to_string()];
    want.extend(pieces(0, 12 << 20));
    want.push("GET".into());
    want.extend(pieces(8 << 20, size));
    want.push("PUT".into());
    assert_eq!(upload_of_layer(&log), want, "{log:#?}");
}

#[test]
fn an_upload_cut_inside_a_piece_the_registry_will_not_resume_is_sent_again_whole() {
    let t = tempfile::tempdir().unwrap();
    let (log, size) = push_through(t.path(), Mischief::CutPatch(4, 1 << 20));
    // The registry holds a part of the layer's third piece. The distribution registry does
    // not resume an upload whose size differs from the offset its upload state records: the
    // status request is refused, and the upload is opened again and sent whole (the pull in
    // `push_through` checks what arrived).
    let mut want = vec!["POST".to_string()];
    want.extend(pieces(0, 12 << 20));
    want.extend(["GET".to_string(), "POST".to_string()]);
    want.extend(pieces(0, size));
    want.push("PUT".into());
    assert_eq!(upload_of_layer(&log), want, "{log:#?}");
}

#[test]
fn a_throttled_piece_waits_the_registrys_retry_after_and_is_sent_again() {
    let t = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (log, size) = push_through(t.path(), Mischief::ThrottlePatch(3, 3));
    // The backoff alone would wait 250 ms; the registry asked for 3 s.
    assert!(started.elapsed() >= Duration::from_secs(3), "{log:#?}");
    let mut want = vec!["POST".to_string()];
    want.extend(pieces(0, 8 << 20));
    want.extend(pieces(4 << 20, size));
    want.push("PUT".into());
    assert_eq!(upload_of_layer(&log), want, "{log:#?}");
}

#[test]
fn a_blob_a_proxy_corrupts_is_refused_with_both_digests_and_nothing_is_tagged() {
    let t = tempfile::tempdir().unwrap();
    let (reg, _store, layer) = pushed_noise(t.path());
    let proxy = Proxy::start(reg.port, layer.clone(), Mischief::Flip(2 << 20));
    let via = format!("127.0.0.1:{}/ns/app:1", proxy.port);
    let fresh = t.path().join("fresh");
    let err = fails(&fresh, &["pull", &via]);
    assert!(
        err.contains(&format!("blob {layer} downloaded as sha256:"))
            && err.contains("nothing was tagged"),
        "{err}"
    );
    assert_eq!(
        json(&ok(&fresh, &["images", "--format", "json"])),
        serde_json::json!([])
    );
}

#[test]
fn from_a_registry_is_pulled_once_pinned_by_digest_and_offline_names_what_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let origin = t.path().join("origin");
    small_image(t.path(), &origin, "base:1");
    let base = digest_of(&origin, "base:1");
    let mut reg = Registry::start(&t.path().join("reg"));
    let by_tag = format!("{}/ns/base:1", reg.addr());
    let by_digest = format!("{}/ns/base@{base}", reg.addr());
    ok(&origin, &["push", "base:1", &by_tag]);

    let ctx = |name: &str, from: &str| {
        let dir = t.path().join(name);
        write_files(
            &dir,
            &[
                ("Kubefile", &format!("FROM {from}\nCOPY app.txt /app.txt\n")),
                ("app.txt", "on top\n"),
            ],
        );
        dir.to_str().unwrap().to_string()
    };
    let build_top = |store: &Path, dir: &str, extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain", "-t", "top:1"];
        args.extend_from_slice(extra);
        args.push(dir);
        run(store, &args)
    };
    let tagged = ctx("ctx-tag", &by_tag);
    let store = t.path().join("builder");
    let out = build_top(&store, &tagged, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        digest_of(&store, &by_tag),
        base,
        "pulled and tagged by its reference"
    );
    let top = digest_of(&store, "top:1");

    // Pulled once: with the registry down the build uses the store (and its cache).
    reg.stop();
    let out = build_top(&store, &tagged, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&store, "top:1"), top);

    // Offline in an empty store: the missing reference is named.
    let empty = t.path().join("empty");
    let out = build_top(&empty, &tagged, &["--offline"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&by_tag) && err.contains("offline"), "{err}");

    // By digest, in a fresh store: the same image, the same result.
    reg.restart();
    let pinned = ctx("ctx-digest", &by_digest);
    let other = t.path().join("other");
    let out = build_top(&other, &pinned, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&other, "top:1"), top);

    // The tag moves (a new base pulled under it): the cache key follows the digest.
    build(
        &origin,
        &t.path().join("ctx-base2"),
        "base:2",
        &[("rootfs/etc/app.conf", "answer = 43\n")],
        None,
    );
    assert_ne!(digest_of(&origin, "base:2"), base);
    ok(&origin, &["push", "base:2", &by_tag]);
    ok(&store, &["pull", &by_tag]);
    let out = build_top(&store, &tagged, &[]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_ne!(digest_of(&store, "top:1"), top, "{text}");
}

#[test]
fn throttling_and_server_errors_are_retried_with_backoff_then_reported() {
    let t = tempfile::tempdir().unwrap();
    let (reg, store, layer) = pushed_noise(t.path());
    let want = digest_of(&store, "app:1");
    for code in [429, 503] {
        // Twice refused, then served: the pull retries and succeeds.
        let proxy = Proxy::start(reg.port, layer.clone(), Mischief::Status(code, 2));
        let via = format!("127.0.0.1:{}/ns/app:1", proxy.port);
        let fresh = t.path().join(format!("fresh-{code}"));
        let pulled = json(&ok(&fresh, &["pull", &via, "--format", "json"]));
        assert_eq!(pulled["digest"].as_str(), Some(want.as_str()));
        let tries = proxy
            .requests()
            .iter()
            .filter(|r| r.contains(&layer))
            .count();
        assert_eq!(
            tries,
            4,
            "2 refused HEADs, the HEAD and the GET: {:?}",
            proxy.requests()
        );
    }
    // Refused every time: after --retries tries, the reference and the reason are named.
    let proxy = Proxy::start(reg.port, layer.clone(), Mischief::Status(429, usize::MAX));
    let via = format!("127.0.0.1:{}/ns/app:1", proxy.port);
    let err = fails(&t.path().join("fresh-x"), &["pull", &via, "--retries", "2"]);
    assert!(
        err.contains(&via) && err.contains("429 too many requests 2 times"),
        "{err}"
    );
}

#[test]
fn a_multi_platform_build_from_a_registry_pulls_the_base_once() {
    let t = tempfile::tempdir().unwrap();
    let origin = t.path().join("origin");
    build(
        &origin,
        &t.path().join("ctx-base"),
        "base:1",
        &[("rootfs/etc/os-release", "NAME=base\n")],
        Some("linux/amd64,linux/arm64"),
    );
    let reg = Registry::start(&t.path().join("reg"));
    let base = format!("{}/ns/base:1", reg.addr());
    ok(&origin, &["push", "base:1", &base]);
    let gets = reg.requests("GET", "/blobs/sha256:");

    let store = t.path().join("builder");
    let dir = t.path().join("ctx-from");
    write_files(
        &dir,
        &[
            ("Kubefile", &format!("FROM {base}\nCOPY app.txt /app.txt\n")),
            ("app.txt", "on top\n"),
        ],
    );
    ok(
        &store,
        &[
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "from:1",
            dir.to_str().unwrap(),
        ],
    );
    let listed = json(&ok(&store, &["images", "--format", "json"]));
    let from = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "from:1")
        .unwrap();
    assert_eq!(
        from["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // Two configs and one shared layer, each downloaded once.
    assert_eq!(
        reg.requests("GET", "/blobs/sha256:") - gets,
        3,
        "{}",
        reg.log_text()
    );
}

/// A registry serving `dir` (its storage root) read-only, as a node would serve a cluster
/// image's `registry/`.
fn serve_dir(dir: &Path, work: &Path) -> Registry {
    let r = Registry::start(work);
    let mut r = r;
    r.stop();
    let storage = work.join("storage");
    let _ = fs::remove_dir_all(&storage);
    std::os::unix::fs::symlink(dir, &storage).unwrap();
    r.restart();
    r
}

/// Two small images in a registry, one of them for two platforms.
fn carried_images(t: &Path, reg: &Registry) -> (String, String) {
    let origin = t.join("origin");
    build(
        &origin,
        &t.join("ctx-a"),
        "a:1",
        &[
            ("rootfs/etc/a.conf", "a = 1\n"),
            ("rootfs/usr/lib/a.bin", &noise(2_000_000)),
        ],
        Some("linux/amd64,linux/arm64"),
    );
    build(
        &origin,
        &t.join("ctx-b"),
        "b:1",
        &[("rootfs/etc/b.conf", "b = 1\n")],
        Some("linux/arm64"),
    );
    let a = format!("{}/team/a:1", reg.addr());
    let b = format!("{}/team/b:1", reg.addr());
    ok(&origin, &["push", "a:1", &a]);
    ok(&origin, &["push", "b:1", &b]);
    (a, b)
}

/// `chasi build --build-mode all --platform PLATFORM -t TAG CTX` in `store`; its stdout.
fn build_carrying(store: &Path, ctx: &Path, tag: &str, platform: &str) -> String {
    ok(
        store,
        &[
            "build",
            "--build-mode",
            "all",
            "--platform",
            platform,
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
    )
}

fn cluster_context(dir: &Path, a: &str, b: &str) {
    let deployment = format!(
        "# image: docker.io/library/commented-out:1\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        image: {a}\n      containers:\n      - name: a\n        image: \"{a}\"\n"
    );
    write_files(
        dir,
        &[
            (
                "Kubefile",
                "FROM scratch\nCOPY manifests manifests\nCOPY charts charts\nCOPY etc etc\n",
            ),
            ("manifests/a.yaml", &deployment),
            // `a` once more (listed once), and `b` only through the chart.
            ("manifests/imageList", &format!("# extra images\n\"{a}\"\n\n")),
            (
                "charts/app/Chart.yaml",
                "apiVersion: v2\nname: app\nversion: 0.1.0\nappVersion: \"1\"\n",
            ),
            (
                "charts/app/values.yaml",
                &format!("image:\n  repository: {}\n  tag: \"\"\n", b.rsplit_once(':').unwrap().0),
            ),
            (
                "charts/app/templates/_helpers.tpl",
                "{{- define \"app.image\" -}}\n{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}\n{{- end -}}\n",
            ),
            (
                "charts/app/templates/deployment.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-app\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: {{ include \"app.image\" . | quote }}\n",
            ),
            ("etc/cluster.conf", "name = test\n"),
        ],
    );
}

#[test]
fn build_mode_all_carries_the_images_a_cluster_needs_for_its_platform_in_a_registry_layer() {
    need("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(&t.path().join("reg"));
    let (a, b) = carried_images(t.path(), &reg);
    let store = t.path().join("store");
    let ctx = t.path().join("cluster");
    cluster_context(&ctx, &a, &b);
    let build_all = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--progress",
            "plain",
            "--build-mode",
            "all",
            "--platform",
            "linux/arm64",
            "-t",
            "cluster:1",
        ];
        args.extend(extra);
        args.push(ctx.to_str().unwrap());
        ok(&store, &args)
    };
    let first = common::built_digest(&build_all(&[]));

    // The manifest lists what it carries, as sealer writes it.
    let image = &common::inspect(&store, "cluster:1")["images"][0];
    let listed: serde_json::Value = serde_json::from_str(
        image["manifest"]["annotations"]["sealer.image.container.images"]
            .as_str()
            .expect("the container images annotation"),
    )
    .unwrap();
    let platform = serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let expected: Vec<serde_json::Value> = [&a, &b]
        .iter()
        .map(|r| serde_json::json!({"image": r, "platform": platform}))
        .collect();
    let mut got: Vec<serde_json::Value> = listed.as_array().unwrap().clone();
    got.iter_mut().for_each(|e| {
        e["platform"].as_object_mut().unwrap().remove("variant");
    });
    let mut want = expected.clone();
    want.iter_mut().for_each(|e| {
        e["platform"].as_object_mut().unwrap().remove("variant");
    });
    assert_eq!(got, want, "{listed}");
    let layers = image["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        4,
        "manifests, charts, etc, and the registry layer"
    );
    let history = image["config"]["history"].as_array().unwrap();
    assert!(
        history.last().unwrap()["created_by"]
            .as_str()
            .unwrap()
            .contains("2 container images"),
        "{history:?}"
    );

    // An unmodified registry serving the image's registry/ serves both, for the platform built.
    let rootfs = t.path().join("rootfs.tar");
    ok(
        &store,
        &[
            "export",
            "cluster:1",
            "--format",
            "tar",
            "-o",
            rootfs.to_str().unwrap(),
        ],
    );
    let unpacked = t.path().join("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&rootfs)
        .arg("-C")
        .arg(&unpacked));
    let node = serve_dir(&unpacked.join("registry"), &t.path().join("node-reg"));
    let origin = t.path().join("origin");
    for (reference, name, repo) in [(&a, "a:1", "team/a"), (&b, "b:1", "team/b")] {
        let served = format!("{}/127.0.0.1_{}/{repo}:1", node.addr(), reg.port);
        let seen = skopeo_inspect(&["--tls-verify=false", "--override-arch", "arm64"], &served);
        let original = skopeo_inspect(
            &["--tls-verify=false", "--override-arch", "arm64"],
            reference,
        );
        assert_eq!(seen["Digest"], original["Digest"], "{name}");
        assert_eq!(seen["Layers"], original["Layers"], "{name}");
        assert_eq!(seen["Architecture"], "arm64");
        // And as sealer's mirror serves it: the path without the registry host.
        let mirrored = skopeo_inspect(
            &["--tls-verify=false", "--override-arch", "arm64"],
            &format!("{}/{repo}:1", node.addr()),
        );
        assert_eq!(mirrored["Digest"], original["Digest"], "{name}");
    }
    // chasi-node loads both into a containerd, under the names the manifests use.
    let ctd = common::Containerd::start();
    let imported = ok(
        &store,
        &[
            "node",
            "images",
            "import",
            "--from",
            unpacked.join("registry").to_str().unwrap(),
            "--address",
            ctd.socket().to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let listed = sh(ctd.ctr_in("k8s.io").args(["images", "ls"]));
    for reference in [&a, &b] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{reference} ")))
            .unwrap_or_else(|| panic!("{reference} not in containerd:\n{listed}\n{imported}"));
        // The tag's digest as the registry serves it (the index of the two-platform `a`).
        let digest = sh(Command::new("sh").arg("-c").arg(format!(
            "skopeo inspect --tls-verify=false --raw docker://{reference} | sha256sum | cut -d' ' -f1"
        )));
        assert!(
            line.contains(&format!("sha256:{}", digest.trim())),
            "{line}"
        );
    }
    assert!(
        !listed.contains("docker.io/team/"),
        "the mirror links are not imported as Docker Hub images:\n{listed}"
    );
    drop(ctd);

    // Only the arm64 image of the two-platform `a` is carried: not the amd64 config.
    let origin_images = common::inspect(&origin, "a:1")["images"].clone();
    let amd64 = origin_images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["config"]["architecture"] == "amd64")
        .unwrap();
    let config = amd64["manifest"]["config"]["digest"].as_str().unwrap();
    let hex = config.trim_start_matches("sha256:");
    let blobs = unpacked.join("registry/docker/registry/v2/blobs/sha256");
    assert!(blobs.is_dir());
    assert!(
        !blobs.join(&hex[..2]).join(hex).exists(),
        "the amd64 config of a is not carried"
    );

    // Unchanged: the registry is not asked again, and the digest is the same.
    let gets = reg.requests("GET", "/");
    let again = common::built_digest(&build_all(&[]));
    assert_eq!(again, first);
    assert_eq!(reg.requests("GET", "/"), gets, "{}", reg.log_text());
    let offline = common::built_digest(&build_all(&["--offline"]));
    assert_eq!(offline, first);

    // A fresh store gives the same digest (reproducible, the registry asked once more).
    let other = t.path().join("other-store");
    let fresh = build_carrying(&other, &ctx, "cluster:1", "linux/arm64");
    assert_eq!(common::built_digest(&fresh), first);

    // The images are stored once: another cluster image carrying them adds few new bytes,
    // and one built on top of a cluster image that carries them writes no blob again.
    let du = |store: &Path| -> u64 {
        json(&ok(store, &["store", "du", "--format", "json"]))["physical_bytes"]
            .as_u64()
            .unwrap()
    };
    let before = du(&store);
    let twin = t.path().join("twin");
    cluster_context(&twin, &a, &b);
    fs::write(twin.join("etc/cluster.conf"), "name = twin\n").unwrap();
    build_carrying(&store, &twin, "twin:1", "linux/arm64");
    let grown = du(&store) - before;
    assert!(
        grown < 200_000,
        "a second cluster image carrying the same 2 MB grew the store by {grown} bytes"
    );
    let on_top = t.path().join("on-top");
    write_files(
        &on_top,
        &[
            ("Kubefile", "FROM cluster:1\nCOPY more.yaml manifests/more.yaml\n"),
            ("more.yaml", &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: more\nspec:\n  containers:\n  - name: a\n    image: {a}\n")),
        ],
    );
    build_carrying(&store, &on_top, "on-top:1", "linux/arm64");
    let top = &common::inspect(&store, "on-top:1")["images"][0];
    let top_layers = top["layers"].as_array().unwrap();
    assert_eq!(
        top_layers.len(),
        6,
        "the base's four, the COPY, a registry layer"
    );
    let registry_layer = top_layers.last().unwrap()["uncompressed_size"]
        .as_u64()
        .unwrap();
    assert!(
        registry_layer < 100_000,
        "blobs the base carries are not written again: {registry_layer} bytes"
    );

    // `b` has no amd64 image: an amd64 build says so instead of carrying the arm64 one.
    let err = fails(
        &store,
        &[
            "build",
            "--build-mode",
            "all",
            "--platform",
            "linux/amd64",
            "-t",
            "cluster:2",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains(&format!("container image {b} for linux/amd64")),
        "{err}"
    );
    assert!(err.contains("linux/arm64"), "{err}");
}

#[test]
fn build_mode_all_refuses_invalid_references_and_offline_misses_and_lite_carries_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let ctx = t.path().join("cluster");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY manifests manifests\n"),
            (
                "manifests/pod.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: Not/Valid:Ref\n",
            ),
        ],
    );
    let dir = ctx.to_str().unwrap();
    let err = fails(&store, &["build", "--build-mode", "all", "-t", "c:1", dir]);
    assert!(err.contains("manifests/pod.yaml:8:"), "{err}");
    assert!(err.contains("Not/Valid:Ref"), "{err}");
    let listed = run(&store, &["images"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("c:1"),
        "nothing is tagged"
    );

    // lite (the default) does not look: the same context builds, with no registry layer.
    ok(&store, &["build", "-t", "c:1", dir]);
    let image = &common::inspect(&store, "c:1")["images"][0];
    assert!(image["manifest"]["annotations"]
        .get("sealer.image.container.images")
        .is_none());
    assert_eq!(image["layers"].as_array().unwrap().len(), 1);

    // Offline with nothing cached names the image it would fetch.
    fs::write(
        ctx.join("manifests/pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: 127.0.0.1:9/none/app:1\n",
    )
    .unwrap();
    let err = fails(
        &store,
        &[
            "build",
            "--build-mode",
            "all",
            "--offline",
            "-t",
            "c:2",
            dir,
        ],
    );
    assert!(err.contains("127.0.0.1:9/none/app:1"), "{err}");
    assert!(err.contains("offline"), "{err}");
    // And online with the registry down, the reference and the platform are named.
    let err = fails(&store, &["build", "--build-mode", "all", "-t", "c:2", dir]);
    assert!(
        err.contains("container image 127.0.0.1:9/none/app:1"),
        "{err}"
    );
}

#[test]
fn a_cache_pushed_by_one_runner_gives_another_with_an_empty_store_a_hit_for_every_layer_step() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::start(&t.path().join("reg"));
    let (a, b) = carried_images(t.path(), &reg);
    let ctx = t.path().join("cluster");
    cluster_context(&ctx, &a, &b);
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY manifests manifests\nCOPY etc etc\nCOPY etc/cluster.conf /etc/second.conf\n",
        )],
    );
    let cache = format!("registry:{}/ci/cache:main", reg.addr());
    let build = |store: &Path, cache_flag: &str| {
        let out = run(
            store,
            &[
                "build",
                "--progress",
                "plain",
                "--build-mode",
                "all",
                "--platform",
                "linux/arm64",
                cache_flag,
                &cache,
                "-t",
                "cluster:1",
                ctx.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let runner_a = t.path().join("runner-a");
    let out_a = build(&runner_a, "--cache-to");
    let seen = skopeo_inspect(
        &["--tls-verify=false", "--raw"],
        &cache["registry:".len()..],
    );
    assert_eq!(
        seen["layers"].as_array().unwrap().len(),
        4,
        "three COPY layers and the registry layer: {seen}"
    );

    // Runner B: an empty store, the same Kubefile: every layer step is a hit, nothing is
    // fetched from the images' repositories, and the image is the same.
    let carried_gets = reg.requests("GET", "/team/");
    let runner_b = t.path().join("runner-b");
    let (out_b, log_b) = build(&runner_b, "--cache-from");
    let cached = log_b.lines().filter(|l| l.ends_with("CACHED")).count();
    assert_eq!(cached, 4, "{log_b}");
    assert!(
        !log_b
            .lines()
            .any(|l| l.contains("] ") && l.contains(" done in ")),
        "no layer step executed:\n{log_b}"
    );
    assert_eq!(common::built_digest(&out_b), common::built_digest(&out_a.0));
    assert_eq!(
        reg.requests("GET", "/team/"),
        carried_gets,
        "{}",
        reg.log_text()
    );
    assert!(
        !ok(&runner_b, &["images"]).contains("ci/cache"),
        "the cache image is not listed as an image"
    );
    // It survives gc (its entries keep it) and exports like a built image.
    ok(&runner_b, &["store", "gc"]);
    let (_, rebuilt) = build(&runner_b, "--cache-from");
    assert_eq!(
        rebuilt.lines().filter(|l| l.ends_with("CACHED")).count(),
        4,
        "{rebuilt}"
    );
    ok(&runner_b, &["store", "verify"]);

    // A missing cache is a warning, not a failed build.
    let runner_c = t.path().join("runner-c");
    let missing = format!("registry:{}/ci/none:main", reg.addr());
    let out = run(
        &runner_c,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-from",
            &missing,
            "-t",
            "plain:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: --cache-from registry:"),
        "{stderr}"
    );
    assert!(stderr.contains("not found"), "{stderr}");
    // A cache location that is not a registry is a usage error.
    let usage = run(
        &runner_c,
        &[
            "build",
            "--cache-to",
            "type=local,dest=x",
            "-t",
            "p:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(usage.status.code(), Some(2));
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(err.contains("registry:HOST/NAME:TAG"), "{err}");
}

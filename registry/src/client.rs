//! One registry conversation, blocking: `oci-client`'s async calls run on a current-thread
//! tokio runtime owned here, so the CLI, the store and the OCI readers stay synchronous.
//!
//! Everything that crosses the network goes through [`Session::retry`]: a transient failure
//! (connection refused or reset, a timeout, 5xx, 429) is tried again after an exponentially
//! growing delay; what is left is sorted into [`RegistryError`]'s variants. `oci-client` does
//! not hand out response headers, so a 429's `Retry-After` is read on uploads only (which
//! [`crate::upload`] speaks itself): elsewhere the backoff applies.
//!
//! The scheme is HTTPS, except for registries that are insecure by default (loopback, as in
//! docker) or by `--insecure-registry`: those are probed with HTTPS first and spoken to in
//! plain HTTP when the server does not talk TLS (a certificate problem is reported, not
//! downgraded).

use crate::auth::{credentials, AuthFiles, Credentials};
use crate::error::{RegistryError, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How transient failures are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// The delay after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Retry {
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// How to reach and authenticate to registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `USER:PASS` (`--creds`); wins over the auth files.
    pub creds: Option<String>,
    /// Auth files searched for the registry's entry.
    pub auth_files: AuthFiles,
    /// A PEM file of CA certificates trusted besides the system's (`--tls-ca`).
    pub tls_ca: Option<PathBuf>,
    /// Verify the registry's certificate (`--tls-verify=false` turns it off).
    pub tls_verify: bool,
    /// Registries (`host[:port]`) spoken to in plain HTTP when they do not talk TLS, besides
    /// loopback ones (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Retries of transient failures.
    pub retry: Retry,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            creds: None,
            auth_files: AuthFiles::default(),
            tls_ca: None,
            tls_verify: true,
            insecure_registries: Vec::new(),
            retry: Retry::default(),
        }
    }
}

/// Parses a registry reference (`HOST[:PORT]/NAME[:TAG][@DIGEST]`; `NAME` alone is Docker
/// Hub's, as docker reads it).
pub fn parse_reference(reference: &str) -> Result<Reference> {
    reference
        .parse::<Reference>()
        .map_err(|e| RegistryError::BadReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// Whether `registry` (`host[:port]`) is a loopback address or `localhost`.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `registry` may be spoken to in plain HTTP (when it does not talk TLS): a loopback
/// one, or one listed (`--insecure-registry HOST[:PORT]`, compared without case).
pub fn may_be_plain(registry: &str, insecure: &[String]) -> bool {
    is_loopback(registry) || insecure.iter().any(|r| r.eq_ignore_ascii_case(registry))
}

/// A connected, authenticated client for one reference.
pub struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The client manifests are pulled with, when it must not be `client`: `oci-client` stores
    /// the credentials given to a manifest pull, and with credentials stored but no token to
    /// cache (a registry that asks for none) it asks `GET /v2/` again before every request.
    manifests: Option<Client>,
    /// The reference operated on.
    pub reference: Reference,
    /// The reference as the user wrote it (for messages).
    pub shown: String,
    credentials: Credentials,
    retry: Retry,
    /// The HTTP client resumable uploads are sent with ([`crate::upload`]), configured as
    /// `client` is.
    http: reqwest::Client,
    /// `scheme://host[:port]` of the registry.
    base: reqwest::Url,
    /// The bearer token `oci-client` got for pushing, if the registry asked for one.
    bearer: Mutex<Option<String>>,
}

/// What a client error means for retrying and for the user.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    Transient,
    Throttled,
    Auth(u16),
    NotFound,
    Certificate,
    Fatal,
}

fn by_status(code: u16) -> Class {
    match code {
        401 | 403 => Class::Auth(code),
        404 => Class::NotFound,
        429 => Class::Throttled,
        408 | 500 | 502 | 503 | 504 => Class::Transient,
        _ => Class::Fatal,
    }
}

fn classify(e: &OciDistributionError) -> Class {
    if certificate_problem(e).is_some() {
        return Class::Certificate;
    }
    match e {
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => by_status(s.as_u16()),
            None if r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() => {
                Class::Transient
            }
            None => Class::Fatal,
        },
        OciDistributionError::ServerError { code, .. } => by_status(*code),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Class::Auth(401),
        OciDistributionError::ImageManifestNotFoundError(_) => Class::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let has = |c: OciErrorCode| codes.contains(&&c);
            if has(OciErrorCode::Denied) {
                Class::Auth(403)
            } else if has(OciErrorCode::Unauthorized) {
                Class::Auth(401)
            } else if has(OciErrorCode::Toomanyrequests) {
                Class::Throttled
            } else if has(OciErrorCode::ManifestUnknown)
                || has(OciErrorCode::NameUnknown)
                || has(OciErrorCode::BlobUnknown)
                || has(OciErrorCode::NotFound)
            {
                Class::NotFound
            } else {
                Class::Fatal
            }
        }
        OciDistributionError::IoError(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::UnexpectedEof => Class::Transient,
            _ => Class::Fatal,
        },
        _ => Class::Fatal,
    }
}

/// The TLS certificate error somewhere in `e`'s causes, if there is one.
fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(
            t @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType),
        ) = err.downcast_ref::<rustls::Error>()
        {
            return Some(t.to_string());
        }
        // An I/O error's `source` skips the error it wraps: step into that one instead.
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn read_ca(path: &PathBuf) -> Result<Certificate> {
    let data = read_pem(path)?;
    Ok(Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    })
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>> {
    let bad = |reason: String| RegistryError::TlsCa {
        path: path.clone(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !data
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(data)
}

/// The HTTP client of uploads, with `build_client`'s TLS settings and timeouts.
fn build_http(opts: &Options) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(!opts.tls_verify)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Duration::from_secs(300));
    if let Some(p) = &opts.tls_ca {
        let cert =
            reqwest::Certificate::from_pem(&read_pem(p)?).map_err(|e| RegistryError::TlsCa {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        b = b.tls_certs_merge([cert]);
    }
    b.build()
        .map_err(|e| RegistryError::Client(std::io::Error::other(e)))
}

/// How long a connection (TCP and TLS handshakes) may take; the HTTPS probe of a registry
/// that may be plain HTTP waits less, so a server that ignores a TLS hello costs little.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn build_client(opts: &Options, protocol: ClientProtocol, connect: Duration) -> Result<Client> {
    // reqwest is built without a default crypto provider: ring, which the workspace already
    // uses. Installing fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let extra_root_certificates = match &opts.tls_ca {
        Some(p) => vec![read_ca(p)?],
        None => Vec::new(),
    };
    let config = ClientConfig {
        protocol,
        accept_invalid_certificates: !opts.tls_verify,
        extra_root_certificates,
        connect_timeout: Some(connect),
        read_timeout: Some(Duration::from_secs(300)),
        platform_resolver: None,
        ..ClientConfig::default()
    };
    Client::try_from(config).map_err(|e| RegistryError::Client(std::io::Error::other(e)))
}

impl Session {
    /// Connects to the registry of `reference` for `op` (pull, or push which also pulls).
    pub fn open(reference: &str, opts: &Options, op: RegistryOperation) -> Result<Session> {
        let parsed = parse_reference(reference)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Client)?;
        let registry = parsed.registry().to_string();
        let credentials = credentials(&registry, opts.creds.as_deref(), &opts.auth_files)?;
        let insecure = may_be_plain(&registry, &opts.insecure_registries);
        let protocol = if insecure {
            let probe = build_client(opts, ClientProtocol::Https, PROBE_TIMEOUT)?;
            if speaks_tls(&rt, &probe, &parsed).map_err(|reason| tls_error(reference, reason))? {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(vec![parsed.resolve_registry().to_string()])
            }
        } else {
            ClientProtocol::Https
        };
        let client = build_client(opts, protocol.clone(), CONNECT_TIMEOUT)?;
        let scheme = match &protocol {
            ClientProtocol::HttpsExcept(_) | ClientProtocol::Http => "http",
            ClientProtocol::Https => "https",
        };
        let host = parsed.resolve_registry().to_string();
        let base = reqwest::Url::parse(&format!("{scheme}://{host}/")).map_err(|e| {
            RegistryError::BadReference {
                reference: reference.to_string(),
                reason: format!("registry {host}: {e}"),
            }
        })?;
        let mut session = Session {
            rt,
            client,
            manifests: None,
            reference: parsed,
            shown: reference.to_string(),
            credentials,
            retry: opts.retry,
            http: build_http(opts)?,
            base,
            bearer: Mutex::new(None),
        };
        if session.asks_for_nothing(opts, &protocol, op)? {
            session.manifests = Some(build_client(opts, protocol, CONNECT_TIMEOUT)?);
        } else {
            session.authenticate(op)?;
        }
        Ok(session)
    }

    /// Whether the session is anonymous and the registry issues no token challenge: then no
    /// credentials are stored in the client (asked on a throwaway client, which stores them).
    fn asks_for_nothing(
        &self,
        opts: &Options,
        protocol: &ClientProtocol,
        op: RegistryOperation,
    ) -> Result<bool> {
        if !matches!(self.credentials.auth, RegistryAuth::Anonymous) {
            return Ok(false);
        }
        let probe = build_client(opts, protocol.clone(), CONNECT_TIMEOUT)?;
        self.retry("authenticate to", "the registry", || {
            self.rt
                .block_on(probe.auth(&self.reference, &RegistryAuth::Anonymous, op))
                .map(|token| token.is_none())
        })
    }

    fn authenticate(&self, op: RegistryOperation) -> Result<()> {
        let auth = self.credentials.auth.clone();
        self.rt.block_on(
            self.client
                .store_auth_if_needed(self.reference.resolve_registry(), &auth),
        );
        let token = self.retry("authenticate to", "the registry", || {
            self.rt
                .block_on(self.client.auth(&self.reference, &auth, op))
        })?;
        if op == RegistryOperation::Push {
            *self.bearer.lock().unwrap_or_else(|p| p.into_inner()) = token;
        }
        Ok(())
    }

    /// Asks for a new push token (the one held was refused: it may have expired).
    pub(crate) fn refresh_push_token(&self) -> Result<()> {
        self.authenticate(RegistryOperation::Push)
    }

    /// The HTTP client of uploads.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL that opens an upload to the session's repository.
    pub(crate) fn upload_url(&self) -> std::result::Result<reqwest::Url, OciDistributionError> {
        let path = format!("v2/{}/blobs/uploads/", self.reference.repository());
        self.base
            .join(&path)
            .map_err(|e| OciDistributionError::UrlParseError(format!("{path}: {e}")))
    }

    /// The `Authorization` of a request to `url`: none for another host than the registry's
    /// (a `Location` may send an upload to object storage), else the bearer token or the
    /// basic credentials.
    pub(crate) fn upload_auth(&self, url: &reqwest::Url) -> Option<http::HeaderValue> {
        let same = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default();
        if !same {
            return None;
        }
        let bearer = self.bearer.lock().unwrap_or_else(|p| p.into_inner());
        let value = match (bearer.as_deref(), &self.credentials.auth) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, RegistryAuth::Basic(user, pass)) => {
                use base64::Engine as _;
                let pair = format!("{user}:{pass}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            (None, _) => return None,
        };
        let mut v = http::HeaderValue::from_str(&value).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Whether a failure is one that is tried again (transient or throttled).
    pub(crate) fn is_retried(&self, e: &OciDistributionError) -> bool {
        matches!(classify(e), Class::Transient | Class::Throttled)
    }

    /// Runs a future on the session's runtime.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The client to pull manifests with.
    pub(crate) fn manifest_client(&self) -> &Client {
        self.manifests.as_ref().unwrap_or(&self.client)
    }

    /// The credentials in use.
    pub(crate) fn auth(&self) -> &RegistryAuth {
        &self.credentials.auth
    }

    /// The retry policy.
    pub(crate) fn retry_policy(&self) -> Retry {
        self.retry
    }

    /// The error a failure that outlived its retries stands for.
    pub(crate) fn give_up(
        &self,
        source: OciDistributionError,
        attempts: u32,
        verb: &str,
        what: &str,
    ) -> RegistryError {
        let class = classify(&source);
        self.error(class, source, attempts, verb, what)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the tries are used up; `verb`
    /// and `what` name the operation in errors (`push`, `blob sha256:…`).
    pub(crate) fn retry<T>(
        &self,
        verb: &str,
        what: &str,
        mut attempt: impl FnMut() -> std::result::Result<T, OciDistributionError>,
    ) -> Result<T> {
        let attempts = self.retry.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let err = match attempt() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let class = classify(&err);
            let again = matches!(class, Class::Transient | Class::Throttled) && n < attempts;
            if again {
                std::thread::sleep(self.retry.delay(n));
                continue;
            }
            return Err(self.error(class, err, n, verb, what));
        }
    }

    fn error(
        &self,
        class: Class,
        source: OciDistributionError,
        attempts: u32,
        verb: &str,
        what: &str,
    ) -> RegistryError {
        let reference = self.shown.clone();
        match class {
            Class::Auth(status) => RegistryError::Unauthorized {
                reference,
                status,
                credentials: self.credentials.source.clone(),
            },
            Class::NotFound => RegistryError::NotFound {
                reference,
                what: what.to_string(),
            },
            Class::Throttled => RegistryError::TooManyRequests {
                reference,
                attempts,
            },
            Class::Certificate => {
                tls_error(&reference, certificate_problem(&source).unwrap_or_default())
            }
            Class::Transient if is_connection(&source) => RegistryError::Unreachable {
                reference,
                attempts,
                source,
            },
            Class::Transient | Class::Fatal => RegistryError::Protocol {
                reference,
                action: format!("{verb} {what}"),
                source,
            },
        }
    }
}

fn tls_error(reference: &str, reason: String) -> RegistryError {
    RegistryError::Tls {
        reference: reference.to_string(),
        reason,
    }
}

fn is_connection(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => r.status().is_none(),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// Whether the registry answers HTTPS: `Ok(false)` when it does not talk TLS or cannot be
/// reached (plain HTTP is then used, and a registry that is down fails there, retried);
/// `Err` for a certificate that is not accepted.
fn speaks_tls(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    reference: &Reference,
) -> std::result::Result<bool, String> {
    let probe =
        rt.block_on(client.auth(reference, &RegistryAuth::Anonymous, RegistryOperation::Pull));
    match probe {
        Ok(_) => Ok(true),
        Err(e) => match certificate_problem(&e) {
            Some(reason) => Err(reason),
            None => Ok(!matches!(e, OciDistributionError::RequestError(_))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for r in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:80",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "10.0.0.1:5000",
            "registry.example",
            "[fe80::1]:5000",
            "localhostx:1",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let listed = vec!["Lab.Example:5000".to_string()];
        assert!(may_be_plain("127.0.0.1:5000", &[]));
        assert!(may_be_plain("lab.example:5000", &listed));
        assert!(
            !may_be_plain("lab.example", &listed),
            "the port is part of the name"
        );
        assert!(!may_be_plain("registry.example", &listed));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            attempts: 9,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
        };
        let d: Vec<u128> = (1..6).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 700, 700]);
    }

    #[test]
    fn statuses_sort_into_classes() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        assert_eq!(classify(&server(503)), Class::Transient);
        assert_eq!(classify(&server(429)), Class::Throttled);
        assert_eq!(classify(&server(403)), Class::Auth(403));
        assert_eq!(classify(&server(404)), Class::NotFound);
        assert_eq!(classify(&server(400)), Class::Fatal);
        let io = OciDistributionError::IoError(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(classify(&io), Class::Transient);
    }
}

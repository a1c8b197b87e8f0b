//! Where the credentials for a registry come from: `--creds USER:PASS`, else the auth files
//! docker, podman and skopeo write (`$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`), else none.
//!
//! An auth file is `{"auths": {"HOST[:PORT]": {"auth": base64("USER:PASS")}}}`; keys written
//! as URLs (`https://index.docker.io/v1/`) are matched by their host. Credential helpers
//! (`credsStore`, `credHelpers`) and identity tokens are not run or used. Which source was used
//! is kept, so a 401 can say it.

use crate::error::{RegistryError, Result};
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest auth file read.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// The auth files to look in, in order.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    /// Files searched first to last; missing files are skipped.
    pub files: Vec<PathBuf>,
}

impl AuthFiles {
    /// `$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` or `$HOME/.docker/config.json`.
    pub fn from_env() -> Self {
        let mut files = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            files.push(Path::new(&d).join("config.json"));
        } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            files.push(Path::new(&h).join(".docker/config.json"));
        }
        AuthFiles { files }
    }
}

/// Credentials for one registry and where they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// What the client sends.
    pub auth: RegistryAuth,
    /// `--creds`, `auth file PATH`, or `no credentials`.
    pub source: String,
}

impl Credentials {
    /// Anonymous access.
    pub fn anonymous() -> Self {
        Credentials {
            auth: RegistryAuth::Anonymous,
            source: "no credentials (anonymous)".into(),
        }
    }
}

/// The credentials for `registry` (`host[:port]`): `creds` (`USER:PASS`) when given, else the
/// first auth file with an entry for it, else anonymous.
pub fn credentials(registry: &str, creds: Option<&str>, files: &AuthFiles) -> Result<Credentials> {
    if let Some(c) = creds {
        let (user, pass) = c.split_once(':').ok_or(RegistryError::BadCreds)?;
        if user.is_empty() {
            return Err(RegistryError::BadCreds);
        }
        return Ok(Credentials {
            auth: RegistryAuth::Basic(user.to_string(), pass.to_string()),
            source: "--creds".into(),
        });
    }
    for file in &files.files {
        if let Some((user, pass)) = from_file(file, registry)? {
            return Ok(Credentials {
                auth: RegistryAuth::Basic(user, pass),
                source: format!("auth file {}", file.display()),
            });
        }
    }
    Ok(Credentials::anonymous())
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The user and password `file` holds for `registry`, if it exists and has an entry.
fn from_file(file: &Path, registry: &str) -> Result<Option<(String, String)>> {
    let bad = |reason: String| RegistryError::AuthFile {
        path: file.to_path_buf(),
        reason,
    };
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if meta.len() > MAX_AUTH_FILE {
        return Err(bad(format!("larger than {MAX_AUTH_FILE} bytes")));
    }
    let text = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let parsed: AuthFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let wanted = key_host(registry);
    let Some((key, entry)) = parsed.auths.iter().find(|(k, _)| key_host(k) == wanted) else {
        return Ok(None);
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("the `auth` of {key} is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("the `auth` of {key} is not UTF-8")))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("the `auth` of {key} is not USER:PASSWORD")))?;
        return Ok(Some((user.to_string(), pass.to_string())));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
        _ => Ok(None),
    }
}

/// The registry host an auth-file key names: `https://h:p/v1/` → `h:p`; Docker Hub's
/// several names are one.
fn key_host(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn creds_win_then_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        let a = write(
            dir.path(),
            "a.json",
            r#"{"auths":{"other:1":{"auth":"eDp5"}}}"#,
        );
        let b = write(
            dir.path(),
            "b.json",
            &format!(r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{b64}"}}}}}}"#),
        );
        let files = AuthFiles {
            files: vec![dir.path().join("missing.json"), a, b.clone()],
        };
        let c = credentials("127.0.0.1:5000", None, &files).unwrap();
        assert!(matches!(&c.auth, RegistryAuth::Basic(u, p) if u == "alice" && p == "s3:cret"));
        assert_eq!(c.source, format!("auth file {}", b.display()));
        let c = credentials("127.0.0.1:5000", Some("bob:pw"), &files).unwrap();
        assert!(matches!(&c.auth, RegistryAuth::Basic(u, _) if u == "bob"));
        assert_eq!(c.source, "--creds");
        let c = credentials("elsewhere:1", None, &files).unwrap();
        assert!(matches!(c.auth, RegistryAuth::Anonymous));
    }

    #[test]
    fn bad_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "c.json", r#"{"auths":{"h:1":{"auth":"!!"}}}"#);
        let files = AuthFiles { files: vec![f] };
        let e = credentials("h:1", None, &files).unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("not base64"), "{e}");
        assert!(matches!(
            credentials("h:1", Some("nocolon"), &files),
            Err(RegistryError::BadCreds)
        ));
        let g = write(dir.path(), "d.json", "{not json");
        let e = credentials("h:1", None, &AuthFiles { files: vec![g] })
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.json"), "{e}");
    }

    #[test]
    fn docker_hub_keys_match() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(key_host("Registry.Example:443"), "registry.example:443");
    }
}

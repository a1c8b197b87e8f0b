//! Container image references normalised as docker does (`nginx` →
//! `docker.io/library/nginx:latest`), so the same image written two ways is one image and
//! the ignore list matches whatever form either side uses.
//!
//! The grammar is distribution's reference grammar (`distribution/reference/regexp.go`),
//! implemented by `oci_spec::distribution::Reference`, whose domain split is docker's
//! `ParseNormalizedNamed`. On top of it: a clear reason for the common mistakes
//! (an unrendered template, an uppercase repository, whitespace).

use oci_spec::distribution::{ParseError, Reference};

/// The normalised form of `raw`, or why it is not a reference.
pub(crate) fn normalize(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("empty image reference".into());
    }
    if raw.contains("{{") || raw.contains("}}") {
        return Err(format!(
            "`{}` is not an image reference: it holds unrendered template syntax",
            chasi_oci::error::excerpt(raw)
        ));
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{}` is not an image reference: it contains whitespace",
            chasi_oci::error::excerpt(raw)
        ));
    }
    // The grammar is ASCII (Go's `\w`); the regex crate's `\w` would take any letter.
    if !raw.is_ascii() {
        return Err(format!(
            "`{}` is not an image reference: it contains non-ASCII characters",
            chasi_oci::error::excerpt(raw)
        ));
    }
    match Reference::try_from(raw) {
        Ok(r) => Ok(r.whole()),
        Err(e) => Err(format!(
            "`{}` is not an image reference: {}",
            chasi_oci::error::excerpt(raw),
            reason(raw, &e)
        )),
    }
}

fn reason(raw: &str, err: &ParseError) -> String {
    if *err == ParseError::ReferenceInvalidFormat {
        let name_end = raw.find('@').unwrap_or(raw.len());
        let name = &raw[..name_end];
        let repo_end = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => i,
            _ => name.len(),
        };
        let repo = &name[..repo_end];
        let path = match repo.split_once('/') {
            Some((d, rest)) if d.contains('.') || d.contains(':') || d == "localhost" => rest,
            _ => repo,
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return "repository name must be lowercase".into();
        }
    }
    err.to_string()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn docker_normalisation() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        for (raw, want) in [
            ("nginx", "docker.io/library/nginx:latest".to_string()),
            ("nginx:1.25", "docker.io/library/nginx:1.25".into()),
            ("library/nginx", "docker.io/library/nginx:latest".into()),
            (
                "index.docker.io/nginx",
                "docker.io/library/nginx:latest".into(),
            ),
            (
                "quay.io/jetstack/cert-manager-controller",
                "quay.io/jetstack/cert-manager-controller:latest".into(),
            ),
            ("localhost/x", "localhost/x:latest".into()),
            ("registry:5000/a/b:v1", "registry:5000/a/b:v1".into()),
            (
                &format!("nginx@{d}"),
                format!("docker.io/library/nginx@{d}"),
            ),
            (
                &format!("k8s.gcr.io/pause:3.9@{d}"),
                format!("k8s.gcr.io/pause:3.9@{d}"),
            ),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want.as_str()), "{raw}");
        }
    }

    #[test]
    fn invalid_references_say_why() {
        for (raw, why) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("quay.io/Jetstack/x:v1", "lowercase"),
            ("nginx:bad tag", "whitespace"),
            ("nginx:-bad", "invalid reference format"),
            ("nginx:t\u{e9}g", "non-ASCII"),
            ("{{ .Values.image }}", "unrendered template"),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef01234567",
                "digest length",
            ),
        ] {
            let err = normalize(raw).unwrap_err();
            assert!(err.contains(why), "{raw}: {err}");
        }
    }
}

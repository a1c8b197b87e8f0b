//! Image references as users type them: `oci:PATH[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:REF|@N]`, or a plain store name `name[:tag]`.
//!
//! The transport prefixes and the "path ends at the first colon" rule are those of
//! containers/image (skopeo, podman, buildah), so a reference that works with `skopeo`
//! works with `FROM` and `chasi load`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::{OciError, OciResult};

/// Which image in a docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerSelector {
    /// An entry of `RepoTags` (`busybox:1.36`; `docker.io/library/` is optional).
    Reference(String),
    /// The N-th entry of `manifest.json` (`@0`).
    Index(usize),
}

impl fmt::Display for DockerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerSelector::Reference(r) => f.write_str(r),
            DockerSelector::Index(i) => write!(f, "@{i}"),
        }
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An image in the chasi store, `name[:tag]` (tag defaults to `latest`).
    Store {
        /// Repository name, e.g. `kubernetes` or `registry.local/k8s`.
        name: String,
        /// Tag.
        tag: String,
    },
    /// An OCI image layout directory.
    OciLayout {
        /// The directory.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name`; `None` = the only image.
        tag: Option<String>,
    },
    /// A tar of an OCI image layout.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name`; `None` = the only image.
        tag: Option<String>,
    },
    /// A `docker save` archive.
    DockerArchive {
        /// The archive file.
        path: PathBuf,
        /// Which image; `None` = the only image.
        selector: Option<DockerSelector>,
    },
}

fn bad(reference: &str, reason: impl Into<String>) -> OciError {
    OciError::BadReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// The longest image name accepted in `org.opencontainers.image.ref.name`,
/// `io.containerd.image.name` or a docker-archive's `RepoTags`.
pub const MAX_REF_NAME_LEN: usize = 255;

/// Checks an OCI `org.opencontainers.image.ref.name` value (also used for the other image
/// names a layout or archive carries): at most [`MAX_REF_NAME_LEN`] characters, `/`-separated
/// components of letters, digits and `-._:@+`, each starting and ending with a letter or
/// digit (so no empty, `.` or `..` component, no control character).
pub fn validate_ref_name(name: &str) -> OciResult<()> {
    match ref_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(bad(name, reason)),
    }
}

/// What is wrong with an image name, if anything (see [`validate_ref_name`]).
pub fn ref_name_problem(name: &str) -> Option<&'static str> {
    let alnum_ends = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > MAX_REF_NAME_LEN {
        Some("the name is longer than 255 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:@+/".contains(c))
    {
        Some("a name contains only letters, digits and -._:@+/")
    } else if !name.split('/').all(alnum_ends) {
        Some("each /-separated part of a name must start and end with a letter or digit")
    } else {
        None
    }
}

fn split_path(reference: &str, rest: &str) -> OciResult<(PathBuf, Option<String>)> {
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(bad(reference, "the path is empty"));
    }
    let tag = match tag {
        Some("") => return Err(bad(reference, "the tag after `:` is empty")),
        Some(t) => Some(t.to_string()),
        None => None,
    };
    Ok((PathBuf::from(path), tag))
}

/// Whether `name` is a repository name: `/`-separated components of lowercase letters,
/// digits and `-._`; the first of several components may be a registry `host:port`. A `:`
/// anywhere else would make `a:b:c` ambiguous, so it is refused.
fn name_ok(name: &str) -> bool {
    let component = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
    };
    let mut parts = name.split('/');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let first_ok = match first.split_once(':') {
        Some((host, port)) => {
            !rest.is_empty()
                && component(host)
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        }
        None => component(first),
    };
    first_ok && rest.into_iter().all(component)
}

fn parse_store(reference: &str) -> OciResult<ImageRef> {
    if reference.contains('@') {
        return Err(bad(
            reference,
            "digest references are not store names; use name:tag",
        ));
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            &reference[last_slash + i + 1..],
        ),
        None => (reference, "latest"),
    };
    if !name_ok(name) {
        return Err(bad(
            reference,
            "a name is lowercase letters, digits and -._ in /-separated components (only a leading registry component may carry a :PORT), followed by at most one :TAG",
        ));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        && !tag.starts_with(['.', '-']);
    if !tag_ok {
        return Err(bad(
            reference,
            "a tag is up to 128 letters, digits and -._, not starting with . or -",
        ));
    }
    Ok(ImageRef::Store {
        name: name.to_string(),
        tag: tag.to_string(),
    })
}

impl FromStr for ImageRef {
    type Err = OciError;

    fn from_str(reference: &str) -> OciResult<Self> {
        if let Some(rest) = reference.strip_prefix("oci:") {
            let (path, tag) = split_path(reference, rest)?;
            if let Some(t) = &tag {
                validate_ref_name(t).map_err(|_| bad(reference, "invalid tag"))?;
            }
            return Ok(ImageRef::OciLayout { path, tag });
        }
        if let Some(rest) = reference.strip_prefix("oci-archive:") {
            let (path, tag) = split_path(reference, rest)?;
            if let Some(t) = &tag {
                validate_ref_name(t).map_err(|_| bad(reference, "invalid tag"))?;
            }
            return Ok(ImageRef::OciArchive { path, tag });
        }
        if let Some(rest) = reference.strip_prefix("docker-archive:") {
            let (path, sel) = split_path(reference, rest)?;
            let selector = match sel {
                None => None,
                Some(s) => match s.strip_prefix('@') {
                    Some(n) => Some(DockerSelector::Index(n.parse().map_err(|_| {
                        bad(reference, "`@` must be followed by an image index")
                    })?)),
                    None => Some(DockerSelector::Reference(s)),
                },
            };
            return Ok(ImageRef::DockerArchive { path, selector });
        }
        if let Some((transport, _)) = reference.split_once(':') {
            if !transport.contains('/') && !transport.contains('.') {
                if let Ok(r) = parse_store(reference) {
                    return Ok(r);
                }
                if ["docker", "dir", "containers-storage", "docker-daemon"].contains(&transport) {
                    return Err(bad(
                        reference,
                        format!("transport `{transport}:` is not supported (oci:, oci-archive:, docker-archive: are)"),
                    ));
                }
            }
        }
        parse_store(reference)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Store { name, tag } => write!(f, "{name}:{tag}"),
            ImageRef::OciLayout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            ImageRef::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                tag.as_ref().map_or(Ok(()), |t| write!(f, ":{t}"))
            }
            ImageRef::DockerArchive { path, selector } => {
                write!(f, "docker-archive:{}", path.display())?;
                selector.as_ref().map_or(Ok(()), |s| write!(f, ":{s}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_are_checked_component_by_component() {
        for ok in ["v1", "registry.local:5000/k8s/base:v1.30", "a-b_c+d@e", "x"] {
            assert_eq!(ref_name_problem(ok), None, "{ok}");
        }
        let long = "a".repeat(MAX_REF_NAME_LEN + 1);
        for bad in [
            "", "../..", "a/../b", "a/./b", "a//b", "/a", "a/", "-a", "a\nb", "a\u{7}", "é", &long,
        ] {
            assert!(ref_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(ref_name_problem(&long[1..]).is_none());
    }

    fn p(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn transports_parse_and_print_back() {
        for s in [
            "oci:/tmp/layout:v1",
            "oci:rel/dir",
            "oci:/x:registry.local/k8s:1.30",
            "oci-archive:/tmp/a.tar:latest",
            "oci-archive:a.tar",
            "docker-archive:/tmp/d.tar:busybox:1.36",
            "docker-archive:/tmp/d.tar:@1",
            "docker-archive:d.tar",
            "kubernetes:v1.30",
            "registry.local:5000/k8s/base:v1",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(
            p("oci:/x:registry.local/k8s:1.30"),
            ImageRef::OciLayout {
                path: "/x".into(),
                tag: Some("registry.local/k8s:1.30".into())
            }
        );
        assert_eq!(
            p("kubernetes"),
            ImageRef::Store {
                name: "kubernetes".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(
            p("docker-archive:d.tar:@2"),
            ImageRef::DockerArchive {
                path: "d.tar".into(),
                selector: Some(DockerSelector::Index(2))
            }
        );
    }

    #[test]
    fn malformed_references_are_rejected() {
        for s in [
            "oci:",
            "oci::tag",
            "oci:/x:",
            "oci:/x:-bad",
            "docker-archive:d.tar:@x",
            "oci:/x:a/../b",
            "oci:/x:a//b",
            "Upper:tag",
            "name:",
            "docker://busybox",
            "name@sha256:00",
            "a:b:c",
            "a:b:c:d",
            "host:port/x:1",
            "x/y:5000/z:1",
            "a::b",
        ] {
            assert!(s.parse::<ImageRef>().is_err(), "{s} should be rejected");
        }
    }
}

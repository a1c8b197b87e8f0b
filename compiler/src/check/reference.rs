//! The shape of an image reference in `FROM`, checked after expansion.
//!
//! Why here: `FROM name:${TAG}` with `TAG` unset expands to `name:`, which no registry or store
//! can resolve; the checker must say so (KF232) instead of planning it. The rules are Docker's
//! reference grammar: `[host[:port]/]path[:tag][@algorithm:hex]`, path components lowercase
//! letters and digits joined by `.`, `_` or `-`, a tag of at most 128 word characters, `.` and
//! `-` not starting with `.` or `-`. Transports (`oci:`, `oci-archive:`, `docker-archive:`) name
//! paths, which the builder checks when it opens them.

/// What is wrong with `reference`, or `None` when it has the shape of an image reference.
pub(crate) fn reference_problem(reference: &str) -> Option<String> {
    if ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|t| reference.starts_with(t))
    {
        return None;
    }
    let (named, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        if let Some(why) = digest_problem(d) {
            return Some(why);
        }
    }
    let last_slash = named.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match named[last_slash..].rfind(':') {
        Some(i) => (&named[..last_slash + i], Some(&named[last_slash + i + 1..])),
        None => (named, None),
    };
    if let Some(t) = tag {
        if t.is_empty() {
            return Some("the tag after `:` is empty".into());
        }
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if t.len() > 128
            || t.starts_with(['.', '-'])
            || !t.chars().all(|c| word(c) || ".-".contains(c))
        {
            return Some(format!(
                "the tag `{t}` is not up to 128 letters, digits, `_`, `.` and `-` (not starting with `.` or `-`)"
            ));
        }
    }
    path_problem(path)
}

fn digest_problem(d: &str) -> Option<String> {
    let ok = d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            && hex.len() >= 32
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    });
    (!ok).then(|| {
        format!("the digest `{d}` is not `algorithm:hex` (e.g. `sha256:` and 64 hex digits)")
    })
}

fn path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("the image name is empty".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    let registry = parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
    for (i, part) in parts.iter().enumerate() {
        if i == 0 && registry {
            let (host, port) = match part.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (*part, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Some(format!("the registry `{part}` is not `host[:port]`"));
            }
            continue;
        }
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !part.is_empty()
            && part.starts_with(alnum)
            && part.ends_with(alnum)
            && part.chars().all(|c| alnum(c) || "._-".contains(c));
        if !ok {
            return Some(if part.is_empty() {
                "the name has an empty `/` component".to_string()
            } else {
                format!(
                    "the name component `{part}` is not lowercase letters and digits joined by `.`, `_` or `-`"
                )
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_every_kind_are_accepted() {
        for good in [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "docker.io/library/busybox:latest",
            "registry.local:5000/team/app_x:v1.2-rc_3",
            "localhost/k8s:v1.30",
            "ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a/b:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "oci:/some/dir:tag",
            "oci-archive:x.tar",
            "docker-archive:x.tar:a/b:c",
        ] {
            assert_eq!(reference_problem(good), None, "{good}");
        }
    }

    #[test]
    fn references_broken_by_expansion_are_named() {
        for (bad, why) in [
            ("name:", "the tag after `:` is empty"),
            ("registry.local/:v1", "empty `/` component"),
            ("a//b", "empty `/` component"),
            ("/b", "empty `/` component"),
            ("Busybox", "component `Busybox`"),
            ("a:b:c", "component `a:b`"),
            ("a@", "the digest ``"),
            ("a@sha256:xyz", "the digest `sha256:xyz`"),
            ("host:port/x", "the registry `host:port`"),
            ("", "the image name is empty"),
        ] {
            let got = reference_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(got.contains(why), "{bad}: {got}");
        }
    }
}

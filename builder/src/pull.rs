//! `FROM HOST[:PORT]/NAME:TAG` and `FROM HOST[:PORT]/NAME@sha256:…`: a base image in a
//! registry, pulled once into the store and used from there.
//!
//! A reference whose first component is a registry host (it has a `.` or a `:`, or is
//! `localhost`, as docker reads it) or that names a digest is looked up in the store first,
//! under the name `chasi pull` gives it (`HOST/NAME:TAG`, or `HOST/NAME:sha256-HEX` for a
//! digest); only when absent is it pulled (`chasi_registry::pull`: the whole index, every blob
//! verified). The stage's cache key holds the chosen manifest's digest, so a tag that moves
//! (after a `chasi pull`) gives new cache keys. With `--offline` the store is all there is.

use crate::error::{BuildError, Result};
use chasi_layers::{Digest, Store};
use std::sync::Mutex;

/// One registry base is looked up (and pulled) at a time: the stages of a multi-platform
/// build that start from the same image then find it in the store instead of pulling it
/// once each.
static PULLING: Mutex<()> = Mutex::new(());

/// Whether `reference` names an image in a registry rather than in the store or a file.
pub fn is_registry_reference(reference: &str) -> bool {
    if ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|t| reference.starts_with(t))
    {
        return false;
    }
    let first = reference.split('/').next().unwrap_or_default();
    reference.contains('@')
        || (reference.contains('/') && (first.contains(['.', ':']) || first == "localhost"))
}

/// The root digest in the store of the registry image `reference`, pulled first when the
/// store does not have it (never when `offline`).
pub fn registry_root(
    store: &Store,
    reference: &str,
    registry: &chasi_registry::Options,
    offline: bool,
) -> Result<Digest> {
    let pull_err = |source| BuildError::BasePull {
        reference: reference.to_string(),
        source: Box::new(source),
    };
    let parsed = chasi_registry::parse_reference(reference).map_err(pull_err)?;
    let repo = format!("{}/{}", parsed.registry(), parsed.repository());
    let pinned = match parsed.digest() {
        Some(d) => Some(d.parse::<Digest>().map_err(|_| BuildError::Base {
            reference: reference.to_string(),
            message: format!("`{d}` is not a sha256 digest"),
        })?),
        None => None,
    };
    // A thread that panicked while holding the lock left nothing half-done: the store is.
    let _one_at_a_time = PULLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = match &pinned {
        Some(d) => format!("{repo}:sha256-{}", d.hex()),
        None => format!("{repo}:{}", parsed.tag().unwrap_or("latest")),
    };
    match (&pinned, store.get_ref(&name)) {
        (Some(d), _) if store.has_blob(d) => return Ok(*d),
        (None, Ok(d)) => return Ok(d),
        (_, Err(e)) if !e.is_not_found() => {
            return Err(BuildError::BaseRef {
                reference: reference.to_string(),
                source: e,
            })
        }
        _ => {}
    }
    if offline {
        return Err(BuildError::BaseOffline {
            reference: reference.to_string(),
        });
    }
    let report = chasi_registry::pull(store, reference, Some(&name), registry).map_err(pull_err)?;
    match pinned {
        Some(d) if d != report.digest => Err(BuildError::Base {
            reference: reference.to_string(),
            message: format!("the registry served {} for it", report.digest),
        }),
        _ => Ok(report.digest),
    }
}

#[cfg(test)]
mod tests {
    use super::is_registry_reference;

    #[test]
    fn registry_references_are_told_from_store_names_and_files() {
        for r in [
            "127.0.0.1:5000/ns/app:1",
            "registry.example/app",
            "localhost/app:1",
            "app@sha256:0123",
        ] {
            assert!(is_registry_reference(r), "{r}");
        }
        for r in [
            "app:1",
            "ns/app:1",
            "oci:dir/x:1",
            "oci-archive:a.b/c.tar",
            "scratch",
        ] {
            assert!(!is_registry_reference(r), "{r}");
        }
    }
}

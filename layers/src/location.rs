//! Where the store lives: one library function so the CLI, the build executor and tests agree.
//!
//! Order: an explicit directory (the CLI's global `--store`), else `$CHASI_STORE`, else `/var/lib/chasi` when
//! running as root, else `$XDG_DATA_HOME/chasi`, else `$HOME/.local/share/chasi`.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Resolves the store directory from the process environment.
///
/// `explicit` is the value of `--store` if given (the CLI may already have folded `$CHASI_STORE` into it).
pub fn resolve_store_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let is_root = rustix::process::geteuid().is_root();
    resolve_store_dir_with(explicit, |k| std::env::var_os(k), is_root)
}

/// Same as [`resolve_store_dir`] with an injected environment lookup and root flag (for tests and embedding).
pub fn resolve_store_dir_with(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    is_root: bool,
) -> Result<PathBuf> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = non_empty("CHASI_STORE") {
        return Ok(PathBuf::from(p));
    }
    if is_root {
        return Ok(PathBuf::from("/var/lib/chasi"));
    }
    if let Some(p) = non_empty("XDG_DATA_HOME") {
        let p = PathBuf::from(p);
        // The XDG spec says relative values are invalid and must be ignored.
        if p.is_absolute() {
            return Ok(p.join("chasi"));
        }
    }
    if let Some(h) = non_empty("HOME") {
        return Ok(PathBuf::from(h).join(".local/share/chasi"));
    }
    Err(Error::NoLocation(
        "no --store given and none of CHASI_STORE, XDG_DATA_HOME, HOME is set".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn precedence() {
        let all = [
            ("CHASI_STORE", "/s"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let p = resolve_store_dir_with(Some(Path::new("/cli")), env(&all), false).unwrap();
        assert_eq!(p, PathBuf::from("/cli"));
        assert_eq!(
            resolve_store_dir_with(None, env(&all), false).unwrap(),
            PathBuf::from("/s")
        );
        assert_eq!(
            resolve_store_dir_with(None, env(&all), true).unwrap(),
            PathBuf::from("/s")
        );
        let no_store = [("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(
            resolve_store_dir_with(None, env(&no_store), false).unwrap(),
            PathBuf::from("/x/chasi")
        );
        assert_eq!(
            resolve_store_dir_with(None, env(&no_store), true).unwrap(),
            PathBuf::from("/var/lib/chasi")
        );
        let rel_xdg = [("XDG_DATA_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(
            resolve_store_dir_with(None, env(&rel_xdg), false).unwrap(),
            PathBuf::from("/h/.local/share/chasi")
        );
        assert!(resolve_store_dir_with(None, env(&[]), false).is_err());
    }
}

//! Refs: `name:tag` → manifest digest, one file per name under `refs/` (the name escaped), replaced atomically;
//! the roots of gc together with the cache records.

use super::handle::Store;
use super::records::RefRecord;
use crate::digest::Digest;
use crate::error::{Error, IoCtx, Result};
use crate::fsutil;
use crate::json;
use std::fs;
use std::io;
use std::path::PathBuf;

impl Store {
    fn ref_path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.len() > 512 || name.chars().any(|c| c.is_control()) {
            return Err(Error::BadRefName(name.to_string()));
        }
        let mut esc = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
                esc.push(b as char);
            } else {
                esc.push_str(&format!("%{b:02X}"));
            }
        }
        Ok(self.root.join("refs").join(format!("{esc}.json")))
    }

    /// Points `name` (e.g. `app:1.0`) at a manifest digest, atomically replacing any previous value.
    pub fn set_ref(&self, name: &str, digest: &Digest) -> Result<()> {
        let p = self.ref_path(name)?;
        // An unchanged rebuild re-tags the same image: nothing to write or fsync.
        if self.get_ref(name).is_ok_and(|d| d == *digest) {
            return Ok(());
        }
        let rec = RefRecord {
            name: name.to_string(),
            digest: *digest,
        };
        let data = serde_json::to_vec_pretty(&rec)
            .map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

    /// Resolves `name` to its manifest digest.
    pub fn get_ref(&self, name: &str) -> Result<Digest> {
        let p = self.ref_path(name)?;
        let rec: RefRecord =
            json::read(&p, json::MAX_DOC, "ref")?.ok_or_else(|| Error::RefNotFound {
                name: name.to_string(),
                store: self.root.clone(),
            })?;
        Ok(rec.digest)
    }

    /// Removes a reference; returns whether it existed.
    pub fn delete_ref(&self, name: &str) -> Result<bool> {
        let p = self.ref_path(name)?;
        match fs::remove_file(&p) {
            Ok(()) => {
                fsutil::fsync_dir(&self.root.join("refs"))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }

    /// All references, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<RefRecord>> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let p = ent.ctx("read directory", &dir)?.path();
            if p.extension().is_some_and(|e| e == "json") {
                out.extend(json::read::<RefRecord>(&p, json::MAX_DOC, "ref")?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

//! Build-cache records: a JSON value stored under its key (`cache/<key>.json`) and bound to it, so a record
//! copied to another key's file reads as a miss; a record that cannot be read is a miss too, never an error.

use super::handle::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::json;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::PathBuf;

/// A build-cache record (`cache/<key>.json`): the value bound to the key it was written for, so that a record
/// renamed or copied to another key's file reads as a miss instead of answering for a step it was not made by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    /// The key the record was written for; must equal the file name.
    pub(crate) key: Digest,
    /// What the caller stored.
    pub(crate) value: serde_json::Value,
}

impl Store {
    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root.join("cache").join(format!("{}.json", key.hex()))
    }

    /// Records a build-cache entry, bound to its key (see [`Store::get_cache`]). Every `sha256:…` string inside
    /// `value` is kept alive by `gc`.
    pub fn put_cache(&self, key: &Digest, value: &serde_json::Value) -> Result<()> {
        let p = self.cache_path(key);
        let rec = CacheRecord {
            key: *key,
            value: value.clone(),
        };
        let data =
            serde_json::to_vec(&rec).map_err(|e| Error::io("encode", &p, io::Error::other(e)))?;
        fsutil::atomic_write(self.tmp_dir(), &p, &data)
    }

    /// Looks up a build-cache entry. A malformed record, or one written for another key (a file renamed or copied
    /// over this key's), reads as a miss; `verify` reports both.
    pub fn get_cache(&self, key: &Digest) -> Result<Option<serde_json::Value>> {
        self.get_cache_as(key)
    }

    /// [`Store::get_cache`] parsed straight into `T` (no intermediate JSON value: a large
    /// record, such as the file-digest cache of a big build context, is read once). A record
    /// that does not parse as `T` is a miss.
    pub fn get_cache_as<T: serde::de::DeserializeOwned>(&self, key: &Digest) -> Result<Option<T>> {
        #[derive(Deserialize)]
        struct Typed<T> {
            key: Digest,
            value: T,
        }
        let p = self.cache_path(key);
        let data = match json::read_bounded(&p, json::MAX_DOC, "cache record") {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(Error::Malformed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(
            json::parse::<Typed<T>>(&data, json::MAX_DOC, "cache record", &p)
                .ok()
                .filter(|r| r.key == *key)
                .map(|r| r.value),
        )
    }

    /// Removes a cache entry; returns whether it existed.
    pub fn delete_cache(&self, key: &Digest) -> Result<bool> {
        let p = self.cache_path(key);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &p, e)),
        }
    }
}

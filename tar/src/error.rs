//! Why an entry could not be written.
//!
//! The writer is a `Write` adapter, so its methods return `std::io::Error`; the refusals of
//! the format itself carry a [`TarError`] inside, which [`TarError::of`] gets back.

use std::io;

/// An entry the format cannot hold, or data that does not match the entry.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Device numbers need more than 7 octal digits.
    #[error("device numbers {major}:{minor} of {path} do not fit a tar header")]
    DeviceNumbers {
        /// The entry's name.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A value needs an extended header and the format writes none.
    #[error("the {field} of {path} ({value}) does not fit a ustar header, and this format has no extended headers")]
    DoesNotFit {
        /// The entry's name.
        path: String,
        /// Which value (`name`, `link target`, `uid`, `gid`, `mtime`, `xattr`).
        field: &'static str,
        /// The value, or its length for names.
        value: String,
    },
    /// A regular file with data was appended without a reader.
    #[error("file entry without data")]
    NoData,
    /// The reader ended before the entry's size.
    #[error("{path} shrank while being archived ({got} of {size} bytes)")]
    Short {
        /// The entry's name.
        path: String,
        /// Bytes the reader gave.
        got: u64,
        /// The entry's size.
        size: u64,
    },
}

impl TarError {
    /// The format error inside an I/O error returned by the writer, if it is one.
    pub fn of(err: &io::Error) -> Option<&TarError> {
        err.get_ref().and_then(|e| e.downcast_ref::<TarError>())
    }
}

impl From<TarError> for io::Error {
    fn from(e: TarError) -> io::Error {
        let kind = match e {
            TarError::Short { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

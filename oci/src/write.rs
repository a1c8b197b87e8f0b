//! The save side's options and report, and [`save`], the one call `chasi save` makes.
//!
//! The three writers live with their formats ([`super::layout`], [`super::docker`]); [`save`]
//! picks one at run time. What they share (options, report) is in [`super::options`], below
//! them, so imports run one way: this module → the writers → `options`.

use std::path::Path;

use oci_spec::image::Descriptor;

use super::blobs::BlobSource;
use super::error::OciResult;
// Defined below the writers, so that they need not import this module.
pub use super::options::{SaveFormat, WriteOptions, WriteReport};

/// Writes the image rooted at `root` (a manifest or an index in `source`) to `path` in
/// `format`. Archives follow the rules of [`crate::output`] (a file atomically, a pipe or
/// device in place, `-` to standard output); an OCI layout is a directory.
pub fn save(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    format: SaveFormat,
    path: &Path,
    opts: &WriteOptions,
) -> OciResult<WriteReport> {
    match format {
        SaveFormat::OciLayout => super::layout::write_oci_layout(source, root, path, opts),
        SaveFormat::OciArchive => super::layout::write_oci_archive(source, root, path, opts),
        SaveFormat::DockerArchive => super::docker::write_docker_archive(source, root, path, opts),
    }
}

//! The save side's options and report, and [`save`], the one call `chasi save` makes.
//!
//! The three writers live with their formats ([`super::layout`], [`super::docker`]); [`save`]
//! picks one at run time. What they share (options, report) is in [`super::options`], below
//! them, so imports run one way: this module → the writers → `options`.

use std::path::Path;

use oci_spec::image::Descriptor;

use super::blobs::BlobSource;
use super::error::OciResult;
use super::image::select_platform_manifest;
// Defined below the writers, so that they need not import this module.
pub use super::options::{SaveFormat, WriteOptions, WriteReport};

/// Writes the image rooted at `root` (a manifest or an index in `source`) to `path` in
/// `format`. Archives follow the rules of [`crate::output`] (a file atomically, a pipe or
/// device in place, `-` to standard output); an OCI layout is a directory. With
/// [`WriteOptions::platform`], OCI layouts and archives hold that platform's manifest alone
/// (their index lists it instead of the image's index), as a docker-archive always does.
pub fn save(
    source: &(impl BlobSource + ?Sized),
    root: &Descriptor,
    format: SaveFormat,
    path: &Path,
    opts: &WriteOptions,
) -> OciResult<WriteReport> {
    let selected;
    let root = match (&opts.platform, format) {
        (Some(p), SaveFormat::OciLayout | SaveFormat::OciArchive) => {
            selected = select_platform_manifest(source, root, p)?;
            &selected
        }
        _ => root,
    };
    match format {
        SaveFormat::OciLayout => super::layout::write_oci_layout(source, root, path, opts),
        SaveFormat::OciArchive => super::layout::write_oci_archive(source, root, path, opts),
        SaveFormat::DockerArchive => super::docker::write_docker_archive(source, root, path, opts),
    }
}

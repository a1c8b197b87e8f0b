//! Which container images a cluster image needs, found in an unpacked rootfs the way
//! sealer's `--build-mode all` looks for them (`../shared/notes/sealer.md` §4.4) but
//! without its line heuristic: image lists, Kubernetes YAML parsed as YAML (every
//! container's `image`, wherever pod specs are embedded), and Helm charts rendered with
//! their default values by chasi's own template engine.
//!
//! Data flow: [`detect`] opens the root as a chroot (`fsroot`), `scan` walks sealer's
//! layout, `list` reads image lists, `manifest` takes images from `yaml` trees, `chart`
//! loads, resolves and renders charts over `template`; `report` normalises every
//! reference (`reference`), collects problems and applies the ignore list.
//!
//! A mistake in the input is a [`Problem`] with a position, never a panic and never a
//! silent skip: an invalid reference, malformed YAML, a template construct the renderer
//! does not support, `required`/`fail` hitting on default values. Detection continues past
//! problems; the builder fails the build when [`Detection::has_errors`]. The only `Err` is
//! a root or a list file that cannot be read.
//!
//! Bounds, each reported when hit: 16 MiB per YAML file, template, values file or packaged
//! chart; 64 MiB and 10000 files per chart; per template, 20 million evaluation steps,
//! 16 MiB of output and 64 nested `include`/`template`/`tpl` calls; YAML nesting of 200
//! levels and two million nodes with aliases expanded.
//!
//! Positions: lines and columns are 1-based (0 when a problem concerns a whole file); for a
//! chart they are those of the template file for parse and execution errors, and of the
//! template's rendered output for the images it yields and for YAML errors in that output.

mod chart;
mod fsroot;
mod list;
mod manifest;
mod model;
mod reference;
mod report;
mod scan;
mod template;
mod yaml;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

pub use model::{ContainerImage, DetectError, Detection, Options, Problem, Severity, Source};

/// Largest host list file read.
const MAX_LIST: u64 = 16 << 20;

/// The images the rootfs at `root` needs, with `options`' lists applied.
pub fn detect(root: &Path, options: &Options) -> Result<Detection, DetectError> {
    let fsroot = fsroot::Root::open(root).map_err(|source| DetectError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let mut report = report::Report::default();
    let mut ignored = BTreeSet::new();
    if let Some(path) = &options.ignored_image_list {
        if let Some(text) = read_list(path, &mut report)? {
            ignored = list::ignored(&text, path, &mut report);
        }
    }
    if let Some(path) = &options.image_list {
        if let Some(text) = read_list(path, &mut report)? {
            list::images(&text, path, &mut report);
        }
    }
    scan::scan(&fsroot, &mut report);
    Ok(report.finish(&ignored))
}

fn read_list(path: &Path, report: &mut report::Report) -> Result<Option<String>, DetectError> {
    let err = |source| DetectError::List {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut data = Vec::new();
    file.take(MAX_LIST + 1)
        .read_to_end(&mut data)
        .map_err(err)?;
    if data.len() as u64 > MAX_LIST {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "larger than 16 MiB",
        )));
    }
    match String::from_utf8(data) {
        Ok(t) => Ok(Some(t)),
        Err(_) => {
            report.error(path, 0, 0, "image list is not UTF-8");
            Ok(None)
        }
    }
}

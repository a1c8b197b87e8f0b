//! Image lists in sealer's syntax (`manifests/imageList`, `--image-list`,
//! `--ignored-image-list`): one reference a line, blank lines and `#` comments skipped
//! (a trailing ` # comment` too), surrounding quotes trimmed. Every entry is normalised,
//! so an ignore list may use short forms (`nginx`) — sealer compared unnormalised text.

use std::collections::BTreeSet;
use std::path::Path;

use crate::reference::normalize;
use crate::report::{at, Report};

/// `(line, column, entry)` of each entry of a list.
fn entries(text: &str) -> Vec<(u32, u32, &str)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let start = raw.len() - raw.trim_start().len();
        let mut entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if let Some(pos) = entry.find(" #").or_else(|| entry.find("\t#")) {
            entry = entry[..pos].trim_end();
        }
        let mut col_shift = 0;
        for q in ['"', '\''] {
            if entry.len() >= 2 && entry.starts_with(q) && entry.ends_with(q) {
                entry = &entry[1..entry.len() - 1];
                col_shift = 1;
                break;
            }
        }
        let column =
            u32::try_from(raw[..start].chars().count() + 1 + col_shift).unwrap_or(u32::MAX);
        out.push((line, column, entry));
    }
    out
}

/// Reports every entry of the list `text`, read from `path`, as an image.
pub(crate) fn images(text: &str, path: &Path, report: &mut Report) {
    for (line, column, entry) in entries(text) {
        report.image(entry, None, at(path, line, column));
    }
}

/// The normalised references of the ignore list `text`; invalid entries are errors.
pub(crate) fn ignored(text: &str, path: &Path, report: &mut Report) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (line, column, entry) in entries(text) {
        match normalize(entry) {
            Ok(r) => {
                out.insert(r);
            }
            Err(why) => report.error(path, line, column, why),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealer_list_syntax() {
        let text = "# comment\n\n  nginx\n\"quay.io/a/b:v1\"\n'busybox:1.36' # trailing\nNginx\n";
        let e = entries(text);
        assert_eq!(
            e,
            vec![
                (3, 3, "nginx"),
                (4, 2, "quay.io/a/b:v1"),
                (5, 2, "busybox:1.36"),
                (6, 1, "Nginx")
            ]
        );
        let mut report = Report::default();
        let ignored = ignored(text, Path::new("ignore"), &mut report);
        assert!(ignored.contains("docker.io/library/nginx:latest"));
        let d = report.finish(&BTreeSet::new());
        assert_eq!(d.problems.len(), 1);
        assert_eq!((d.problems[0].line, d.problems[0].column), (6, 1));
    }
}

//! `COPY`, `ADD` and `APP`/`CNI`/`CSI`: gather the source trees (build context, another
//! stage's filesystem, fetched remote files, unpacked local archives for `ADD`), map them
//! into the image by Docker's destination rules, and write them as one layer.

use super::StepInput;
use crate::copy::{self as files, CopyOptions, Mapping, SourceTree, TreeOwners};
use crate::error::{io, Result, StepError};
use crate::fetch::Fetched;
use crate::rootfs::WorkRoot;
use crate::state::ImageState;
use chasi_compiler::check::context::EntryKind;
use chasi_compiler::check::{App, Context, Copy, Source};
use chasi_layers::{LayerInfo, Store};
use std::path::Path;
use std::sync::Mutex;

/// `COPY`/`ADD`: local context sources (archives unpacked for `ADD`), remote ones (checked
/// against `--checksum`), or a path of another stage (`--from`).
pub(super) fn copy(
    input: &StepInput<'_, '_>,
    c: &Copy,
    state: &ImageState,
    root: &mut WorkRoot,
) -> Result<LayerInfo> {
    let store = input.session.store;
    let is_add = matches!(input.op, chasi_compiler::check::Op::Add(_));
    let scratch = input.scratch();
    // `--chown=preserve` keeps the sources' own owners; an unpacked archive keeps its records.
    let owners = || {
        if c.preserve_owners {
            TreeOwners::Kept
        } else {
            TreeOwners::Reset
        }
    };
    let mut trees = Vec::new();
    for (si, s) in c.sources.iter().enumerate() {
        match s {
            Source::Local { path, matches } => {
                if let Some(done) = input.from_stage {
                    let mut other = done.root.lock().unwrap_or_else(|e| e.into_inner());
                    let other_root = other.sync(store, &done.state.layers)?.to_path_buf();
                    let mut t = tree_in(input, &other_root, path)?;
                    t.owners = owners();
                    trees.push(t);
                    continue;
                }
                for m in matches {
                    let mut t = context_tree(input, &input.session.context, m)?;
                    t.owners = owners();
                    if is_add && !t.is_dir {
                        let dir = scratch.join(format!("add-{si}"));
                        if let Some(extracted) =
                            crate::archive::maybe_extract(store, &t.root, &dir)?
                        {
                            trees.push(extracted);
                            continue;
                        }
                    }
                    trees.push(t);
                }
            }
            Source::Remote { url } => {
                let f = fetched(input, url)?;
                if let Some(sum) = &c.checksum {
                    if *sum != f.digest.to_string() {
                        return Err(input.err(StepError::Checksum {
                            url: url.clone(),
                            digest: f.digest,
                            wanted: sum.clone(),
                        }));
                    }
                }
                trees.push(materialize_fetched(
                    store,
                    f,
                    &scratch.join(format!("remote-{si}")),
                )?);
            }
        }
    }
    let chown = match &c.chown {
        None => None,
        Some(ch) => {
            let layers = state.layers.clone();
            let mut rootfs = || {
                let path = root.sync(store, &layers).map_err(Box::new);
                path.map(Path::to_path_buf).map_err(StepError::Rootfs)
            };
            Some(
                files::resolve_chown(&ch.user, ch.group.as_deref(), &mut rootfs)
                    .map_err(|e| input.err(e))?,
            )
        }
    };
    let options = CopyOptions {
        chown,
        chmod: c.chmod,
        epoch: input.session.opts.source_date_epoch,
    };
    write(input, state, root, &trees, &c.dest, &options)
}

/// `APP`/`CNI`/`CSI`: the sources into the application directory, as they are.
pub(super) fn app(
    input: &StepInput<'_, '_>,
    app: &App,
    state: &ImageState,
    root: &mut WorkRoot,
) -> Result<LayerInfo> {
    let store = input.session.store;
    let scratch = input.scratch();
    let mut trees = Vec::new();
    for (si, s) in app.sources.iter().enumerate() {
        match s {
            Source::Local { matches, .. } => {
                for m in matches {
                    trees.push(context_tree(input, &input.session.context, m)?);
                }
            }
            Source::Remote { url } => {
                let f = fetched(input, url)?;
                trees.push(materialize_fetched(
                    store,
                    f,
                    &scratch.join(format!("remote-{si}")),
                )?);
            }
        }
    }
    let dest = if app.dest.ends_with('/') {
        app.dest.clone()
    } else {
        format!("{}/", app.dest)
    };
    let options = CopyOptions {
        chown: None,
        chmod: None,
        epoch: input.session.opts.source_date_epoch,
    };
    write(input, state, root, &trees, &dest, &options)
}

/// Maps the trees to `dest` and writes the layer; removes the step's scratch directory.
fn write(
    input: &StepInput<'_, '_>,
    state: &ImageState,
    root: &mut WorkRoot,
    trees: &[SourceTree],
    dest: &str,
    options: &CopyOptions,
) -> Result<LayerInfo> {
    let store = input.session.store;
    let mappings = map_with_root(store, state, root, trees, dest).map_err(|m| input.err(m))?;
    if let Some(total) = trees.iter().map(|t| t.tar_bytes).sum::<Option<u64>>() {
        input.total(total + 1024);
    }
    let report = |bytes: u64| input.report(bytes);
    let info = files::write_layer(store, &mappings, options, Some(&report))?;
    let _ = std::fs::remove_dir_all(input.scratch());
    Ok(info)
}

fn fetched<'f>(input: &StepInput<'f, '_>, url: &str) -> Result<&'f Fetched> {
    input
        .fetched
        .get(url)
        .ok_or_else(|| input.err(StepError::NotFetched { url: url.into() }))
}

/// Applies Docker's destination rules, looking at the stage's filesystem only when it has one.
fn map_with_root(
    store: &Store,
    state: &ImageState,
    root: &mut WorkRoot,
    trees: &[SourceTree],
    dest: &str,
) -> std::result::Result<Vec<Mapping>, StepError> {
    if state.layers.is_empty() {
        return Ok(files::map_into_image(trees, dest, None)?);
    }
    let path = root
        .sync(store, &state.layers)
        .map_err(|e| StepError::Rootfs(Box::new(e)))?
        .to_path_buf();
    Ok(files::map_into_image(trees, dest, Some(&path))?)
}

fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .to_string()
}

/// A context source (already resolved and checked by the compiler), with `.kubefileignore` applied.
fn context_tree(
    input: &StepInput<'_, '_>,
    context: &Mutex<Context>,
    rel: &str,
) -> Result<SourceTree> {
    let entries = context
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .walk(rel)
        .map_err(|e| input.err(e))?;
    let top = entries
        .iter()
        .find(|e| e.rel.is_empty())
        .ok_or_else(|| input.err(StepError::Vanished { path: rel.into() }))?;
    Ok(SourceTree {
        root: top.path.clone(),
        is_dir: top.kind == EntryKind::Dir,
        below: entries
            .iter()
            .filter(|e| !e.rel.is_empty())
            .map(|e| e.rel.clone())
            .collect(),
        file_name: base_name(rel),
        owners: TreeOwners::Reset,
        tar_bytes: Some(tar_estimate(&entries)),
    })
}

/// The tar bytes of these entries: a 512-byte header each, file data padded to 512 bytes
/// (exact for ustar names; a long name's PAX record or a destination's parent directories add
/// a little). A directory source's own entry is not copied, only what is below it.
fn tar_estimate(entries: &[chasi_compiler::check::context::Entry]) -> u64 {
    entries
        .iter()
        .filter(|e| !(e.rel.is_empty() && e.kind == EntryKind::Dir))
        .map(|e| match e.kind {
            EntryKind::File => 512 + e.size.div_ceil(512) * 512,
            _ => 512,
        })
        .sum()
}

/// A path inside another stage's filesystem (`COPY --from`), never leaving it.
fn tree_in(input: &StepInput<'_, '_>, root: &Path, path: &str) -> Result<SourceTree> {
    let (parts, _) = files::normalize_dest(path);
    let rel = parts.join("/");
    let full = root.join(&rel);
    let missing = || input.err(StepError::NotInStage { path: rel.clone() });
    // Refuse a source that is, or passes through, a symlink: it could point anywhere.
    let mut walk = root.to_path_buf();
    for p in &parts {
        walk.push(p);
        let meta = std::fs::symlink_metadata(&walk).map_err(|_| missing())?;
        if meta.file_type().is_symlink() {
            return Err(input.err(StepError::SymlinkInStage { path: rel.clone() }));
        }
    }
    let meta = std::fs::symlink_metadata(&full).map_err(|_| missing())?;
    let is_dir = meta.is_dir() || rel.is_empty();
    Ok(SourceTree {
        below: if is_dir {
            files::list_tree(&full)?
        } else {
            Vec::new()
        },
        root: full,
        is_dir,
        file_name: base_name(&rel),
        owners: TreeOwners::Reset,
        tar_bytes: None,
    })
}

/// Writes a fetched blob to a file named after its URL, for copying.
fn materialize_fetched(store: &Store, f: &Fetched, dir: &Path) -> Result<SourceTree> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(&f.file_name);
    let mut out = std::fs::File::create(&path).map_err(io("create", &path))?;
    store.copy_blob(&f.digest, &mut out)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(io("chmod", &path))?;
    Ok(SourceTree {
        root: path,
        is_dir: false,
        below: Vec::new(),
        file_name: f.file_name.clone(),
        owners: TreeOwners::Reset,
        tar_bytes: None,
    })
}

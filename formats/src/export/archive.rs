//! File-system exports: `tar` (the flattened rootfs, streamed from the store with no
//! intermediate copy: [`chasi_layers::Store::flatten`]) and `squashfs` (the rootfs as a
//! zstd squashfs, built by `mksquashfs` from an unpacked copy).

use std::io::{BufWriter, Write};
use std::path::Path;

use super::rootfs;
use super::{tools, work_dir, write_built, ExportFormat, ExportInput, ExportOptions};
use super::{ExportError, ExportReport, ExportResult, Exporter};
use chasi_oci::output::Output;

/// `tar`: the merged rootfs, whiteouts applied, as one reproducible tar.
#[derive(Debug, Clone, Copy)]
pub struct TarExporter;

impl Exporter for TarExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Tar
    }

    fn check(&self, _opts: &ExportOptions) -> ExportResult<()> {
        Ok(())
    }

    fn export(
        &self,
        input: &ExportInput<'_>,
        _opts: &ExportOptions,
        out: &Path,
    ) -> ExportResult<ExportReport> {
        let view = input.store.flat_view(&input.layers)?;
        if view.entries().is_empty() {
            return Err(ExportError::NoRootfs {
                image: input.digest,
            });
        }
        let mut o = Output::create(out)?;
        {
            let mut sa = o.writer();
            let mut w = BufWriter::with_capacity(1 << 20, &mut sa);
            let written = view.write_tar(&mut w);
            let flushed = w.flush();
            drop(w);
            // The store's error does not name the output: report a failed write as ours.
            if let Some(e) = sa.write_error() {
                return Err(ExportError::io("write", out)(e));
            }
            written?;
            flushed.map_err(ExportError::io("write", out))?;
            sa.finish().map_err(ExportError::io("sync", out))?;
        }
        let size = o.commit()?;
        Ok(ExportReport {
            format: ExportFormat::Tar,
            path: out.to_path_buf(),
            size,
            bootable: false,
            notes: Vec::new(),
        })
    }
}

/// `squashfs`: the rootfs as a zstd squashfs image.
#[derive(Debug, Clone, Copy)]
pub struct SquashfsExporter;

impl Exporter for SquashfsExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Squashfs
    }

    fn check(&self, _opts: &ExportOptions) -> ExportResult<()> {
        tools::require(&[tools::MKSQUASHFS])
    }

    fn export(
        &self,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        out: &Path,
    ) -> ExportResult<ExportReport> {
        let (_, epoch) = input.scan_rootfs()?;
        let work = work_dir(input.store)?;
        let tree = work.path().join("rootfs");
        rootfs::unpack(input.store, &input.layers, &tree)?;
        let size = write_built(out, work.path(), "rootfs.squashfs", |img| {
            rootfs::build_squashfs(&tree, img, epoch, opts.threads)
        })?;
        Ok(ExportReport {
            format: ExportFormat::Squashfs,
            path: out.to_path_buf(),
            size,
            bootable: false,
            notes: Vec::new(),
        })
    }
}

//! `iso`: an ISO 9660 medium with Rock Ridge and Joliet, built by `xorriso -as mkisofs`.
//!
//! Two kinds, chosen by the image:
//! - **Live** (the image carries a kernel and is x86-64): `boot/vmlinuz` plus
//!   `boot/initrd.img`, a gzip'd newc cpio of the *whole rootfs* ([`super::cpio`]; the
//!   kernel and initrd files themselves are left out). The kernel unpacks it into a tmpfs
//!   and runs the image's `/init` (else `/sbin/init`) as PID 1, so the live system's root is
//!   the image's rootfs and no CD or file-system driver is needed — the simplest robust
//!   choice when the kernel has those drivers as modules (Debian's do). The price is RAM:
//!   the rootfs must fit in memory, which suits appliance images, not multi-GiB distros.
//!   Boot: GRUB El Torito for BIOS (`i386-pc-eltorito`, boot-info-table, grub2-boot-info,
//!   GRUB's hybrid MBR so it also boots from USB) and an EFI El Torito FAT image with
//!   `EFI/BOOT/BOOTX64.EFI`, also exposed as a GPT partition (`-efi-boot-part`) for USB.
//!   `--boot uefi|bios|hybrid` (default hybrid) picks the firmwares.
//! - **Data** (no kernel): the image as an OCI layout under `oci/` plus a `README.txt`,
//!   readable on any machine (`skopeo copy oci:/media/oci:TAG ...`, `chasi load`).
//!
//! The boot says what the medium is before the kernel starts ([`live_banner`]): the image, that
//! it runs from RAM and keeps nothing, and for an installer how to install its disk.
//!
//! Reproducibility: xorriso honours `SOURCE_DATE_EPOCH` (volume dates, file dates, the
//! volume UUID); every staged file's mtime is set to the clamp epoch as well.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;

use super::disks::{short_id, DiskExporter};
use super::{boot, cpio, tools, work_dir, write_built, BootMode, ExportFormat};
use super::{ExportError, ExportInput, ExportOptions, ExportReport, ExportResult, Exporter};
use crate::slots::{self, InstallManifest, INSTALL_FORMAT};
use chasi_layers::Digest;
use chasi_oci::{write_oci_layout, WriteOptions};
use sha2::{Digest as _, Sha256};

/// The ISO exporter.
#[derive(Debug, Clone, Copy)]
pub struct IsoExporter;

/// The live kernel command line.
pub fn live_cmdline(init: &str, extra: Option<&str>) -> String {
    let mut s = format!("rdinit={init} console=tty0 console=ttyS0,115200 panic=-1");
    if let Some(e) = extra.filter(|e| !e.trim().is_empty()) {
        s.push(' ');
        s.push_str(e.trim());
    }
    s
}

/// The GRUB `echo` lines that say, on the console, what the medium is before the live system
/// starts: the image (its name when it has one, and its digest), that it runs from RAM and
/// keeps nothing, and, for an installer (`--slots ab`), how to install the disk it carries.
/// `name` is the image's `name:tag` (`None` when exported by digest), `digest` its platform
/// manifest's digest. Each line fits an 80-column console (GRUB's serial terminal wraps at
/// 80), a long image name aside.
pub fn live_banner(name: Option<&str>, digest: &Digest, installer: bool) -> String {
    let mut lines = vec![
        match name {
            Some(name) => format!("chasi live ISO: {name}"),
            None => "chasi live ISO".to_string(),
        },
        format!("image {digest}"),
        "runs from RAM: the whole root is in memory; changes are lost at power-off".to_string(),
    ];
    if installer {
        lines.push(format!(
            "installer: it carries an A/B disk in /{};",
            slots::INSTALL_DIR
        ));
        lines.push("`chasi-node install --target DISK` writes it to DISK".to_string());
    }
    lines.iter().map(|l| boot::grub_echo(l)).collect()
}

impl Exporter for IsoExporter {
    fn format(&self) -> ExportFormat {
        ExportFormat::Iso
    }

    fn check(&self, _opts: &ExportOptions) -> ExportResult<()> {
        tools::require(&[tools::XORRISO])
    }

    fn export(
        &self,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        out: &Path,
    ) -> ExportResult<ExportReport> {
        let (info, epoch) = input.scan_rootfs()?;
        let seed = input.seed();
        let bootable = info.kernel.is_some() && input.bootable_arch();
        let mode = opts.boot.unwrap_or(BootMode::Hybrid);
        let (bios, uefi) = match mode {
            BootMode::Uefi => (false, true),
            BootMode::Bios => (true, false),
            BootMode::Hybrid => (true, true),
        };
        if bootable {
            if uefi {
                tools::require(&boot::UEFI_TOOLS)?;
            }
            if bios {
                tools::require(&boot::BIOS_TOOLS)?;
            }
        } else if opts.slots.is_some() {
            return Err(ExportError::option(
                "iso",
                "--slots ab makes an installer, which needs a bootable x86-64 image (a kernel in /boot/vmlinuz-* or /vmlinuz)",
            ));
        } else if input.oci.is_none() {
            return Err(ExportError::option(
                "iso",
                "a data ISO carries the image as an OCI layout, but no OCI source was given",
            ));
        }
        let work = work_dir(input.store)?;
        let stage = work.path().join("iso");
        let bootdir = stage.join("boot");
        std::fs::create_dir_all(&bootdir).map_err(ExportError::io("create", &bootdir))?;
        let mut notes = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let (true, Some(kernel)) = (bootable, &info.kernel) {
            let mut view = input.store.flat_view(&input.layers)?;
            let kidx = view
                .entries()
                .iter()
                .position(|e| e.entry.path == kernel.as_bytes())
                .ok_or(ExportError::NoRootfs {
                    image: input.digest,
                })?;
            let kpath = bootdir.join("vmlinuz");
            {
                let mut f =
                    std::fs::File::create(&kpath).map_err(ExportError::io("create", &kpath))?;
                view.read_file(kidx, &mut f)?;
            }
            let has = |p: &str| view.entries().iter().any(|e| e.entry.path == p.as_bytes());
            let init = if has("init") { "/init" } else { "/sbin/init" };
            let skip_k = kernel.clone().into_bytes();
            let skip_i = info.initrd.clone().map(String::into_bytes);
            let ipath = bootdir.join("initrd.img");
            {
                let f = std::fs::File::create(&ipath).map_err(ExportError::io("create", &ipath))?;
                let mut gz = flate2::GzBuilder::new().mtime(0).operating_system(3).write(
                    std::io::BufWriter::with_capacity(1 << 20, f),
                    flate2::Compression::new(6),
                );
                let skip = |p: &[u8]| p == skip_k.as_slice() || skip_i.as_deref() == Some(p);
                cpio::write_cpio(&mut view, &mut gz, epoch, &skip)?;
                finish_gz(gz, &ipath)?;
            }
            if let Some(ab) = &opts.slots {
                let carried = installer_payload(input, opts, ab, work.path())?;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&ipath)
                    .map_err(ExportError::io("open", &ipath))?;
                // The kernel reads a following archive only from a 4-byte boundary; zeros between
                // archives are skipped.
                let len = f.metadata().map_err(ExportError::io("stat", &ipath))?.len();
                f.write_all(&vec![0u8; ((512 - len % 512) % 512) as usize])
                    .map_err(ExportError::io("write", &ipath))?;
                let files: Vec<(&str, &Path)> = carried
                    .iter()
                    .map(|(n, p)| (n.as_str(), p.as_path()))
                    .collect();
                let mut w = std::io::BufWriter::new(&mut f);
                cpio::write_plain_files(&mut w, &files, epoch)?;
                w.flush().map_err(ExportError::io("write", &ipath))?;
                notes.push(format!(
                    "installer: the live system carries the A/B disk in /{} (`chasi-node install --target DISK`)",
                    slots::INSTALL_DIR
                ));
            }
            let marker = format!("/boot/chasi-{}.id", short_id(&input.digest));
            let marker_file = stage.join(&marker[1..]);
            std::fs::write(&marker_file, format!("{}\n", input.digest))
                .map_err(ExportError::io("write", &marker_file))?;
            let cmdline = live_cmdline(init, opts.kernel_cmdline.as_deref());
            let script = format!(
                "{}{}",
                live_banner(
                    input.oci.as_ref().and_then(|o| o.name.as_deref()),
                    &input.digest,
                    opts.slots.is_some()
                ),
                boot::grub_script(&marker, "/boot/vmlinuz", Some("/boot/initrd.img"), &cmdline)
            );
            if bios {
                let grubdir = bootdir.join("grub");
                std::fs::create_dir_all(&grubdir).map_err(ExportError::io("create", &grubdir))?;
                boot::grub_bios_eltorito(
                    &script,
                    &grubdir.join("eltorito.img"),
                    work.path(),
                    epoch,
                )?;
                args.extend(
                    [
                        "-b",
                        "boot/grub/eltorito.img",
                        "-no-emul-boot",
                        "-boot-load-size",
                        "4",
                        "-boot-info-table",
                        "--grub2-boot-info",
                        "--grub2-mbr",
                    ]
                    .map(String::from),
                );
                args.push(boot::grub_hybrid_mbr().display().to_string());
            }
            if uefi {
                let efi = work.path().join("BOOTX64.EFI");
                boot::grub_efi(&script, &efi, work.path(), epoch)?;
                let size = std::fs::metadata(&efi)
                    .map_err(ExportError::io("stat", &efi))?
                    .len();
                boot::fat_image(
                    &bootdir.join("efiboot.img"),
                    boot::fat_size(size),
                    "EFIBOOT",
                    &[("EFI/BOOT/BOOTX64.EFI", &efi)],
                    &seed,
                    epoch,
                )?;
                if bios {
                    args.push("-eltorito-alt-boot".into());
                }
                args.extend(
                    [
                        "-e",
                        "boot/efiboot.img",
                        "-no-emul-boot",
                        "-efi-boot-part",
                        "--efi-boot-image",
                    ]
                    .map(String::from),
                );
            }
            if bios && uefi {
                args.push("--protective-msdos-label".into());
            }
            notes.push(format!(
                "live ISO ({}): kernel /{kernel}, rootfs as initramfs, cmdline `{cmdline}`",
                mode.firmware()
            ));
        } else if let Some(oci) = &input.oci {
            let tag = oci
                .name
                .as_ref()
                .and_then(|n| n.rsplit_once(':').map(|(_, t)| t.to_string()));
            write_oci_layout(
                oci.source,
                &oci.root,
                &stage.join("oci"),
                &WriteOptions {
                    tag: tag.clone(),
                    image_name: oci.name.clone(),
                    work_dir: Some(work.path().to_path_buf()),
                    ..Default::default()
                },
            )?;
            let readme = stage.join("README.txt");
            let name = oci.name.clone().unwrap_or_else(|| input.digest.to_string());
            let reference = tag.unwrap_or_else(|| "latest".into());
            std::fs::write(
                &readme,
                format!(
                    "This medium carries the container image {name}\n\
                     (digest {}) as an OCI image layout in the folder oci/.\n\n\
                     Mount it and load the image with any OCI tool, for example:\n\
                     \x20 skopeo copy oci:/media/cdrom/oci:{reference} docker-archive:image.tar\n\
                     \x20 chasi load /media/cdrom/oci\n",
                    oci.root.digest()
                ),
            )
            .map_err(ExportError::io("write", &readme))?;
            std::fs::remove_dir(&bootdir).map_err(ExportError::io("remove", &bootdir))?;
            notes.push("data ISO: OCI layout in oci/ and README.txt".into());
        }
        boot::date_tree(&stage, epoch)?;
        let size = write_built(out, work.path(), "out.iso", |iso| {
            let mut c = tools::command(tools::XORRISO, epoch)?;
            c.args([
                "-as",
                "mkisofs",
                "-quiet",
                "-iso-level",
                "3",
                "-R",
                "-J",
                "-joliet-long",
            ])
            .arg("-V")
            .arg(&opts.label)
            .args(&args)
            .arg("-o")
            .arg(iso)
            .arg(&stage);
            tools::run(&mut c).map(drop)
        })?;
        drop(work);
        Ok(ExportReport {
            format: ExportFormat::Iso,
            path: out.to_path_buf(),
            size,
            bootable,
            notes,
        })
    }
}

/// The A/B disk of the image, raw and zstd-compressed, and its manifest: the files an installer's live
/// system carries (`(path in the live root, file)`).
fn installer_payload(
    input: &ExportInput<'_>,
    opts: &ExportOptions,
    ab: &super::AbSlots,
    work: &Path,
) -> ExportResult<Vec<(String, std::path::PathBuf)>> {
    let raw = work.join("ab.raw");
    DiskExporter {
        format: ExportFormat::Raw,
    }
    .export_ab(input, opts, ab, &raw)?;
    let name = "disk.raw.zst";
    let zst = work.join(name);
    let mut src = std::fs::File::open(&raw).map_err(ExportError::io("open", &raw))?;
    let out = std::fs::File::create(&zst).map_err(ExportError::io("create", &zst))?;
    let mut enc = zstd::stream::write::Encoder::new(
        HashingWriter {
            inner: std::io::BufWriter::new(out),
            hash: Sha256::new(),
        },
        3,
    )
    .map_err(ExportError::io("compress", &zst))?;
    // Frame checksums: the decoder proves the content; the SHA-256 of the file proves the file.
    enc.include_checksum(true)
        .map_err(ExportError::io("compress", &zst))?;
    let size = std::io::copy(&mut src, &mut enc).map_err(ExportError::io("compress", &raw))?;
    let mut w = enc.finish().map_err(ExportError::io("write", &zst))?;
    w.inner.flush().map_err(ExportError::io("write", &zst))?;
    let sha256 = format!("sha256:{}", hex::encode(w.hash.finalize()));
    std::fs::remove_file(&raw).map_err(ExportError::io("remove", &raw))?;
    let manifest = InstallManifest {
        format: INSTALL_FORMAT,
        disk: name.into(),
        size,
        sha256,
        image: input.digest.to_string(),
    };
    let mpath = work.join(slots::INSTALL_MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ExportError::io("write", &mpath)(e.into()))?;
    std::fs::write(&mpath, text).map_err(ExportError::io("write", &mpath))?;
    Ok(vec![
        (
            format!("{}/{}", slots::INSTALL_DIR, slots::INSTALL_MANIFEST),
            mpath,
        ),
        (format!("{}/{name}", slots::INSTALL_DIR), zst),
    ])
}

/// Hashes what passes through.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn finish_gz<W: Write>(gz: GzEncoder<std::io::BufWriter<W>>, path: &Path) -> ExportResult<()> {
    let mut w = gz.finish().map_err(ExportError::io("write", path))?;
    w.flush().map_err(ExportError::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"an image")
    }

    /// The text the console shows for `banner`.
    fn shown(banner: &str) -> Vec<&str> {
        banner
            .lines()
            .map(|l| {
                l.strip_prefix("echo '")
                    .and_then(|l| l.strip_suffix('\''))
                    .unwrap_or_else(|| panic!("not a quoted echo: {l}"))
            })
            .collect()
    }

    #[test]
    fn the_live_banner_names_the_image_and_says_it_keeps_nothing() {
        let d = digest();
        let b = live_banner(Some("node:v1"), &d, false);
        let lines = shown(&b);
        assert_eq!(lines[0], "chasi live ISO: node:v1", "{b}");
        assert_eq!(lines[1], format!("image {d}"), "{b}");
        assert!(lines[2].starts_with("runs from RAM"), "{b}");
        assert!(lines[2].ends_with("changes are lost at power-off"), "{b}");
        assert_eq!(lines.len(), 3, "{b}");
        assert!(lines.iter().all(|l| l.len() < 80), "{b}");
        let by_digest = live_banner(None, &d, false);
        assert_eq!(shown(&by_digest)[0], "chasi live ISO", "{by_digest}");
        assert_eq!(shown(&by_digest)[1], format!("image {d}"), "{by_digest}");
    }

    #[test]
    fn an_installer_says_how_it_installs() {
        let b = live_banner(Some("node:v1"), &digest(), true);
        let lines = shown(&b);
        assert_eq!(
            lines[3..],
            [
                format!(
                    "installer: it carries an A/B disk in /{};",
                    slots::INSTALL_DIR
                )
                .as_str(),
                "`chasi-node install --target DISK` writes it to DISK"
            ],
            "{b}"
        );
        assert!(lines.iter().all(|l| l.len() < 80), "{b}");
    }

    #[test]
    fn the_script_echoes_the_banner_before_it_boots() {
        let s = format!(
            "{}{}",
            live_banner(Some("x:y"), &digest(), false),
            boot::grub_script("/boot/m.id", "/boot/vmlinuz", Some("/boot/initrd.img"), "c")
        );
        let banner = s.find("chasi live ISO").unwrap();
        assert!(banner < s.find("\nlinux ").unwrap(), "{s}");
    }
}

//! `install --target DISK`: writes the A/B disk an installer medium carries (`chasi export --format iso
//! --slots ab`, in its live system's `/chasi/install/`) onto a disk, so the machine then boots from it
//! as a node (slot `a` confirmed, its store holding the image).
//!
//! The disk is written as it will run, never formatted here (no `mkfs` on the node): the raw A/B disk is
//! streamed from its zstd file, whose SHA-256 must be the manifest's (the file is hashed as it is read)
//! and whose frame checksum proves what it decompresses to, as does the manifest's size. The partition table goes last: the first MiB (protective MBR, GPT) is zeroed before anything
//! else and written only once every other byte is written, verified and synced, so an interrupted or
//! corrupt install leaves a disk without a table, never one that boots half a system. On a disk larger
//! than the image the table is re-homed (the backup header at the disk's real end). Zero runs are
//! written as `fallocate(ZERO_RANGE)` where the device supports it, so a mostly empty disk costs little.
//! The target must be a block device (or a regular file) that nothing has mounted: opened with `O_EXCL`,
//! and its partitions checked against the mount table.

use crate::error::{IoCtx, NodeError, Result};
use crate::event::{Event, Observer};
use chasi_formats::gpt::GptLayout;
use chasi_formats::slots::{InstallManifest, INSTALL_FORMAT};
use rustix::fs::{FallocateFlags, OFlags};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The first bytes held back until the end: protective MBR, GPT header and entries, up to the first
/// partition (1 MiB aligned).
const HEAD: usize = 1 << 20;
const CHUNK: usize = 1 << 20;

/// What `install` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The disk written.
    pub target: PathBuf,
    /// Bytes of the A/B disk.
    pub size: u64,
    /// Bytes of the target.
    pub target_size: u64,
    /// The image in slot `a`.
    pub image: String,
    /// Bytes written as zero ranges rather than data.
    pub zero_bytes: u64,
}

fn bad(path: &Path, reason: impl Into<String>) -> NodeError {
    NodeError::BadSource {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn bad_target(path: &Path, reason: impl Into<String>) -> NodeError {
    NodeError::BootDisk {
        detail: format!("cannot install onto {}: {}", path.display(), reason.into()),
    }
}

/// Reads and checks `install.json`; returns it with the path of its disk file.
pub fn read_manifest(path: &Path) -> Result<(InstallManifest, PathBuf)> {
    let meta = fs::metadata(path).ctx("stat", path)?;
    if meta.len() > 1 << 20 {
        return Err(bad(
            path,
            format!("{} bytes: not an installer manifest", meta.len()),
        ));
    }
    let m: InstallManifest = serde_json::from_slice(&fs::read(path).ctx("read", path)?)
        .map_err(|e| bad(path, format!("not an installer manifest: {e}")))?;
    if m.format != INSTALL_FORMAT {
        return Err(bad(
            path,
            format!("format {} (this runtime reads {INSTALL_FORMAT})", m.format),
        ));
    }
    if m.disk.is_empty() || m.disk.contains('/') || m.disk == ".." {
        return Err(bad(
            path,
            format!("disk {:?} is not a file name beside it", m.disk),
        ));
    }
    if m.size < HEAD as u64 || !m.size.is_multiple_of(512) {
        return Err(bad(path, format!("disk size {} is not a disk", m.size)));
    }
    let disk = path.parent().unwrap_or(Path::new(".")).join(&m.disk);
    Ok((m, disk))
}

/// Device numbers of `dev` and its partitions.
fn device_family(dev: u64) -> Vec<(u32, u32)> {
    let own = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let mut out = vec![own];
    let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", own.0, own.1));
    if let Ok(rd) = fs::read_dir(&sys) {
        for e in rd.flatten() {
            let p = e.path();
            if !p.join("partition").exists() {
                continue;
            }
            if let Ok(text) = fs::read_to_string(p.join("dev")) {
                if let Some((a, b)) = text.trim().split_once(':') {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        out.push((a, b));
                    }
                }
            }
        }
    }
    out
}

/// Refuses a block device any of whose partitions (or itself) is mounted.
fn check_unmounted(target: &Path, rdev: u64) -> Result<()> {
    let family = device_family(rdev);
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let mut f = line.split(' ');
        let (Some(_), Some(_), Some(devno), Some(_), Some(point)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some((a, b)) = devno.split_once(':') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            if family.contains(&(a, b)) {
                return Err(bad_target(
                    target,
                    format!("device {a}:{b} on it is mounted at {point}"),
                ));
            }
        }
    }
    Ok(())
}

fn open_target(target: &Path, size: u64) -> Result<(File, u64)> {
    let meta = fs::metadata(target).ctx("stat", target)?;
    let ft = meta.file_type();
    if ft.is_block_device() {
        check_unmounted(target, meta.rdev())?;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlags::EXCL.bits() as i32)
            .open(target)
            .map_err(|e| {
                if e.raw_os_error() == Some(16) {
                    bad_target(target, "it is in use (EBUSY)")
                } else {
                    NodeError::io("open", target, e)
                }
            })?;
        let len = f.seek(SeekFrom::End(0)).ctx("size", target)?;
        Ok((f, len))
    } else if ft.is_file() {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(target)
            .ctx("open", target)?;
        if meta.len() < size {
            f.set_len(size).ctx("resize", target)?;
        }
        Ok((f, meta.len().max(size)))
    } else {
        Err(bad_target(target, "not a block device or a regular file"))
    }
}

/// Zeros `len` bytes at `at`: a zero range where the device can, else written zeros.
fn zero(f: &File, target: &Path, at: u64, len: usize, zeros: &[u8]) -> Result<bool> {
    let flags = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
    if rustix::fs::fallocate(f, flags, at, len as u64).is_ok() {
        return Ok(true);
    }
    f.write_all_at(&zeros[..len], at).ctx("write", target)?;
    Ok(false)
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes the installer's A/B disk (manifest at `manifest`) onto `target`.
pub fn install(manifest: &Path, target: &Path, obs: &mut dyn Observer) -> Result<InstallReport> {
    let (m, disk) = read_manifest(manifest)?;
    let (f, target_size) = open_target(target, m.size)?;
    if target_size < m.size {
        return Err(NodeError::NoSpace {
            path: target.to_path_buf(),
            what: "the A/B disk".into(),
            needed: m.size,
            available: target_size,
        });
    }
    obs.event(
        &Event::new(
            "install",
            "ok",
            format!(
                "writing {} bytes of image {} onto {} ({target_size} bytes)",
                m.size,
                m.image,
                target.display()
            ),
        )
        .with("size", m.size)
        .with("target_size", target_size),
    );
    let zeros = vec![0u8; CHUNK];
    // No table until the end: whatever the disk held, it is not a disk to boot while being written.
    f.write_all_at(&zeros[..HEAD], 0).ctx("write", target)?;
    let src = HashingReader {
        inner: File::open(&disk).ctx("open", &disk)?,
        hash: Sha256::new(),
    };
    let mut dec = zstd::stream::read::Decoder::new(src)
        .map_err(|e| NodeError::io("read", &disk, e))?
        .single_frame();
    let mut head = Vec::with_capacity(HEAD);
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    let mut zero_bytes = 0u64;
    loop {
        let mut n = 0;
        while n < CHUNK {
            match dec.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(bad(
                        &disk,
                        format!("corrupt at byte {}: {e}", at + n as u64),
                    ));
                }
            }
        }
        if n == 0 {
            break;
        }
        if at + n as u64 > m.size {
            return Err(bad(
                &disk,
                format!("longer than the {} bytes its manifest says", m.size),
            ));
        }
        let chunk = &buf[..n];
        if at < HEAD as u64 {
            head.extend_from_slice(chunk);
        } else if chunk.iter().all(|&b| b == 0) {
            if zero(&f, target, at, n, &zeros)? {
                zero_bytes += n as u64;
            }
        } else {
            f.write_all_at(chunk, at).ctx("write", target)?;
        }
        at += n as u64;
    }
    // Whatever follows the frame belongs to the file too.
    let mut rest = dec.finish();
    std::io::copy(&mut rest, &mut std::io::sink()).ctx("read", &disk)?;
    let got = format!("sha256:{}", hex::encode(rest.into_inner().hash.finalize()));
    if at != m.size || got != m.sha256 {
        return Err(bad(
            &disk,
            format!(
                "{at} bytes from a file with {got}; the manifest says {} bytes from {}: the installer medium is corrupt, the disk was left without a partition table",
                m.size, m.sha256
            ),
        ));
    }
    f.sync_all().ctx("sync", target)?;
    let layout = GptLayout::read(&head, target_size).map_err(|e| {
        bad(
            &disk,
            format!("its partition table: {}", chasi_oci::error::chain(&e)),
        )
    })?;
    if target_size != m.size {
        f.write_all_at(&layout.backup_bytes(), layout.backup_offset())
            .ctx("write", target)?;
    }
    let primary = layout.primary_bytes();
    head[..primary.len()].copy_from_slice(&primary);
    f.write_all_at(&head, 0).ctx("write", target)?;
    f.sync_all().ctx("sync", target)?;
    obs.event(
        &Event::new(
            "done",
            "ok",
            format!(
                "{} holds the A/B disk of image {}: boot from it",
                target.display(),
                m.image
            ),
        )
        .with("image", &m.image)
        .with("zero_bytes", zero_bytes),
    );
    Ok(InstallReport {
        target: target.to_path_buf(),
        size: m.size,
        target_size,
        image: m.image,
        zero_bytes,
    })
}

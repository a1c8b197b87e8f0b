//! What makes a bootable disk look like an installed system, to the tools that inspect and
//! convert disks (libguestfs inspection, `virt-v2v`) and to the guest's own tools: an
//! `/etc/fstab` naming the root and the EFI System Partition (mounted at `/boot/efi`, its
//! mount point made), and, for an ext4 root, a `systemd-repart` drop-in that grows the root
//! partition into space added at the end of the disk, while `x-systemd.growfs` on the root's
//! fstab line grows the file system into the partition (both on every boot, a no-op once grown).
//!
//! Why in the exported tree and not in the image: the partition and file-system identifiers are
//! only known to the export (they derive from the image digest, [`crate::ids`]), and an image
//! that runs as a container must not carry a host's mounts. The image's own `/etc/fstab` lines
//! are kept: a mount point it already names is left to it (the note says so), and a path this
//! module would write through that is a symlink or not a plain file or directory is left alone
//! with a note, so nothing is written outside the tree. Every file and directory created or
//! changed is dated at the export's epoch (directories that existed keep their mtime), so the
//! output stays a pure function of the image.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{ExportError, ExportResult, RootFsType};

/// The mount point of the EFI System Partition, where Debian, Fedora and virt-v2v expect it.
pub const ESP_MOUNT: &str = "/boot/efi";

/// The repart.d drop-in that grows the root partition (written for ext4 roots only).
pub const REPART_DROPIN: &str = "etc/repart.d/50-chasi-root.conf";

/// The identifiers of the disk the tree is going to.
#[derive(Debug, Clone)]
pub struct DiskIds {
    /// The root file system's type.
    pub fs: RootFsType,
    /// The ext4 root's file-system UUID (absent for squashfs and erofs, which are named by
    /// PARTUUID).
    pub root_fs_uuid: Option<uuid::Uuid>,
    /// The root partition's GPT unique GUID.
    pub root_partuuid: uuid::Uuid,
    /// The ESP's FAT volume id, as fstab's `UUID=` spells it (`ABCD-1234`).
    pub esp_fs_uuid: String,
    /// The GPT type name of the root partition for `repart.d` (`root-x86-64`).
    pub repart_root_type: &'static str,
}

/// One `/etc/fstab` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// `UUID=…` or `PARTUUID=…`.
    pub spec: String,
    /// The mount point.
    pub mount: String,
    /// The file-system type.
    pub fstype: String,
    /// Mount options.
    pub options: String,
    /// `fsck` pass (0: never).
    pub pass: u8,
}

impl FstabEntry {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} 0 {}",
            self.spec, self.mount, self.fstype, self.options, self.pass
        )
    }
}

/// The fstab entries of a disk: the root (ext4 read-write by file-system UUID, grown to its
/// partition by systemd; squashfs and erofs read-only by PARTUUID) and the ESP (vfat, by its
/// volume id, readable by root only, as Debian's installer mounts it; libguestfs inspection
/// resolves `UUID=` but not `PARTUUID=` for it).
pub fn fstab_entries(ids: &DiskIds) -> Vec<FstabEntry> {
    let root = match (ids.fs, ids.root_fs_uuid) {
        (RootFsType::Ext4, Some(u)) => FstabEntry {
            spec: format!("UUID={u}"),
            mount: "/".into(),
            fstype: "ext4".into(),
            options: "errors=remount-ro,x-systemd.growfs".into(),
            pass: 1,
        },
        (fs, _) => FstabEntry {
            spec: format!("PARTUUID={}", ids.root_partuuid),
            mount: "/".into(),
            fstype: fs.name().into(),
            options: "ro".into(),
            pass: 0,
        },
    };
    let esp = FstabEntry {
        spec: format!("UUID={}", ids.esp_fs_uuid),
        mount: ESP_MOUNT.into(),
        fstype: "vfat".into(),
        options: "umask=0077".into(),
        pass: 1,
    };
    vec![root, esp]
}

/// The result of merging our entries into an image's fstab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabMerge {
    /// The new file's text.
    pub text: String,
    /// Mount points added.
    pub added: Vec<String>,
    /// Mount points the image's fstab already names (its lines kept, ours not added).
    pub kept: Vec<String>,
}

/// Decodes fstab's octal escapes (`\040` for a space) in a field.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points the active lines of `fstab` name (comments and blank lines skipped,
/// trailing slashes ignored).
pub fn mount_points(fstab: &str) -> Vec<String> {
    fstab
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| normalise(&unescape(m)))
        .collect()
}

fn normalise(mount: &str) -> String {
    let t = mount.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.into()
    }
}

/// Appends to `existing` (the image's fstab, if any) those of `ours` whose mount point it does
/// not name yet, under a comment saying where they come from; its own lines stay as they are.
pub fn merge_fstab(existing: Option<&str>, ours: &[FstabEntry], origin: &str) -> FstabMerge {
    let taken = existing.map(mount_points).unwrap_or_default();
    let mut text = existing.unwrap_or_default().to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let (mut added, mut kept) = (Vec::new(), Vec::new());
    let mut lines = String::new();
    for e in ours {
        if taken.contains(&normalise(&e.mount)) {
            kept.push(e.mount.clone());
        } else {
            lines.push_str(&e.line());
            lines.push('\n');
            added.push(e.mount.clone());
        }
    }
    if !lines.is_empty() {
        text.push_str(&format!(
            "# Added by chasi export ({origin}): this disk's partitions.\n"
        ));
        text.push_str(&lines);
    }
    FstabMerge { text, added, kept }
}

/// The systemd-repart drop-in: grow the existing root partition into free space after it.
pub fn repart_dropin(root_type: &str) -> String {
    format!(
        "# Added by chasi export: grow the root partition into space added at the end of the disk\n\
         # (qemu-img resize, a larger volume) on boot; `x-systemd.growfs` in /etc/fstab then grows\n\
         # the file system. systemd-repart never moves, shrinks or deletes a partition.\n\
         [Partition]\nType={root_type}\n"
    )
}

/// What a path inside the tree is, without following a final symlink.
enum Node {
    Absent,
    Dir,
    File,
    Other,
}

fn node(path: &Path) -> ExportResult<Node> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(Node::Dir),
        Ok(m) if m.file_type().is_file() => Ok(Node::File),
        Ok(_) => Ok(Node::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Node::Absent),
        Err(e) => Err(ExportError::io("stat", path)(e)),
    }
}

fn set_times(path: &Path, secs: i64) -> ExportResult<()> {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: secs.max(0),
        tv_nsec: 0,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ExportError::io("set the times of", path)(e.into()))
}

fn mtime(path: &Path) -> ExportResult<i64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::symlink_metadata(path)
        .map_err(ExportError::io("stat", path))?
        .mtime())
}

/// Writes into `tree` under the relative path `rel` (parents made as needed) or explains why
/// not. Directories made are dated `epoch`; those that existed keep their mtime.
struct TreeWriter<'a> {
    tree: &'a Path,
    epoch: i64,
    /// Existing directories whose mtime to restore, with it.
    restore: Vec<(PathBuf, i64)>,
}

impl<'a> TreeWriter<'a> {
    /// Makes the directory `rel` (and its parents); `Ok(false)` when a component is not a plain
    /// directory (a symlink, a file).
    fn dir(&mut self, rel: &str) -> ExportResult<bool> {
        let mut p = self.tree.to_path_buf();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            let parent = p.clone();
            p.push(c);
            match node(&p)? {
                Node::Dir => {}
                Node::Absent => {
                    self.remember(&parent)?;
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&p)
                        .map_err(ExportError::io("create", &p))?;
                    set_times(&p, self.epoch)?;
                }
                Node::File | Node::Other => return Ok(false),
            }
        }
        Ok(true)
    }

    fn remember(&mut self, dir: &Path) -> ExportResult<()> {
        if !self.restore.iter().any(|(d, _)| d == dir) {
            let t = mtime(dir)?;
            self.restore.push((dir.to_path_buf(), t));
        }
        Ok(())
    }

    /// Writes `text` to the file `rel` (a new file is `0644`; an existing one keeps its mode
    /// and owner). `Ok(false)` when `rel` or a parent is not a plain file or directory.
    fn file(&mut self, rel: &str, text: &str) -> ExportResult<bool> {
        let (parent, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        if !self.dir(parent)? {
            return Ok(false);
        }
        let p = self.tree.join(rel);
        let fresh = match node(&p)? {
            Node::File => false,
            Node::Absent => true,
            Node::Dir | Node::Other => return Ok(false),
        };
        self.remember(&self.tree.join(parent))?;
        fs::write(&p, text).map_err(ExportError::io("write", &p))?;
        if fresh {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .map_err(ExportError::io("chmod", &p))?;
        }
        set_times(&p, self.epoch)?;
        Ok(true)
    }

    fn finish(self) -> ExportResult<()> {
        // Innermost first does not matter: restoring a directory's mtime changes no other's.
        for (d, t) in &self.restore {
            set_times(d, *t)?;
        }
        Ok(())
    }
}

/// Reads the image's `/etc/fstab`: `Ok(None)` when absent, `Err(note)` when it cannot be merged
/// (a symlink, not UTF-8, ...).
fn read_fstab(tree: &Path) -> ExportResult<Result<Option<String>, String>> {
    let etc = tree.join("etc");
    match node(&etc)? {
        Node::Dir | Node::Absent => {}
        _ => return Ok(Err("/etc is not a directory".into())),
    }
    let p = etc.join("fstab");
    match node(&p)? {
        Node::Absent => Ok(Ok(None)),
        Node::File => {
            let bytes = fs::read(&p).map_err(ExportError::io("read", &p))?;
            Ok(String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| "/etc/fstab is not UTF-8 text".to_string()))
        }
        _ => Ok(Err("/etc/fstab is a symlink or not a file".into())),
    }
}

/// Whether the image ships systemd-repart (merged /usr or not).
fn has_repart(tree: &Path) -> ExportResult<bool> {
    for rel in ["usr/bin/systemd-repart", "bin/systemd-repart"] {
        // `bin` may be a symlink to `usr/bin`: the first path covers that case, and a
        // symlinked `bin` is never followed here.
        if rel.starts_with("bin/") && !matches!(node(&tree.join("bin"))?, Node::Dir) {
            continue;
        }
        if matches!(node(&tree.join(rel))?, Node::File) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn dir_has_entries(dir: &Path) -> ExportResult<bool> {
    match node(dir)? {
        Node::Dir => Ok(fs::read_dir(dir)
            .map_err(ExportError::io("read", dir))?
            .next()
            .is_some()),
        _ => Ok(false),
    }
}

/// Makes the unpacked `tree` look installed on the disk `ids` describes; returns the notes
/// (what was added, what was left to the image and why).
pub fn install(tree: &Path, ids: &DiskIds, origin: &str, epoch: i64) -> ExportResult<Vec<String>> {
    let mut notes = Vec::new();
    let mut w = TreeWriter {
        tree,
        epoch,
        restore: Vec::new(),
    };
    let mut entries = fstab_entries(ids);
    if !w.dir(&ESP_MOUNT[1..])? {
        notes.push(format!(
            "{ESP_MOUNT} is not a directory in the image: no fstab entry for the ESP"
        ));
        entries.retain(|e| e.mount != ESP_MOUNT);
    }
    match read_fstab(tree)? {
        Err(why) => notes.push(format!("/etc/fstab left as it is: {why}")),
        Ok(existing) => {
            let m = merge_fstab(existing.as_deref(), &entries, origin);
            if !m.kept.is_empty() {
                notes.push(format!(
                    "/etc/fstab already mounts {}: kept the image's lines",
                    m.kept.join(", ")
                ));
            }
            if !m.added.is_empty() {
                if w.file("etc/fstab", &m.text)? {
                    notes.push(format!("/etc/fstab: added {}", m.added.join(", ")));
                } else {
                    notes.push("/etc/fstab left as it is: /etc is not a directory".into());
                }
            }
        }
    }
    if ids.fs == RootFsType::Ext4 {
        if !has_repart(tree)? {
            notes.push(
                "no systemd-repart in the image: the root partition grows only by hand \
                 (growpart from cloud-guest-utils, then resize2fs)"
                    .into(),
            );
        } else if dir_has_entries(&tree.join("etc/repart.d"))? {
            notes.push("/etc/repart.d is the image's own: no drop-in added".into());
        } else if w.file(REPART_DROPIN, &repart_dropin(ids.repart_root_type))? {
            notes.push(format!(
                "/{REPART_DROPIN}: systemd-repart grows the root partition into a larger disk"
            ));
        }
    }
    w.finish()?;
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(fs: RootFsType) -> DiskIds {
        DiskIds {
            fs,
            root_fs_uuid: (fs == RootFsType::Ext4).then(|| uuid::Uuid::from_u128(1)),
            root_partuuid: uuid::Uuid::from_u128(2),
            esp_fs_uuid: "ABCD-0123".into(),
            repart_root_type: "root-x86-64",
        }
    }

    #[test]
    fn entries_fit_the_root_file_system() {
        let e = fstab_entries(&ids(RootFsType::Ext4));
        assert_eq!(
            e[0].line(),
            "UUID=00000000-0000-0000-0000-000000000001 / ext4 errors=remount-ro,x-systemd.growfs 0 1"
        );
        assert_eq!(e[1].line(), "UUID=ABCD-0123 /boot/efi vfat umask=0077 0 1");
        let s = fstab_entries(&ids(RootFsType::Squashfs));
        assert_eq!(
            s[0].line(),
            "PARTUUID=00000000-0000-0000-0000-000000000002 / squashfs ro 0 0"
        );
        assert_eq!(fstab_entries(&ids(RootFsType::Erofs))[0].fstype, "erofs");
    }

    #[test]
    fn merge_keeps_the_images_lines_and_mounts() {
        let ours = fstab_entries(&ids(RootFsType::Ext4));
        let debian = "# UNCONFIGURED FSTAB FOR BASE SYSTEM";
        let m = merge_fstab(Some(debian), &ours, "sha256:x");
        assert!(m.text.starts_with(
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n# Added by chasi export (sha256:x)"
        ));
        assert_eq!(m.added, ["/", "/boot/efi"]);
        assert!(m.kept.is_empty());
        assert_eq!(mount_points(&m.text), ["/", "/boot/efi"]);

        let own = "LABEL=r\t/  ext4 defaults 0 1\n#UUID=x /boot/efi vfat defaults 0 0\ntmpfs /tmp tmpfs defaults 0 0";
        let m = merge_fstab(Some(own), &ours, "sha256:x");
        assert_eq!(m.kept, ["/"]);
        assert_eq!(m.added, ["/boot/efi"]);
        assert!(m.text.starts_with(own));
        assert_eq!(mount_points(&m.text), ["/", "/tmp", "/boot/efi"]);

        let full = "a /boot/efi/ vfat x 0 0\nb / ext4 x 0 0\n";
        let m = merge_fstab(Some(full), &ours, "o");
        assert_eq!(m.text, full);
        assert!(m.added.is_empty());

        let m = merge_fstab(None, &ours, "o");
        assert!(m.text.starts_with("# Added by chasi export (o)"));
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("etc")).expect("etc");
        fs::create_dir_all(t.path().join("usr/bin")).expect("usr/bin");
        fs::write(t.path().join("usr/bin/systemd-repart"), "").expect("repart");
        t
    }

    #[test]
    fn install_writes_fstab_mount_point_and_repart_dated_at_the_epoch() {
        let t = tree();
        set_times(&t.path().join("etc"), 1000).expect("date etc");
        let notes = install(t.path(), &ids(RootFsType::Ext4), "o", 5000).expect("install");
        let fstab = fs::read_to_string(t.path().join("etc/fstab")).expect("fstab");
        assert_eq!(mount_points(&fstab), ["/", "/boot/efi"]);
        assert!(t.path().join("boot/efi").is_dir());
        let dropin = fs::read_to_string(t.path().join(REPART_DROPIN)).expect("dropin");
        assert!(dropin.contains("Type=root-x86-64"));
        assert_eq!(mtime(&t.path().join("etc")).expect("mtime"), 1000);
        for p in [
            "etc/fstab",
            "boot",
            "boot/efi",
            "etc/repart.d",
            REPART_DROPIN,
        ] {
            assert_eq!(mtime(&t.path().join(p)).expect("mtime"), 5000, "{p}");
        }
        assert_eq!(notes.len(), 2, "{notes:?}");
        // Twice: the second run finds its own lines and adds nothing.
        let again = install(t.path(), &ids(RootFsType::Ext4), "o", 5000).expect("again");
        assert_eq!(
            fs::read_to_string(t.path().join("etc/fstab")).expect("fstab"),
            fstab
        );
        assert!(
            again.iter().any(|n| n.contains("kept the image's lines")),
            "{again:?}"
        );
    }

    #[test]
    fn install_never_writes_through_symlinks() {
        let t = tree();
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path().join("fstab"), t.path().join("etc/fstab"))
            .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), t.path().join("boot")).expect("symlink");
        let notes = install(t.path(), &ids(RootFsType::Squashfs), "o", 5).expect("install");
        assert!(fs::read_dir(outside.path()).expect("read").next().is_none());
        assert!(
            notes
                .iter()
                .any(|n| n.contains("no fstab entry for the ESP")),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.contains("symlink")), "{notes:?}");
        // squashfs: no repart drop-in (the root cannot grow).
        assert!(!t.path().join(REPART_DROPIN).exists());
    }

    #[test]
    fn install_without_repart_says_how_to_grow() {
        let t = tempfile::tempdir().expect("tempdir");
        let notes = install(t.path(), &ids(RootFsType::Ext4), "o", 5).expect("install");
        assert!(notes.iter().any(|n| n.contains("growpart")), "{notes:?}");
        assert!(t.path().join("etc/fstab").is_file());
    }
}

//! The boot path of a single-root disk: the script GRUB's loader runs (embedded by
//! `grub-mkimage`) and the boot menu it reads from the ESP, [`MENU_PATH`].
//!
//! Why a menu file on the ESP and not only the embedded script: the tools that convert and
//! service installed systems look for a GRUB 2 configuration there (virt-v2v searches
//! `/boot/efi/EFI` for a `grub.cfg` and rewrites it with the guest's `grub-mkconfig`), and a
//! guest that installs a kernel must reach it without re-exporting. So the boot goes, first
//! success wins:
//! 1. the loader finds the ESP by its marker file and runs [`MENU_PATH`] in normal mode (what
//!    chasi wrote, or what `grub-mkconfig -o` put there later);
//! 2. that menu hands over to the distro's own `/boot/grub/grub.cfg` on an ext4 root when the
//!    guest has one (Debian's `update-grub` writes it, and its kernel hook keeps it current);
//! 3. else its first entry boots `/vmlinuz` (and `/initrd.img`) from the ext4 root, the symlinks
//!    Debian's kernel packages keep pointing at the newest kernel (the image's kernel path
//!    when it has no such symlink);
//! 4. its fallback entry, and the loader itself when the menu cannot be read, boot the copy of
//!    the image's kernel on the ESP, as before (squashfs and erofs roots boot only that way).

use std::path::Path;

/// Where the boot menu lives on the ESP (`/boot/efi/EFI/BOOT/grub.cfg` in the guest).
pub const MENU_PATH: &str = "EFI/BOOT/grub.cfg";

/// A kernel on the ext4 root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootKernel {
    /// The root file system's UUID.
    pub fs_uuid: String,
    /// Absolute path of the kernel inside the root.
    pub kernel: String,
    /// Absolute path of the initrd inside the root, if any.
    pub initrd: Option<String>,
}

/// What the menu boots.
#[derive(Debug, Clone)]
pub struct Menu<'a> {
    /// The image the disk was exported from (for the comments and titles).
    pub origin: &'a str,
    /// The ESP's marker file (absolute path on the ESP).
    pub marker: &'a str,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Whether the ESP holds `/initrd.img` next to `/vmlinuz`.
    pub esp_initrd: bool,
    /// The kernel on the root file system (ext4 roots only).
    pub root: Option<RootKernel>,
}

/// The menu's text (GRUB normal-mode script).
pub fn menu(m: &Menu<'_>) -> String {
    let mut s = format!(
        "# Boot menu of a disk exported by chasi from {origin}.\n\
         # GRUB's loader (EFI/BOOT/BOOTX64.EFI, or the BIOS boot partition) reads this file;\n\
         # grub-mkconfig -o may replace it. The distro's /boot/grub/grub.cfg on the root file\n\
         # system, when there is one (update-grub), is used first.\n\
         set timeout=0\nset default=0\nset fallback=1\n",
        origin = m.origin
    );
    if let Some(r) = &m.root {
        s.push_str(&format!(
            "search --no-floppy --fs-uuid --set=chasi_root {uuid}\n\
             if [ -n \"$chasi_root\" -a -f ($chasi_root)/boot/grub/grub.cfg ]; then\n\
             \x20 set root=$chasi_root\n\
             \x20 set prefix=($chasi_root)/boot/grub\n\
             \x20 configfile ($chasi_root)/boot/grub/grub.cfg\n\
             fi\n\
             menuentry 'chasi: {kernel} on the root file system' {{\n\
             \x20 search --no-floppy --fs-uuid --set=root {uuid}\n\
             \x20 echo 'chasi: booting {kernel}'\n\
             \x20 linux {kernel} {cmdline}\n",
            uuid = r.fs_uuid,
            kernel = r.kernel,
            cmdline = m.cmdline,
        ));
        if let Some(i) = &r.initrd {
            s.push_str(&format!("  initrd {i}\n"));
        }
        s.push_str("}\n");
    }
    s.push_str(&format!(
        "menuentry 'chasi: the kernel on the ESP' {{\n\
         \x20 search --no-floppy --set=root --file {marker}\n\
         \x20 echo 'chasi: booting /vmlinuz'\n\
         \x20 linux /vmlinuz {cmdline}\n",
        marker = m.marker,
        cmdline = m.cmdline,
    ));
    if m.esp_initrd {
        s.push_str("  initrd /initrd.img\n");
    }
    s.push_str("}\n");
    s
}

/// The loader's embedded script: find the ESP by `marker`, run the menu, and when that returns
/// (no menu, no entry booted) run `fallback` (the built-in entry, rescue-parser syntax).
pub fn loader_script(marker: &str, fallback: &str) -> String {
    format!(
        "search --no-floppy --set=root --file {marker}\n\
         set prefix=($root)/EFI/BOOT\n\
         configfile ($root)/{MENU_PATH}\n\
         {fallback}"
    )
}

/// Resolves `rel` (relative to the tree root) through symlinks inside `tree` to a regular
/// file; false when it leads nowhere (dangling, a loop, out of the tree).
fn resolves_to_file(tree: &Path, rel: &str) -> bool {
    let mut p = rel.trim_start_matches('/').to_string();
    for _ in 0..8 {
        let full = tree.join(&p);
        let Ok(m) = std::fs::symlink_metadata(&full) else {
            return false;
        };
        if m.file_type().is_file() {
            return true;
        }
        if !m.file_type().is_symlink() {
            return false;
        }
        let Ok(t) = std::fs::read_link(&full) else {
            return false;
        };
        let t = t.to_string_lossy().into_owned();
        let joined = match (t.strip_prefix('/'), p.rsplit_once('/')) {
            (Some(abs), _) => abs.to_string(),
            (None, Some((dir, _))) => format!("{dir}/{t}"),
            (None, None) => t,
        };
        let mut parts: Vec<&str> = Vec::new();
        for c in joined.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return false;
                    }
                }
                c => parts.push(c),
            }
        }
        p = parts.join("/");
    }
    false
}

/// The kernel and initrd the root entry boots: `/vmlinuz` and `/initrd.img` (else
/// `/boot/vmlinuz` and `/boot/initrd.img`) when they resolve inside `tree`, which distro kernel
/// packages keep current, else the image's own `kernel` and `initrd` (relative paths).
pub fn root_kernel(tree: &Path, fs_uuid: &str, kernel: &str, initrd: Option<&str>) -> RootKernel {
    for (k, i) in [
        ("vmlinuz", "initrd.img"),
        ("boot/vmlinuz", "boot/initrd.img"),
    ] {
        if resolves_to_file(tree, k) {
            return RootKernel {
                fs_uuid: fs_uuid.into(),
                kernel: format!("/{k}"),
                initrd: resolves_to_file(tree, i).then(|| format!("/{i}")),
            };
        }
    }
    RootKernel {
        fs_uuid: fs_uuid.into(),
        kernel: format!("/{kernel}"),
        initrd: initrd.map(|i| format!("/{i}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(root: Option<RootKernel>) -> String {
        menu(&Menu {
            origin: "sha256:ab",
            marker: "/chasi-ab.id",
            cmdline: "root=PARTUUID=p rw",
            esp_initrd: true,
            root,
        })
    }

    #[test]
    fn ext4_menu_prefers_the_distro_then_the_root_kernel_then_the_esp() {
        let s = m(Some(RootKernel {
            fs_uuid: "u-1".into(),
            kernel: "/vmlinuz".into(),
            initrd: Some("/initrd.img".into()),
        }));
        let distro = s
            .find("configfile ($chasi_root)/boot/grub/grub.cfg")
            .expect("distro");
        let root = s
            .find("linux /vmlinuz root=PARTUUID=p rw\n  initrd /initrd.img")
            .expect("root");
        let esp = s.find("--file /chasi-ab.id").expect("esp");
        assert!(distro < root && root < esp, "{s}");
        assert!(s.contains("search --no-floppy --fs-uuid --set=chasi_root u-1\n"));
        assert!(s.contains("set fallback=1\n"));
        assert_eq!(s.matches("menuentry").count(), 2);
        assert_eq!(s.matches('{').count(), s.matches('}').count());
    }

    #[test]
    fn read_only_roots_boot_the_esp_kernel_only() {
        let s = m(None);
        assert!(!s.contains("chasi_root"));
        assert_eq!(s.matches("menuentry").count(), 1);
        let l = loader_script("/chasi-ab.id", "linux /vmlinuz x\nboot\n");
        assert_eq!(
            l,
            "search --no-floppy --set=root --file /chasi-ab.id\nset prefix=($root)/EFI/BOOT\n\
             configfile ($root)/EFI/BOOT/grub.cfg\nlinux /vmlinuz x\nboot\n"
        );
    }

    #[test]
    fn root_kernel_follows_the_distro_symlinks_inside_the_tree() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path();
        std::fs::create_dir_all(p.join("boot")).expect("boot");
        std::fs::write(p.join("boot/vmlinuz-6.1.0-28-amd64"), "k").expect("k");
        let k = root_kernel(p, "u", "boot/vmlinuz-6.1.0-28-amd64", None);
        assert_eq!(k.kernel, "/boot/vmlinuz-6.1.0-28-amd64");
        std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-28-amd64", p.join("vmlinuz")).expect("ln");
        std::os::unix::fs::symlink("/boot/missing", p.join("initrd.img")).expect("ln");
        let k = root_kernel(p, "u", "boot/vmlinuz-6.1.0-28-amd64", None);
        assert_eq!((k.kernel.as_str(), k.initrd), ("/vmlinuz", None));
        // A symlink that leaves the tree is not followed.
        std::fs::remove_file(p.join("vmlinuz")).expect("rm");
        std::os::unix::fs::symlink("../../../etc/passwd", p.join("vmlinuz")).expect("ln");
        assert!(!resolves_to_file(p, "vmlinuz"));
    }
}

//! External programs the exporters call, each with the Debian package that ships it.
//!
//! Why it exists: the architecture allows external tools only where a well-kept tool does a
//! hard job well (mke2fs, mksquashfs, mtools, GRUB, xorriso), and requires that their
//! absence is reported *before* any work with the package to install. Every call goes
//! through [`run`], which captures stderr for the error message and sets a fixed locale.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ExportResult;
use crate::error::FormatError;

/// An external program and its Debian package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// Program name looked up in `PATH` (or an absolute path of a data file).
    pub name: &'static str,
    /// Debian package.
    pub package: &'static str,
}

/// `mke2fs` (ext4 root file systems).
pub const MKE2FS: Tool = Tool {
    name: "mke2fs",
    package: "e2fsprogs",
};
/// `mksquashfs`.
pub const MKSQUASHFS: Tool = Tool {
    name: "mksquashfs",
    package: "squashfs-tools",
};
/// `mkfs.erofs`.
pub const MKFS_EROFS: Tool = Tool {
    name: "mkfs.erofs",
    package: "erofs-utils",
};
/// `mkfs.vfat` (ESP and the ISO's EFI image).
pub const MKFS_VFAT: Tool = Tool {
    name: "mkfs.vfat",
    package: "dosfstools",
};
/// `mcopy` / `mmd` (files into FAT images without mounting).
pub const MCOPY: Tool = Tool {
    name: "mcopy",
    package: "mtools",
};
/// `mmd`.
pub const MMD: Tool = Tool {
    name: "mmd",
    package: "mtools",
};
/// `grub-mkimage`.
pub const GRUB_MKIMAGE: Tool = Tool {
    name: "grub-mkimage",
    package: "grub-common",
};
/// GRUB's x86_64-efi modules.
pub const GRUB_EFI: Tool = Tool {
    name: "/usr/lib/grub/x86_64-efi/linux.mod",
    package: "grub-efi-amd64-bin",
};
/// GRUB's i386-pc modules and El Torito image.
pub const GRUB_PC: Tool = Tool {
    name: "/usr/lib/grub/i386-pc/cdboot.img",
    package: "grub-pc-bin",
};
/// `xorriso`.
pub const XORRISO: Tool = Tool {
    name: "xorriso",
    package: "xorriso",
};

/// Where `tool` is, if installed.
pub fn find(tool: Tool) -> Option<PathBuf> {
    let p = Path::new(tool.name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // mke2fs and mkfs.* live in /usr/sbin, which a non-root PATH may lack.
    for extra in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(PathBuf::from(extra));
        }
    }
    dirs.into_iter()
        .map(|d| d.join(tool.name))
        .find(|c| c.is_file())
}

/// Fails with [`FormatError::ToolMissing`] for the first missing tool.
pub fn require(tools: &[Tool]) -> ExportResult<()> {
    for t in tools {
        if find(*t).is_none() {
            return Err(FormatError::ToolMissing {
                tool: t.name,
                package: t.package,
            }
            .into());
        }
    }
    Ok(())
}

/// A command for `tool` (resolved path), with `LC_ALL=C`, `TZ=UTC` and
/// `SOURCE_DATE_EPOCH` set to `epoch`.
pub fn command(tool: Tool, epoch: i64) -> ExportResult<Command> {
    let path = find(tool).ok_or(FormatError::ToolMissing {
        tool: tool.name,
        package: tool.package,
    })?;
    let mut c = Command::new(path);
    c.env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
    Ok(c)
}

/// Runs `cmd`, failing with its stderr when it exits non-zero; returns stdout.
pub fn run(cmd: &mut Command) -> ExportResult<String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().map_err(|e| FormatError::ToolFailed {
        command: shown.clone(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(FormatError::ToolFailed {
            command: shown,
            status: out.status.to_string(),
            stderr: tail,
        }
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

//! Helpers shared by the integration tests: external tools (checked, never skipped) and
//! deterministic test disks.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use chasi_formats::disk::ExtentDisk;

/// Fails the test with the Debian package to install when `tool` is missing.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(tool).is_file()
        || Path::new("/sbin").join(tool).is_file();
    assert!(
        found,
        "`{tool}` is required by this test: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

fn resolve(tool: &str) -> String {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join(tool);
        if p.is_file() {
            return p.display().to_string();
        }
    }
    tool.to_string()
}

/// Runs a command and returns its output (does not check the status).
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(resolve(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

/// Runs a command and asserts exit 0, returning stdout.
pub fn run_ok(tool: &str, args: &[&str]) -> String {
    let o = run(tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?} failed with {}:\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Compressible, text-like bytes.
pub fn text(len: usize) -> Vec<u8> {
    let words = [
        "kube", "sealer", "chasi ", "layer\n", "disk ", "qcow2 ", "0123 ",
    ];
    let mut out = Vec::with_capacity(len);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A mixed disk of `size` bytes: text at the start, noise in the middle, a half-zero
/// cluster, scattered small writes and data in the very last bytes.
pub fn mixed_disk(size: u64) -> ExtentDisk {
    let mut d = ExtentDisk::new(size);
    d.add_bytes(0, text(1 << 20)).unwrap();
    d.add_bytes(2 << 20, noise(512 << 10, 7)).unwrap();
    // Half a cluster of data, the other half zero.
    d.add_bytes((3 << 20) + 32768, text(32768)).unwrap();
    // Small writes not aligned to anything.
    d.add_bytes((4 << 20) + 4097, vec![0xAB; 3]).unwrap();
    d.add_bytes(size - 1000, noise(1000, 3)).unwrap();
    d
}

/// Ensures qemu-img says the two images have identical content.
pub fn assert_same(fmt_a: &str, a: &Path, fmt_b: &str, b: &Path) {
    require("qemu-img", "qemu-utils");
    let out = run_ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            fmt_a,
            "-F",
            fmt_b,
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

/// One member of a ustar archive (an OVA), read back by hand.
pub struct Member {
    pub name: String,
    pub header: Vec<u8>,
    pub data_at: usize,
    pub size: usize,
}

/// The members of a ustar archive; asserts the end-of-archive blocks and record padding.
pub fn members(tar: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            // Two zero blocks, then only zero padding to a 10240-byte record.
            assert!(tar[pos..].iter().all(|&b| b == 0));
            assert!(tar.len() - pos >= 1024);
            assert_eq!(tar.len() % 10240, 0);
            break;
        }
        let name = String::from_utf8(h[..100].split(|&b| b == 0).next().unwrap().to_vec()).unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
        out.push(Member {
            name,
            header: h.to_vec(),
            data_at: pos + 512,
            size,
        });
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

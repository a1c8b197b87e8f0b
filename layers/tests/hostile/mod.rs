//! Hostile layer tars from a byte script, shared by the default-suite loop in `apply_safety.rs`
//! and the cargo-fuzz targets (which include this file by path): every entry kind, names and
//! link targets drawn from a vocabulary of escape tricks (`..`, `/`, parents replaced by
//! symlinks, the absolute path of a canary directory beside the target root).

#![allow(dead_code)]

/// Names an entry may have (joined by `/`); `{canary}` is the canary's absolute path without
/// its leading `/`.
const NAMES: &[&str] = &[
    "x",
    "y",
    "x/y",
    "x/victim",
    "x/etc",
    "d",
    "d/e",
    "d/e/f",
    "l",
    "l/f",
    "x/{canary}",
    "l/{canary}",
    "{canary}",
    "x/y/z",
    ".",
    "./x",
    "x//y",
    "lib",
    "lib/a",
    "h",
    "x/h",
];

/// Link targets (symlinks and hard links).
const TARGETS: &[&str] = &[
    "..",
    "../..",
    "/",
    "/..",
    ".",
    "x",
    "x/y",
    "../victim",
    "/etc",
    "../../../..",
    "d/e",
    "/{canary}",
    "l",
    "y",
    "x/../..",
    "/x",
    "h",
    "lib/a",
    "missing",
    "../canary",
];

/// A ustar header (any name up to 100 bytes and link up to 100 bytes) and its padded data.
pub fn raw_entry(
    out: &mut Vec<u8>,
    name: &[u8],
    flag: u8,
    link: &[u8],
    mode: u32,
    mtime: u64,
    data: &[u8],
) {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(format!("{mtime:011o}\0").as_bytes());
    h[156] = flag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A PAX header giving the next entry a long `path` (the canary's absolute path can exceed 100 bytes).
fn pax_path(out: &mut Vec<u8>, path: &[u8]) {
    let mut rec = b"path=".to_vec();
    rec.extend_from_slice(path);
    rec.push(b'\n');
    let mut len = rec.len() + 2;
    while format!("{len} ").len() + rec.len() != len {
        len += 1;
    }
    let mut data = format!("{len} ").into_bytes();
    data.extend_from_slice(&rec);
    raw_entry(out, b"PaxHeaders/x", b'x', b"", 0o644, 0, &data);
}

fn pick(table: &[&str], b: u8, canary: &str) -> String {
    table[b as usize % table.len()].replace("{canary}", canary)
}

/// Builds a tar from a script: each entry takes 4 bytes (kind, name, target, mtime/mode).
pub fn tar_from_script(script: &[u8], canary: &str) -> Vec<u8> {
    let canary = canary.trim_start_matches('/');
    let mut out = Vec::new();
    for op in script.chunks_exact(4) {
        let mut name = pick(NAMES, op[1], canary);
        let target = pick(TARGETS, op[2], canary);
        let mtime = u64::from(op[3]) * 1000;
        let mode = if op[3] & 1 == 1 { 0o755 } else { 0o700 };
        let (flag, link, data): (u8, &str, &[u8]) = match op[0] % 9 {
            0 => (b'5', "", b""),
            1 => (b'0', "", b"payload"),
            2 | 3 => (b'2', &target, b""),
            4 => (b'1', &target, b""),
            5 => {
                name = match name.rsplit_once('/') {
                    Some((dir, base)) => format!("{dir}/.wh.{base}"),
                    None => format!(".wh.{name}"),
                };
                (b'0', "", b"")
            }
            6 => {
                name = format!("{name}/.wh..wh..opq");
                (b'0', "", b"")
            }
            7 => (b'6', "", b""),
            _ => (b'5', "", b""),
        };
        if op[0] % 9 == 8 {
            name.push('/');
        }
        if name.len() > 100 {
            pax_path(&mut out, name.as_bytes());
        }
        raw_entry(
            &mut out,
            name.as_bytes(),
            flag,
            link.as_bytes(),
            mode,
            mtime,
            data,
        );
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

//! The bytes before an entry's data: an optional PAX extended header and its records, then
//! the 512-byte ustar header, encoded by the rules of a [`Format`].

use crate::entry::{join, EntryKind, TarEntry};
use crate::error::TarError;
use crate::format::{Checksum, DeviceFields, Format, Overflow};

/// Largest value of a 7-digit octal field (mode, uid, gid, device numbers).
const MAX7: u64 = 0o7777777;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX11: u64 = 0o77777777777;

/// The fields of one ustar header.
struct Fields<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    link: &'a [u8],
    flag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    dev: Option<(u32, u32)>,
}

/// The header blocks of `entry` (a PAX header and its padded records when needed, then the
/// ustar header): everything written before its data.
pub fn encode_headers(entry: &TarEntry, format: &Format) -> Result<Vec<u8>, TarError> {
    let mut name = entry.path.clone();
    if entry.kind == EntryKind::Dir {
        name.push(b'/');
    }
    let (flag, link, dev) = kind_fields(&entry.kind);
    let size = if entry.kind == EntryKind::File {
        entry.size
    } else {
        0
    };
    let split = split_name(&name);
    let records = overflowing(entry, &name, split.is_none(), link, size, format);
    if let Some((major, minor)) = dev {
        if u64::from(major) > MAX7 || u64::from(minor) > MAX7 {
            return Err(TarError::DeviceNumbers {
                path: lossy(&entry.path),
                major,
                minor,
            });
        }
    }
    let mut out = Vec::new();
    if !records.is_empty() {
        if format.overflow != Overflow::Pax {
            return Err(does_not_fit(entry, &records[0]));
        }
        out.extend_from_slice(&pax_header(&entry.path, records, format));
    }
    let (prefix, short) = split.unwrap_or((&[], &name[..name.len().min(100)]));
    out.extend_from_slice(&header(
        &Fields {
            name: short,
            prefix,
            link: &link[..link.len().min(100)],
            flag,
            mode: entry.mode & 0o7777,
            uid: entry.uid.min(MAX7),
            gid: entry.gid.min(MAX7),
            size: match format.overflow {
                Overflow::Pax => size.min(MAX11),
                Overflow::Base256Size => size,
            },
            mtime: entry.mtime.clamp(0, MAX11 as i64) as u64,
            dev,
        },
        format,
    ));
    Ok(out)
}

/// Type flag, link target and device numbers of a kind of entry.
fn kind_fields(kind: &EntryKind) -> (u8, &[u8], Option<(u32, u32)>) {
    match kind {
        EntryKind::File => (b'0', &[], None),
        EntryKind::Hardlink(t) => (b'1', t, None),
        EntryKind::Symlink(t) => (b'2', t, None),
        EntryKind::Char(a, b) => (b'3', &[], Some((*a, *b))),
        EntryKind::Block(a, b) => (b'4', &[], Some((*a, *b))),
        EntryKind::Dir => (b'5', &[], None),
        EntryKind::Fifo => (b'6', &[], None),
    }
}

/// The PAX records of the values that do not fit their ustar fields (a size only when the
/// format has no base-256 sizes), unsorted.
fn overflowing(
    entry: &TarEntry,
    name: &[u8],
    unsplittable: bool,
    link: &[u8],
    size: u64,
    format: &Format,
) -> Vec<(String, Vec<u8>)> {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    if unsplittable {
        pax.push(("path".into(), name.to_vec()));
    }
    if link.len() > 100 {
        pax.push(("linkpath".into(), link.to_vec()));
    }
    if size > MAX11 && format.overflow == Overflow::Pax {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    if entry.uid > MAX7 {
        pax.push(("uid".into(), entry.uid.to_string().into_bytes()));
    }
    if entry.gid > MAX7 {
        pax.push(("gid".into(), entry.gid.to_string().into_bytes()));
    }
    if entry.mtime < 0 || entry.mtime as u64 > MAX11 {
        pax.push(("mtime".into(), entry.mtime.to_string().into_bytes()));
    }
    for (k, v) in &entry.xattrs {
        pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
    }
    pax
}

/// The refusal of a record in a format without extended headers.
fn does_not_fit(entry: &TarEntry, (key, value): &(String, Vec<u8>)) -> TarError {
    let (field, value) = match key.as_str() {
        "path" => ("name", format!("{} bytes", value.len())),
        "linkpath" => ("link target", format!("{} bytes", value.len())),
        "uid" => ("uid", lossy(value)),
        "gid" => ("gid", lossy(value)),
        "mtime" => ("mtime", lossy(value)),
        _ => ("xattr", key.trim_start_matches("SCHILY.xattr.").to_string()),
    };
    TarError::DoesNotFit {
        path: lossy(&entry.path),
        field,
        value,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A PAX extended header for `path` holding `records` (sorted here), padded to 512 bytes.
fn pax_header(path: &[u8], mut records: Vec<(String, Vec<u8>)>, format: &Format) -> Vec<u8> {
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut body = Vec::new();
    for (k, v) in &records {
        body.extend_from_slice(&pax_record(k, v));
    }
    // Fixed header name, like GNU tar's `%d/PaxHeaders/%f` without any PID.
    let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let mut name = join(dir, &[b"PaxHeaders/", base].concat());
    name.truncate(100);
    let mut out = header(
        &Fields {
            name: &name,
            prefix: &[],
            link: &[],
            flag: b'x',
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: body.len() as u64,
            mtime: 0,
            dev: None,
        },
        format,
    )
    .to_vec();
    out.extend_from_slice(&body);
    out.resize(out.len() + padding(body.len() as u64), 0);
    out
}

/// Zero bytes that pad `len` bytes of data to a whole block.
pub(crate) fn padding(len: u64) -> usize {
    (512 - (len % 512) as usize) % 512
}

/// Splits a name into ustar (prefix ≤ 155, name ≤ 100) at the leftmost `/` that fits, or
/// `None` when it needs PAX.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    if name.len() > 256 {
        return None;
    }
    name.iter().enumerate().find_map(|(i, &b)| {
        (b == b'/' && i > 0 && i <= 155 && name.len() - i - 1 <= 100 && i + 1 < name.len())
            .then_some((&name[..i], &name[i + 1..]))
    })
}

/// One PAX record, `"<len> <key>=<value>\n"`, whose length counts its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
    let mut total = body_len + 1;
    loop {
        let t = body_len + total.to_string().len();
        if t == total {
            break;
        }
        total = t;
    }
    let mut r = format!("{total} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Zero-padded octal filling all but the last byte of `field`, which is NUL.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// The size field: octal, or GNU base-256 when it does not fit (only reachable without PAX).
fn size_field(field: &mut [u8], v: u64) {
    if v <= MAX11 {
        octal(field, v);
    } else {
        field.fill(0);
        let start = field.len() - 8;
        field[start..].copy_from_slice(&v.to_be_bytes());
        field[0] |= 0x80;
    }
}

fn header(f: &Fields<'_>, format: &Format) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..f.name.len()].copy_from_slice(f.name);
    octal(&mut h[100..108], u64::from(f.mode));
    octal(&mut h[108..116], f.uid);
    octal(&mut h[116..124], f.gid);
    size_field(&mut h[124..136], f.size);
    octal(&mut h[136..148], f.mtime);
    h[156] = f.flag;
    h[157..157 + f.link.len()].copy_from_slice(f.link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    match (f.dev, format.device_fields) {
        (Some((major, minor)), _) => {
            octal(&mut h[329..337], u64::from(major));
            octal(&mut h[337..345], u64::from(minor));
        }
        (None, DeviceFields::Always) => {
            octal(&mut h[329..337], 0);
            octal(&mut h[337..345], 0);
        }
        (None, DeviceFields::DevicesOnly) => {}
    }
    h[345..345 + f.prefix.len()].copy_from_slice(f.prefix);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let field = match format.checksum {
        Checksum::SixDigitsNulSpace => format!("{sum:06o}\0 "),
        Checksum::SevenDigitsNul => format!("{sum:07o}\0"),
    };
    h[148..156].copy_from_slice(field.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_is_self_consistent() {
        for n in [0, 1, 5, 90, 95, 96, 97, 98, 990, 995, 1000] {
            let r = pax_record("path", &vec![b'x'; n]);
            let sp = r.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&r[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "value len {n}");
        }
    }

    #[test]
    fn names_split_at_the_leftmost_slash_that_fits() {
        // Both slashes would do: the shortest prefix is taken.
        let name = [&[b'a'; 10][..], b"/", &[b'b'; 40], b"/", &[b'c'; 50]].concat();
        assert_eq!(split_name(&name), Some((&name[..10], &name[11..])));
        let name = [&[b'b'; 60][..], b"/", &[b'c'; 60]].concat();
        assert_eq!(split_name(&name), Some((&name[..60], &name[61..])));
        assert_eq!(split_name(&[b'x'; 101]), None);
        let dir = [&[b'b'; 120][..], b"/"].concat();
        assert_eq!(split_name(&dir), None, "an empty name field is never used");
    }
}

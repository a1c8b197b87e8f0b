//! Where each entry of a layer tar lies in the byte stream: its header blocks (with any PAX or GNU
//! long-name records before them), its content and its padding, with BLAKE3 hashes of each.
//!
//! A delta rebuilds a target layer's tar *bit for bit* (its DiffID must match), so it works on byte ranges of
//! the tar as stored, not on the files a tar reader would extract; this scanner only tells where the ranges
//! are and what they hold, to match target entries with base entries. It is written here rather than with
//! the `tar` crate because that crate hides the raw bytes and positions of PAX and GNU records, which are
//! exactly what must be reproduced. Nothing depends on the scan being right: a stream it cannot parse
//! (a bad checksum, a size it cannot read) simply ends the entry list there, and the rest of the stream is
//! carried as data like any other bytes, verified by the layer's DiffID as a whole.

use std::io::{self, Read};

const BLOCK: u64 = 512;
/// Longest PAX or GNU long-name record kept to learn an entry's name and size (longer ones are still
/// carried as bytes, just not parsed).
const MAX_META: u64 = 1 << 20;

/// One entry of a tar stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The path, without a leading `./` or `/`.
    pub path: String,
    /// Offset of its first header block (a PAX or GNU record before the header belongs to the entry).
    pub start: u64,
    /// Offset of its content.
    pub data: u64,
    /// Length of its content.
    pub size: u64,
    /// Offset just past its padding: the next entry's start.
    pub end: u64,
    /// A regular file (type `0`, NUL or `7`), whose content is worth matching.
    pub regular: bool,
    /// BLAKE3 of the header blocks and the padding, `[start, data)` and `[data + size, end)`.
    pub meta_hash: [u8; 32],
    /// BLAKE3 of the content.
    pub content_hash: [u8; 32],
    /// The first bytes of the content (zero-filled when shorter): tells executables apart.
    pub magic: [u8; 4],
}

/// The entries of a tar stream and its length; bytes after the last entry's `end` (the end-of-archive
/// blocks, or whatever could not be parsed) are the tail.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// The entries in stream order.
    pub entries: Vec<Entry>,
    /// Length of the whole stream.
    pub len: u64,
}

impl Scan {
    /// Where the tail starts.
    pub fn tail_start(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.end)
    }
}

/// Scans a tar stream to its end.
pub(crate) fn scan(r: impl Read) -> io::Result<Scan> {
    let mut s = Scanner {
        r: io::BufReader::with_capacity(1 << 20, r),
        pos: 0,
    };
    let mut entries = Vec::new();
    let mut pending: Option<Pending> = None;
    loop {
        let start = s.pos;
        let mut block = [0u8; BLOCK as usize];
        if !s.read_block(&mut block)? {
            break;
        }
        let Some(h) = Header::parse(&block) else {
            break;
        };
        let padded = h.size.div_ceil(BLOCK) * BLOCK;
        let p = pending.get_or_insert_with(|| Pending::new(start));
        p.meta.update(&block);
        match h.kind {
            b'x' | b'L' | b'K' => {
                let data = s.read_meta(h.size, padded, &mut p.meta)?;
                if h.kind == b'x' {
                    p.pax(&data);
                } else if h.kind == b'L' {
                    p.long_name = Some(c_string(&data));
                }
                continue;
            }
            _ => {}
        }
        let p = pending.take().unwrap_or_else(|| Pending::new(start));
        let size = p.pax_size.unwrap_or(h.size);
        let padded = size.div_ceil(BLOCK) * BLOCK;
        let data = s.pos;
        let mut meta = p.meta;
        let mut content = blake3::Hasher::new();
        let mut magic = Magic::default();
        let ok = s.hash(size, &mut content, Some(&mut magic))?;
        if !ok || !s.hash(padded - size, &mut meta, None)? {
            // Truncated content: the stream ends inside this entry, which stays tail.
            break;
        }
        let path = p.pax_path.or(p.long_name).unwrap_or(h.name);
        entries.push(Entry {
            path: clean(&path),
            start: p.start,
            data,
            size,
            end: s.pos,
            regular: matches!(h.kind, b'0' | 0 | b'7'),
            meta_hash: *meta.finalize().as_bytes(),
            content_hash: *content.finalize().as_bytes(),
            magic: magic.bytes,
        });
    }
    // The tail: count it to the end.
    let mut sink = [0u8; 64 * 1024];
    loop {
        let n = s.r.read(&mut sink)?;
        if n == 0 {
            break;
        }
        s.pos += n as u64;
    }
    Ok(Scan {
        entries,
        len: s.pos,
    })
}

struct Scanner<R> {
    r: io::BufReader<R>,
    pos: u64,
}

/// The first bytes of an entry's content, collected as it is hashed.
#[derive(Default)]
struct Magic {
    bytes: [u8; 4],
    len: usize,
}

impl<R: Read> Scanner<R> {
    /// Reads one block; `false` at the end of the stream or a short block (which stays tail: the bytes are
    /// counted but the block is not an entry).
    fn read_block(&mut self, block: &mut [u8; BLOCK as usize]) -> io::Result<bool> {
        let mut got = 0;
        while got < block.len() {
            let n = self.r.read(&mut block[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.pos += got as u64;
        Ok(got == block.len() && block.iter().any(|&b| b != 0))
    }

    /// Feeds `n` bytes to `h` (and their first bytes to `magic`); `false` if the stream ended first.
    fn hash(
        &mut self,
        mut n: u64,
        h: &mut blake3::Hasher,
        mut magic: Option<&mut Magic>,
    ) -> io::Result<bool> {
        let mut buf = [0u8; 64 * 1024];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.r.read(&mut buf[..want])?;
            if got == 0 {
                return Ok(false);
            }
            h.update(&buf[..got]);
            if let Some(m) = magic.as_deref_mut() {
                let keep = (m.bytes.len() - m.len).min(got);
                m.bytes[m.len..m.len + keep].copy_from_slice(&buf[..keep]);
                m.len += keep;
            }
            self.pos += got as u64;
            n -= got as u64;
        }
        Ok(true)
    }

    /// Reads a metadata record (PAX, GNU long name) and its padding into `h`; returns its bytes when it is
    /// small enough to parse.
    fn read_meta(&mut self, size: u64, padded: u64, h: &mut blake3::Hasher) -> io::Result<Vec<u8>> {
        if size > MAX_META {
            self.hash(padded, h, None)?;
            return Ok(Vec::new());
        }
        let mut data = vec![0u8; padded as usize];
        let mut got = 0;
        while got < data.len() {
            let n = self.r.read(&mut data[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        self.pos += got as u64;
        h.update(&data[..got]);
        data.truncate((size as usize).min(got));
        Ok(data)
    }
}

/// What PAX and GNU records said about the entry that follows them.
struct Pending {
    start: u64,
    meta: blake3::Hasher,
    pax_path: Option<String>,
    pax_size: Option<u64>,
    long_name: Option<String>,
}

impl Pending {
    fn new(start: u64) -> Self {
        Pending {
            start,
            meta: blake3::Hasher::new(),
            pax_path: None,
            pax_size: None,
            long_name: None,
        }
    }

    /// PAX records are `LEN key=value\n`, LEN counting the whole record (POSIX pax format), so a value may
    /// hold newlines.
    fn pax(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(sp) = data.iter().position(|&b| b == b' ') else {
                return;
            };
            let Some(len) = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return;
            };
            if len <= sp + 1 || len > data.len() {
                return;
            }
            let record = &data[sp + 1..len];
            let record = record.strip_suffix(b"\n").unwrap_or(record);
            if let Some(eq) = record.iter().position(|&b| b == b'=') {
                let (k, v) = (&record[..eq], &record[eq + 1..]);
                match k {
                    b"path" => self.pax_path = Some(String::from_utf8_lossy(v).into_owned()),
                    b"size" => {
                        self.pax_size = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
                    }
                    _ => {}
                }
            }
            data = &data[len..];
        }
    }
}

/// The fields of a header block the scan needs.
struct Header {
    name: String,
    size: u64,
    kind: u8,
}

impl Header {
    /// Parses a header block; `None` when its checksum is wrong or its size unreadable.
    fn parse(b: &[u8; BLOCK as usize]) -> Option<Header> {
        let stored = octal(&b[148..156])?;
        let sum: u64 = b
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    v as u64
                }
            })
            .sum();
        if stored != sum {
            return None;
        }
        let size = if b[124] & 0x80 != 0 {
            // GNU base-256: the remaining bits, big-endian.
            let mut v: u64 = (b[124] & 0x7f) as u64;
            for &x in &b[125..136] {
                v = v.checked_mul(256)?.checked_add(x as u64)?;
            }
            v
        } else {
            octal(&b[124..136])?
        };
        let name = c_string(&b[0..100]);
        let ustar = &b[257..262] == b"ustar";
        let name = match (ustar, c_string(&b[345..500])) {
            (true, prefix) if !prefix.is_empty() => format!("{prefix}/{name}"),
            _ => name,
        };
        Some(Header {
            name,
            size,
            kind: b[156],
        })
    }
}

/// An octal field, NUL- or space-terminated, possibly padded with leading spaces.
fn octal(f: &[u8]) -> Option<u64> {
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

fn c_string(f: &[u8]) -> String {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

fn clean(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn finds_every_entry_with_its_extents_and_long_names() {
        let long = format!("{}/file", "d".repeat(150));
        let tar = tar_of(&[("a", b"hello"), (&long, b""), ("./b/c", &[7u8; 1000])]);
        let s = scan(&tar[..]).unwrap();
        assert_eq!(s.len, tar.len() as u64);
        let names: Vec<_> = s.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["a", long.as_str(), "b/c"]);
        let a = &s.entries[0];
        assert_eq!((a.start, a.data, a.size, a.end), (0, 512, 5, 1024));
        assert_eq!(&tar[a.data as usize..(a.data + a.size) as usize], b"hello");
        // The long name's GNU record belongs to its entry.
        let l = &s.entries[1];
        assert_eq!(l.start, 1024);
        assert!(l.data > l.start + 512);
        let c = &s.entries[2];
        assert_eq!(c.start, l.end);
        assert_eq!(c.content_hash, *blake3::hash(&[7u8; 1000]).as_bytes());
        assert!(s.tail_start() < s.len);
    }

    #[test]
    fn pax_records_are_read_by_their_length_even_with_newlines() {
        fn record(kv: &str) -> String {
            let mut len = kv.len() + 3;
            while format!("{len} {kv}\n").len() != len {
                len = format!("{len} {kv}\n").len();
            }
            format!("{len} {kv}\n")
        }
        let data = record("SCHILY.acl.access=user::rw-\nuser:1:r--\n") + &record("path=a/bc");
        let mut p = Pending::new(0);
        p.pax(data.as_bytes());
        assert_eq!(p.pax_path.as_deref(), Some("a/bc"));
    }

    #[test]
    fn garbage_and_truncation_end_the_list_without_error() {
        let tar = tar_of(&[("a", b"hello"), ("b", &[1u8; 2000])]);
        for cut in [0, 100, 512, 700, 1024, 1600, tar.len() - 1] {
            let s = scan(&tar[..cut]).unwrap();
            assert_eq!(s.len, cut as u64);
            assert!(s.entries.iter().all(|e| e.end <= cut as u64));
        }
        let mut bad = tar.clone();
        bad[1024 + 10] ^= 0xff; // second header's checksum no longer matches
        let s = scan(&bad[..]).unwrap();
        assert_eq!(s.entries.len(), 1);
        let noise: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert!(scan(&noise[..]).unwrap().entries.is_empty());
    }
}

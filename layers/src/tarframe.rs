//! The framing of a layer tar stream, walked under the `tar` crate's reader.
//!
//! Why: layer tars come from many writers, and two things they do are beyond the `tar` crate:
//! - `umoci insert` (and other Go writers that never close their `tar.Writer`) end a layer right
//!   after the last entry's data, without its padding or the two end-of-archive blocks;
//!   containerd and `umoci unpack` accept such layers. [`Framed`] knows where every header, data
//!   area and padding lies, so at the end of the stream it supplies the padding a complete last
//!   entry lacks, and refuses, naming the entry and offset, a stream that stops inside a header
//!   or inside an entry's data (real truncation).
//! - PAX records are `<length> <key>=<value>\n`, and values may contain newlines (GNU tar's
//!   `SCHILY.acl.*` from `tar --acls`) or any byte (xattrs such as `security.capability`); the
//!   `tar` crate splits them at newlines and calls such headers malformed. Here they are parsed
//!   by their length prefixes, as POSIX says, and the records of a local (`x`) header are handed
//!   to the reader through [`PaxRecords`], keyed by the header of the entry they describe; a PAX
//!   `size` also changes where the next header lies, so framing is right whatever the records
//!   contain.
//!
//! Bytes pass through unchanged (offsets the `tar` crate reports stay offsets in the stream);
//! only missing padding (or the rest of a cut end-of-archive block) at the very end is added. After an end-of-archive block, or a GNU sparse
//! entry (whose extra header blocks are not framed here), the rest passes through unwalked.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

/// Tar blocks.
const BLOCK: u64 = 512;

/// PAX extended headers larger than this are refused (GNU tar's ACLs and xattrs are far smaller).
pub(crate) const MAX_PAX: u64 = 16 << 20;

/// One `key=value` record of a PAX extended header.
pub(crate) type PaxRecord = (Vec<u8>, Vec<u8>);

/// The local PAX records of the entry whose header was read last, shared between [`Framed`] and
/// the code reading entries from the `tar` crate.
#[derive(Debug, Clone, Default)]
pub(crate) struct PaxRecords(Rc<RefCell<Option<Described>>>);

/// Records and the header offset of the entry they describe.
type Described = (u64, Vec<PaxRecord>);

impl PaxRecords {
    /// The records of the entry whose header is at `header_offset` (none if it had no PAX
    /// header).
    pub(crate) fn take_for(&self, header_offset: u64) -> Vec<PaxRecord> {
        match self.0.borrow_mut().take() {
            Some((at, records)) if at == header_offset => records,
            _ => Vec::new(),
        }
    }
}

/// Parses PAX extended header data: records `<len> <key>=<value>\n` where `<len>` counts the
/// whole record in bytes, so values may contain newlines (ACLs) or any byte (xattrs).
pub(crate) fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    // Writers pad the data area with NULs after the last record.
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a PAX record has no length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "a PAX record length is not a number: {:?}",
                    String::from_utf8_lossy(&data[..space.min(20)])
                )
            })?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(format!(
                "a PAX record of {len} bytes does not fit the {} bytes left or lacks its newline",
                data.len()
            ));
        }
        let body = &data[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a PAX record has no `=`")?;
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// Where the walk is.
#[derive(Debug)]
enum State {
    /// Reading a header block; `filled` bytes of it are in `header`, `sent` handed out.
    Header { filled: usize, sent: usize },
    /// Inside an entry's data.
    Data { left: u64, pad: u64 },
    /// Inside the padding after an entry's data.
    Pad { left: u64 },
    /// Supplying the padding a stream that ended after an entry's data lacks, then the end.
    Supply { left: u64 },
    /// Not walked any more: after an end-of-archive block or a sparse entry.
    Through,
}

/// A layer tar stream whose framing is checked and whose missing final padding is supplied.
pub(crate) struct Framed<R> {
    inner: R,
    state: State,
    header: [u8; 512],
    /// Offset in the stream of the current header or data.
    pos: u64,
    /// The entry whose data is being read: name and header offset, for messages.
    entry: (String, u64),
    /// Data of a PAX extended header being read, and whether it is local (`x`).
    pax: Option<Vec<u8>>,
    /// The `size` a local PAX header gave the next entry.
    pax_size: Option<u64>,
    /// The records of the last local PAX header, until the entry they describe.
    pending: Option<Vec<PaxRecord>>,
    records: PaxRecords,
}

impl<R: Read> Framed<R> {
    pub(crate) fn new(inner: R) -> Self {
        Framed {
            inner,
            state: State::Header { filled: 0, sent: 0 },
            header: [0; 512],
            pos: 0,
            entry: (String::new(), 0),
            pax: None,
            pax_size: None,
            pending: None,
            records: PaxRecords::default(),
        }
    }

    /// Where the PAX records of each entry are handed out.
    pub(crate) fn records(&self) -> PaxRecords {
        self.records.clone()
    }

    /// A header block is complete: decide what follows it.
    fn parse_header(&mut self) -> io::Result<State> {
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            return Ok(State::Through);
        }
        let name = header_name(h);
        let kind = h[156];
        let mut size = numeric(&h[124..136]).ok_or_else(|| {
            corrupt(format!(
                "the tar header of {name} at offset {} has a bad size field",
                self.pos
            ))
        })?;
        match kind {
            b'S' => return Ok(State::Through),
            b'x' => {
                if size > MAX_PAX {
                    return Err(corrupt(format!(
                        "the PAX header at offset {} is {size} bytes (at most {MAX_PAX})",
                        self.pos
                    )));
                }
                self.pax = Some(Vec::with_capacity(size as usize));
            }
            b'g' | b'L' | b'K' => {}
            _ => {
                if let Some(s) = self.pax_size.take() {
                    size = s;
                }
                *self.records.0.borrow_mut() = self.pending.take().map(|r| (self.pos, r));
            }
        }
        self.entry = (name, self.pos);
        Ok(State::Data {
            left: size,
            pad: (BLOCK - size % BLOCK) % BLOCK,
        })
    }

    /// An entry's data is complete: take what a PAX header says about the next entry.
    fn end_data(&mut self) -> io::Result<()> {
        if let Some(data) = self.pax.take() {
            let records = parse_pax(&data).map_err(|e| {
                corrupt(format!(
                    "the PAX header at offset {} is malformed: {e}",
                    self.entry.1
                ))
            })?;
            for (k, v) in &records {
                if k == b"size" {
                    let s = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| {
                            corrupt(format!(
                                "the PAX header at offset {} has a bad size {:?}",
                                self.entry.1,
                                String::from_utf8_lossy(v)
                            ))
                        })?;
                    self.pax_size = Some(s);
                }
            }
            self.pending = Some(records);
        }
        Ok(())
    }

    fn truncated(&self, what: String) -> io::Error {
        io::Error::new(io::ErrorKind::UnexpectedEof, what)
    }
}

impl<R: Read> Read for Framed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Through => return self.inner.read(buf),
                State::Header { filled, sent } if sent < filled => {
                    let n = (filled - sent).min(buf.len());
                    buf[..n].copy_from_slice(&self.header[sent..sent + n]);
                    self.state = State::Header {
                        filled,
                        sent: sent + n,
                    };
                    if sent + n == 512 {
                        self.state = self.parse_header()?;
                        self.pos += BLOCK;
                    }
                    return Ok(n);
                }
                State::Header { filled, sent } => {
                    let n = self.inner.read(&mut self.header[filled..])?;
                    if n == 0 {
                        if filled == 0 {
                            // A clean end at an entry boundary.
                            return Ok(0);
                        }
                        if self.header[..filled].iter().all(|&b| b == 0) {
                            // The end ends inside the end-of-archive block: complete it.
                            self.header[filled..].fill(0);
                            self.state = State::Header { filled: 512, sent };
                            continue;
                        }
                        return Err(self.truncated(format!(
                            "the tar stream ends inside the header at offset {} ({filled} of 512 bytes)",
                            self.pos
                        )));
                    }
                    self.state = State::Header {
                        filled: filled + n,
                        sent: filled,
                    };
                }
                State::Data { left: 0, pad } => {
                    self.end_data()?;
                    self.state = State::Pad { left: pad };
                }
                State::Data { left, pad } => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(self.truncated(format!(
                            "the tar stream ends inside the data of {} (header at offset {}): {left} bytes missing",
                            self.entry.0, self.entry.1
                        )));
                    }
                    if let Some(p) = self.pax.as_mut() {
                        p.extend_from_slice(&buf[..n]);
                    }
                    self.pos += n as u64;
                    self.state = State::Data {
                        left: left - n as u64,
                        pad,
                    };
                    return Ok(n);
                }
                State::Pad { left: 0 } | State::Supply { left: 0 } => {
                    if matches!(self.state, State::Supply { .. }) {
                        return Ok(0);
                    }
                    self.state = State::Header { filled: 0, sent: 0 };
                }
                State::Pad { left } => {
                    let want = buf.len().min(left as usize);
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        // The last entry is complete; only its padding is missing.
                        self.state = State::Supply { left };
                        continue;
                    }
                    self.pos += n as u64;
                    self.state = State::Pad {
                        left: left - n as u64,
                    };
                    return Ok(n);
                }
                State::Supply { left } => {
                    let n = buf.len().min(left as usize);
                    buf[..n].fill(0);
                    self.state = State::Supply {
                        left: left - n as u64,
                    };
                    return Ok(n);
                }
            }
        }
    }
}

fn corrupt(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// A header's name, for messages (ustar prefix and name).
fn header_name(h: &[u8; 512]) -> String {
    let field = |f: &[u8]| {
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let name = field(&h[..100]);
    let prefix = if &h[257..262] == b"ustar" {
        field(&h[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// A numeric header field: octal digits (space or NUL padded), or GNU base-256.
fn numeric(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(f[0] & 0x3f);
        for &b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    if !s.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut a = tar::Archive::new(Framed::new(bytes));
        let mut out = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            out.push((String::from_utf8_lossy(&e.path_bytes()).into_owned(), data));
        }
        Ok(out)
    }

    #[test]
    fn a_tar_without_end_blocks_or_final_padding_is_completed() {
        let full = tar_of(&[("a", b"hello"), ("b", b"hi")]);
        let want = vec![
            ("a".to_string(), b"hello".to_vec()),
            ("b".to_string(), b"hi".to_vec()),
        ];
        assert_eq!(read_all(&full).expect("full"), want);
        // Without end blocks: the data of `b` ends at 512*3 + 2.
        let end_of_b = 512 * 3 + 2;
        for cut in [end_of_b, end_of_b + 10, 512 * 4, 512 * 4 + 100] {
            assert_eq!(
                read_all(&full[..cut]).expect("clean end"),
                want,
                "cut {cut}"
            );
        }
        // The bare `tar` crate refuses the unpadded stream: the case being fixed.
        let mut bare = tar::Archive::new(&full[..end_of_b]);
        let all: io::Result<Vec<_>> = bare
            .entries()
            .expect("entries")
            .map(|e| e.map(|_| ()))
            .collect();
        assert!(all.is_err(), "tar crate alone accepts it now?");
    }

    #[test]
    fn real_truncation_is_refused_naming_the_entry() {
        let full = tar_of(&[("a", b"hello"), ("dir/b", &[7u8; 700])]);
        // Inside the data of dir/b (header at 1024, data from 1536).
        let err = read_all(&full[..1536 + 300]).unwrap_err().to_string();
        assert!(
            err.contains(
                "ends inside the data of dir/b (header at offset 1024): 400 bytes missing"
            ),
            "{err}"
        );
        // Inside a header.
        let err = read_all(&full[..1024 + 100]).unwrap_err().to_string();
        assert!(
            err.contains("ends inside the header at offset 1024 (100 of 512 bytes)"),
            "{err}"
        );
    }

    #[test]
    fn pax_records_are_split_by_their_length_not_by_newlines() {
        let acl = b"user::rw-\nuser:1000:r--\ngroup::r--\nmask::r--\nother::r--\n";
        let mut data = Vec::new();
        for (k, v) in [
            (&b"SCHILY.acl.access"[..], &acl[..]),
            (b"path", b"a\nb"),
            (b"SCHILY.xattr.security.capability", b"\x01\n\x00"),
        ] {
            let body = [k, b"=", v, b"\n"].concat();
            // The length counts its own digits.
            let mut len = body.len() + 2;
            while format!("{len} ").len() + body.len() != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} ").as_bytes());
            data.extend_from_slice(&body);
        }
        data.extend_from_slice(&[0; 7]);
        let records = parse_pax(&data).expect("parse");
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].1, acl.to_vec());
        assert_eq!(records[1], (b"path".to_vec(), b"a\nb".to_vec()));
        assert_eq!(records[2].1, b"\x01\n\x00".to_vec());
        for bad in [&b"5 a=b"[..], b"x a=b\n", b"99 a=b\n", b"7 ab\nxx"] {
            assert!(
                parse_pax(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn numeric_fields_octal_and_base_256() {
        assert_eq!(numeric(b"00000000012\0"), Some(10));
        assert_eq!(numeric(b"     12 \0\0\0\0"), Some(10));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[10] = 2;
        b[11] = 1;
        assert_eq!(numeric(&b), Some(513));
        assert_eq!(numeric(b"0000000009\0\0"), None);
        assert_eq!(numeric(&[0xff; 12]), None);
    }
}

//! The encodings of the three formats, read back with the `tar` crate, and their refusals.

use std::collections::BTreeMap;
use std::io::{self, Read};

use chasi_tar::{encode_headers, EntryKind, Format, TarEntry, TarError, TarWriter};

fn file(path: &[u8], size: u64) -> TarEntry {
    TarEntry::file(path, 0o644, 5, size)
}

/// (path, type flag, mtime, data) of every entry.
fn entries(tar: &[u8]) -> Vec<(String, u8, u64, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let t = e.header().entry_type().as_byte();
            let m = e.header().mtime().unwrap();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (p, t, m, d)
        })
        .collect()
}

#[test]
fn pax_only_when_needed_and_long_names() {
    let long = "d/".repeat(80) + "file";
    let mut tw = TarWriter::new(Vec::new());
    tw.append(&file(b"short", 3), Some(&mut &b"abc"[..]))
        .unwrap();
    tw.append(&file(long.as_bytes(), 0), Some(&mut &b""[..]))
        .unwrap();
    tw.append(&file(&[b'a'; 300], 0), None).unwrap();
    let buf = tw.finish().unwrap();
    // short name: exactly one header + one data block; no PAX.
    assert_eq!(buf[156], b'0');
    assert_eq!(&buf[..5], b"short");
    // long splittable name: ustar prefix, no PAX header ('x').
    assert_eq!(buf[1024 + 156], b'0');
    // unsplittable 300-byte name needs PAX.
    assert_eq!(buf[1536 + 156], b'x');
    let got = entries(&buf);
    assert_eq!(got[0].0, "short");
    assert_eq!(got[0].3, b"abc");
    assert_eq!(got[1].0, long);
    assert_eq!(got[2].0, "a".repeat(300));
}

#[test]
fn a_size_of_8_gib_is_a_pax_record_in_layers_and_base_256_elsewhere() {
    let big = file(b"disk.img", 9 << 30);
    let pax = encode_headers(&big, &Format::LAYER).unwrap();
    assert_eq!(pax.len(), 1536, "PAX header, its records, the ustar header");
    assert_eq!(pax[156], b'x');
    assert_eq!(&pax[..21], b"PaxHeaders/disk.img\0\0");
    assert!(pax[512..1024].starts_with(b"19 size=9663676416\n\0"));
    assert_eq!(&pax[1024 + 124..1024 + 136], b"77777777777\0", "clamped");
    for format in [Format::OVA, Format::ARCHIVE] {
        let h = encode_headers(&big, &format).unwrap();
        assert_eq!(h.len(), 512, "no extended header");
        let mut want = [0u8; 12];
        want[0] = 0x80;
        want[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(h[124..136], want, "GNU base-256");
    }
    // Just below 8 GiB, octal everywhere.
    for format in [Format::LAYER, Format::OVA, Format::ARCHIVE] {
        let h = encode_headers(&file(b"x", (8 << 30) - 1), &format).unwrap();
        assert_eq!(&h[124..136], b"77777777777\0");
    }
}

#[test]
fn checksum_and_device_fields_follow_the_format() {
    let e = file(b"a.ovf", 1234);
    let layer = encode_headers(&e, &Format::LAYER).unwrap();
    let ova = encode_headers(&e, &Format::OVA).unwrap();
    let archive = encode_headers(&e, &Format::ARCHIVE).unwrap();
    assert_eq!(layer, ova, "the same ustar header");
    let sum: u32 = {
        let mut c = ova.clone();
        c[148..156].copy_from_slice(b"        ");
        c.iter().map(|&b| u32::from(b)).sum()
    };
    assert_eq!(&ova[148..156], format!("{sum:06o}\0 ").as_bytes());
    assert_eq!(&ova[329..345], b"0000000\x000000000\0");
    assert_eq!(
        &archive[329..345],
        &[0u8; 16],
        "tar-rs leaves device fields empty"
    );
    let sum = sum - u32::from(b'0') * 14;
    assert_eq!(&archive[148..156], format!("{sum:07o}\0").as_bytes());
    // Devices carry their numbers in every format.
    let dev = TarEntry {
        kind: EntryKind::Char(1, 3),
        ..file(b"null", 0)
    };
    let h = encode_headers(&dev, &Format::ARCHIVE).unwrap();
    assert_eq!(&h[329..345], b"0000001\x000000003\0");
    // All of them read back.
    for format in [Format::LAYER, Format::OVA, Format::ARCHIVE] {
        let mut tw = TarWriter::with_format(Vec::new(), format);
        tw.append(&e, Some(&mut &[1u8; 1234][..])).unwrap();
        tw.append(&dev, None).unwrap();
        let (tar, len) = tw.finish_sized().unwrap();
        assert_eq!(len, tar.len() as u64);
        assert_eq!(len % format.record_size, 0);
        let got = entries(&tar);
        assert_eq!(got[0].3, vec![1u8; 1234], "{format:?}");
        assert_eq!(got[1].1, b'3');
    }
}

#[test]
fn the_ova_record_is_10240_bytes() {
    let mut tw = TarWriter::with_format(Vec::new(), Format::OVA);
    tw.append(&file(b"vm.ovf", 3), Some(&mut &b"abc"[..]))
        .unwrap();
    let tar = tw.finish().unwrap();
    assert_eq!(tar.len(), 10240);
    assert!(tar[1024..].iter().all(|&b| b == 0));
}

fn refusal(e: &TarEntry, format: Format) -> (&'static str, String) {
    match encode_headers(e, &format) {
        Err(TarError::DoesNotFit { field, path, .. }) => (field, path),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_pax_what_does_not_fit_is_refused_by_name() {
    let mut xattrs = BTreeMap::new();
    xattrs.insert("user.a".to_string(), b"1".to_vec());
    let cases = [
        (file(&[b'n'; 120], 0), "name"),
        (
            TarEntry {
                kind: EntryKind::Symlink(vec![b't'; 101]),
                ..file(b"l", 0)
            },
            "link target",
        ),
        (
            TarEntry {
                uid: 1 << 21,
                ..file(b"u", 0)
            },
            "uid",
        ),
        (
            TarEntry {
                gid: 1 << 21,
                ..file(b"g", 0)
            },
            "gid",
        ),
        (
            TarEntry {
                mtime: -1,
                ..file(b"m", 0)
            },
            "mtime",
        ),
        (
            TarEntry {
                xattrs,
                ..file(b"x", 0)
            },
            "xattr",
        ),
    ];
    for (entry, field) in cases {
        for format in [Format::OVA, Format::ARCHIVE] {
            let (got, path) = refusal(&entry, format);
            assert_eq!(got, field);
            assert_eq!(path.as_bytes(), entry.path);
        }
        assert!(encode_headers(&entry, &Format::LAYER).is_ok());
    }
    let msg = encode_headers(&file(&[b'n'; 120], 0), &Format::OVA)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("the name of nnn") && msg.contains("120 bytes"),
        "{msg}"
    );
}

#[test]
fn short_data_and_big_device_numbers_are_typed_errors() {
    let mut tw = TarWriter::new(Vec::new());
    let err = tw
        .append(&file(b"f", 10), Some(&mut &b"abc"[..]))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(matches!(
        TarError::of(&err),
        Some(TarError::Short {
            got: 3,
            size: 10,
            ..
        })
    ));
    assert_eq!(
        err.to_string(),
        "f shrank while being archived (3 of 10 bytes)"
    );
    let err = tw.append(&file(b"f", 1), None).unwrap_err();
    assert!(matches!(TarError::of(&err), Some(TarError::NoData)));
    let dev = TarEntry {
        kind: EntryKind::Block(1 << 22, 0),
        ..file(b"sda", 0)
    };
    let err = tw.append(&dev, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "device numbers 4194304:0 of sda do not fit a tar header"
    );
}

//! Media types and layer codecs: what a blob is, how a layer is compressed, and the
//! deterministic (de)compressors used when a layer must change compression.
//!
//! Both OCI and Docker schema-2 media types are understood because layouts written by
//! `skopeo copy docker://…` keep Docker types. Re-compression uses pinned parameters
//! (gzip level [`GZIP_LEVEL`], mtime 0, OS byte 255, no file name; zstd level
//! [`ZSTD_LEVEL`], single-threaded, no checksum) so the same layer always gives the same
//! compressed digest with the crate versions locked in `Cargo.lock`. Decoding is for
//! foreign input: zstd frames are held to [`ZSTD_WINDOW_LOG_MAX`], what the store accepts.

use std::io::{self, Read, Write};

use flate2::{Compression, GzBuilder};
use oci_spec::image::{Digest, MediaType};

use super::digest::HashingReader;

/// Docker schema-2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema-2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker uncompressed layer (not in the schema-2 spec, written by some tools).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Gzip level used for every gzip layer this crate writes.
pub const GZIP_LEVEL: u32 = 6;
/// Zstd level used when this module (not the store) compresses a layer.
pub const ZSTD_LEVEL: i32 = 3;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCodec {
    /// A plain tar.
    Uncompressed,
    /// gzip (possibly several members).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

/// The layer compression an export should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// Keep each layer as it is in the source (zstd for images built by chasi). A
    /// docker-archive turns zstd layers into plain tar, since docker and containerd do not
    /// read zstd there.
    #[default]
    Keep,
    /// Plain tar.
    Uncompressed,
    /// gzip, for consumers that need it (umoci 0.4, old docker).
    Gzip,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    /// The codec a layer of codec `from` gets under this option.
    pub fn target(self, from: LayerCodec) -> LayerCodec {
        match self {
            LayerCompression::Keep => from,
            LayerCompression::Uncompressed => LayerCodec::Uncompressed,
            LayerCompression::Gzip => LayerCodec::Gzip,
            LayerCompression::Zstd => LayerCodec::Zstd,
        }
    }
}

impl std::str::FromStr for LayerCompression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(LayerCompression::Keep),
            "none" | "uncompressed" => Ok(LayerCompression::Uncompressed),
            "gzip" => Ok(LayerCompression::Gzip),
            "zstd" => Ok(LayerCompression::Zstd),
            other => Err(format!(
                "unknown compression `{other}` (keep, none, gzip, zstd)"
            )),
        }
    }
}

/// What a descriptor points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An image manifest (OCI or Docker schema 2).
    Manifest,
    /// An image index / manifest list.
    Index,
    /// An image config.
    Config,
    /// A filesystem layer with its codec.
    Layer(LayerCodec),
    /// Anything else (artifacts, attestations, unknown).
    Other,
}

/// Classifies a media type.
pub fn classify(media_type: &MediaType) -> BlobKind {
    match media_type {
        MediaType::ImageManifest => BlobKind::Manifest,
        MediaType::ImageIndex => BlobKind::Index,
        MediaType::ImageConfig => BlobKind::Config,
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => {
            BlobKind::Layer(LayerCodec::Uncompressed)
        }
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
            BlobKind::Layer(LayerCodec::Gzip)
        }
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
            BlobKind::Layer(LayerCodec::Zstd)
        }
        MediaType::Other(s) => match s.as_str() {
            DOCKER_MANIFEST => BlobKind::Manifest,
            DOCKER_MANIFEST_LIST => BlobKind::Index,
            DOCKER_CONFIG => BlobKind::Config,
            DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => BlobKind::Layer(LayerCodec::Gzip),
            DOCKER_LAYER_TAR => BlobKind::Layer(LayerCodec::Uncompressed),
            "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
                BlobKind::Layer(LayerCodec::Zstd)
            }
            _ => BlobKind::Other,
        },
        _ => BlobKind::Other,
    }
}

/// Whether a media type is one of Docker's.
pub fn is_docker(media_type: &MediaType) -> bool {
    media_type
        .to_string()
        .starts_with("application/vnd.docker.")
}

/// The OCI layer media type of a codec.
pub fn oci_layer_type(codec: LayerCodec) -> MediaType {
    match codec {
        LayerCodec::Uncompressed => MediaType::ImageLayer,
        LayerCodec::Gzip => MediaType::ImageLayerGzip,
        LayerCodec::Zstd => MediaType::ImageLayerZstd,
    }
}

/// Guesses a layer's codec from its first bytes (docker-archives carry no media types).
pub fn sniff(prefix: &[u8]) -> LayerCodec {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        LayerCodec::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LayerCodec::Zstd
    } else {
        LayerCodec::Uncompressed
    }
}

/// A reader of the uncompressed tar of a layer.
pub fn decoder<'a>(codec: LayerCodec, reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        LayerCodec::Uncompressed => Box::new(reader),
        LayerCodec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            reader,
        ))),
        LayerCodec::Zstd => Box::new(ZstdFrames::new(reader)?),
    })
}

/// log2 of the largest zstd window accepted when decoding a layer: 27 (128 MiB), zstd's
/// own default decoder limit, which the store's layer ingest and `ADD` of a `.tar.zst` also
/// apply. A frame may declare a window of up to 2 GiB (or 3.75 TiB), and the decoder
/// allocates it before decoding anything, so a tiny foreign layer could otherwise cost
/// gigabytes of memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// [`ZSTD_WINDOW_LOG_MAX`] in bytes.
pub const ZSTD_WINDOW_MAX: u64 = 1 << ZSTD_WINDOW_LOG_MAX;

/// The window a zstd frame header (RFC 8878 §3.1.1.1) declares, when `head` starts a
/// regular frame and is long enough to say (skippable frames have none).
pub fn zstd_frame_window(head: &[u8]) -> Option<u64> {
    if head.get(..4)? != [0x28, 0xb5, 0x2f, 0xfd] {
        return None;
    }
    let descriptor = *head.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let w = *head.get(5)?;
        let base = 1u64 << (10 + u32::from(w >> 3));
        return Some(base + (base / 8) * u64::from(w & 7));
    }
    // A single-segment frame's window is its content size.
    let dict_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs_len = [1, 2, 4, 8][usize::from(descriptor >> 6)];
    let at = 5 + dict_len;
    let field = head.get(at..at + fcs_len)?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let size = u64::from_le_bytes(bytes);
    Some(if fcs_len == 2 { size + 256 } else { size })
}

/// The longest frame header: magic, descriptor, window, dictionary id, content size.
const ZSTD_MAX_HEADER: usize = 4 + 1 + 1 + 4 + 8;

/// A zstd decoder over concatenated frames that reads each frame's header before decoding
/// it and refuses one whose window exceeds [`ZSTD_WINDOW_MAX`], saying how much it wanted.
struct ZstdFrames<R> {
    input: Lookahead<R>,
    decoder: zstd::stream::raw::Decoder<'static>,
    at_frame_start: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(reader: R) -> io::Result<Self> {
        let mut decoder = zstd::stream::raw::Decoder::new()?;
        decoder.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
            ZSTD_WINDOW_LOG_MAX,
        ))?;
        Ok(ZstdFrames {
            input: Lookahead::new(reader),
            decoder,
            at_frame_start: true,
        })
    }

    /// Checks the next frame's header; `false` at the clean end of the input.
    fn start_frame(&mut self) -> io::Result<bool> {
        let head = self.input.peek(ZSTD_MAX_HEADER)?;
        if head.is_empty() {
            return Ok(false);
        }
        if let Some(window) = zstd_frame_window(head) {
            if window > ZSTD_WINDOW_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd frame needs a window of {} MiB, more than the {} MiB accepted",
                        window.div_ceil(1 << 20),
                        ZSTD_WINDOW_MAX >> 20
                    ),
                ));
            }
        }
        zstd::stream::raw::Operation::reinit(&mut self.decoder)?;
        self.at_frame_start = false;
        Ok(true)
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at_frame_start && !self.start_frame()? {
                return Ok(0);
            }
            let input = self.input.fill_buf()?;
            let ended = input.is_empty();
            let mut src = InBuffer::around(input);
            let mut dst = OutBuffer::around(&mut *buf);
            let hint = self.decoder.run(&mut src, &mut dst)?;
            let (used, produced) = (src.pos(), dst.pos());
            self.input.consume(used);
            if hint == 0 {
                self.at_frame_start = true;
            } else if ended && produced == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the zstd stream ends inside a frame",
                ));
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}

/// A buffered reader that can look a few bytes ahead without consuming them.
struct Lookahead<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> Lookahead<R> {
    fn new(inner: R) -> Self {
        Lookahead {
            inner,
            buf: vec![0; 128 << 10],
            start: 0,
            end: 0,
        }
    }

    /// At least `n` buffered bytes, or fewer at the end of the input.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.peek(1)
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

/// Decompresses `reader` (codec `from`) and re-compresses into `out` (codec `to`).
/// Returns the digest and size of the uncompressed tar (the layer's DiffID) and `out`.
pub fn transcode<W: Write>(
    reader: &mut dyn Read,
    from: LayerCodec,
    to: LayerCodec,
    mut out: W,
) -> io::Result<(Digest, u64, W)> {
    let mut plain = HashingReader::new(decoder(from, reader)?);
    let out = match to {
        LayerCodec::Uncompressed => {
            io::copy(&mut plain, &mut out)?;
            out
        }
        LayerCodec::Gzip => {
            let mut enc = GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, Compression::new(GZIP_LEVEL));
            io::copy(&mut plain, &mut enc)?;
            enc.finish()?
        }
        LayerCodec::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            enc.include_checksum(false)?;
            io::copy(&mut plain, &mut enc)?;
            enc.finish()?
        }
    };
    let (diff_id, size) = plain.finish();
    Ok((diff_id, size, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcode_is_deterministic_and_reversible() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let plain_id = super::super::digest::sha256_digest(&data);
        let (id1, n1, gz1) = transcode(
            &mut &data[..],
            LayerCodec::Uncompressed,
            LayerCodec::Gzip,
            Vec::new(),
        )
        .expect("gzip");
        let (_, _, gz2) = transcode(
            &mut &data[..],
            LayerCodec::Uncompressed,
            LayerCodec::Gzip,
            Vec::new(),
        )
        .expect("gzip");
        assert_eq!(gz1, gz2);
        assert_eq!(id1, plain_id);
        assert_eq!(n1, data.len() as u64);
        assert_eq!(sniff(&gz1), LayerCodec::Gzip);
        let (id2, _, zst) = transcode(
            &mut &gz1[..],
            LayerCodec::Gzip,
            LayerCodec::Zstd,
            Vec::new(),
        )
        .expect("zstd");
        assert_eq!(id2, plain_id);
        assert_eq!(sniff(&zst), LayerCodec::Zstd);
        let (id3, _, back) = transcode(
            &mut &zst[..],
            LayerCodec::Zstd,
            LayerCodec::Uncompressed,
            Vec::new(),
        )
        .expect("plain");
        assert_eq!(id3, plain_id);
        assert_eq!(back, data);
    }

    #[test]
    fn media_types_are_classified() {
        assert_eq!(
            classify(&MediaType::ImageLayerZstd),
            BlobKind::Layer(LayerCodec::Zstd)
        );
        assert_eq!(
            classify(&MediaType::Other(DOCKER_LAYER_GZIP.into())),
            BlobKind::Layer(LayerCodec::Gzip)
        );
        assert_eq!(
            classify(&MediaType::from(DOCKER_MANIFEST)),
            BlobKind::Manifest
        );
        assert_eq!(classify(&MediaType::from("text/plain")), BlobKind::Other);
    }

    /// A zstd frame header declaring `window_byte` as its window descriptor, then a raw
    /// block of `payload`.
    fn frame_with_window(window_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, window_byte];
        // Last block, raw, of payload.len() bytes (3-byte little-endian block header).
        let header = 1 | ((payload.len() as u32) << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn zstd_frames_over_the_window_cap_are_refused_with_their_size() {
        // Exponent 21: 2^31 = 2 GiB.
        let huge = frame_with_window(21 << 3, b"hello");
        assert_eq!(zstd_frame_window(&huge), Some(2 << 30));
        let mut out = Vec::new();
        let err = decoder(LayerCodec::Zstd, &huge[..])
            .and_then(|mut d| d.read_to_end(&mut out))
            .expect_err("a 2 GiB window is refused");
        assert_eq!(
            err.to_string(),
            "zstd frame needs a window of 2048 MiB, more than the 128 MiB accepted"
        );
        // 128 MiB (exponent 17) is accepted, and frames concatenate.
        let mut two = frame_with_window(17 << 3, b"hello ");
        two.extend(zstd::stream::encode_all(&b"world"[..], 3).expect("encode"));
        let mut out = Vec::new();
        decoder(LayerCodec::Zstd, &two[..])
            .and_then(|mut d| d.read_to_end(&mut out))
            .expect("two frames");
        assert_eq!(out, b"hello world");
        // A second frame over the cap is refused too.
        two.extend(frame_with_window((17 << 3) | 1, b"!"));
        let mut d = decoder(LayerCodec::Zstd, &two[..]).expect("decoder");
        assert!(d.read_to_end(&mut Vec::new()).is_err());
        // Single-segment frames: the content size is the window.
        let mut single = vec![0x28, 0xb5, 0x2f, 0xfd, 0xa0];
        single.extend_from_slice(&(3u32 << 30).to_le_bytes());
        assert_eq!(zstd_frame_window(&single), Some(3 << 30));
        assert!(decoder(LayerCodec::Zstd, &single[..])
            .and_then(|mut d| d.read_to_end(&mut Vec::new()))
            .is_err());
        // A stream cut inside a frame is an error, an empty one is empty.
        let whole = zstd::stream::encode_all(&[7u8; 10_000][..], 3).expect("encode");
        let cut = &whole[..whole.len() - 3];
        assert!(decoder(LayerCodec::Zstd, cut)
            .and_then(|mut d| d.read_to_end(&mut Vec::new()))
            .is_err());
        let mut none = Vec::new();
        decoder(LayerCodec::Zstd, &b""[..])
            .and_then(|mut d| d.read_to_end(&mut none))
            .expect("empty");
        assert!(none.is_empty());
    }
}

//! Media types and layer codecs: what a blob is, how a layer is compressed, and the
//! deterministic (de)compressors used when a layer must change compression.
//!
//! Both OCI and Docker schema-2 media types are understood because layouts written by
//! `skopeo copy docker://…` keep Docker types. Re-compression uses pinned parameters
//! (gzip level [`GZIP_LEVEL`], mtime 0, OS byte 255, no file name; zstd level
//! [`ZSTD_LEVEL`], single-threaded, no checksum) so the same layer always gives the same
//! compressed digest with the crate versions locked in `Cargo.lock`.

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
        LayerCodec::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(reader)?;
            d.window_log_max(31)?;
            Box::new(d)
        }
    })
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
}

//! Layer blobs: an uncompressed tar stream goes in, and one pass yields the diff id
//! (sha256 of the tar), the compressed blob in the store and its digest and size.

use crate::ImageError;
use crate::pgzip::ParGzWriter;
use rbuild_core::{Digest, LayerCodec, Sha256Writer, media_type};
use rbuild_store::{BlobWriter, Store};
use std::io::{self, Write};

/// A layer as stored: compressed blob plus the diff id of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    /// Digest of the compressed blob (what manifests name).
    pub digest: Digest,
    /// Digest of the uncompressed tar (what configs name).
    pub diff_id: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// The blob's media type.
    pub media_type: String,
}

/// How layers are compressed. The same tar and choice always give the same blob digest,
/// whatever the machine's core count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip at the given level (0-9), block-parallel on every core.
    Gzip(u32),
    /// zstd at the given level (1-22), multithreaded.
    Zstd(i32),
    /// No compression.
    Uncompressed,
}

impl Compression {
    /// The layer media type this compression gives (OCI types; manifests name a layer in
    /// the family they are written with, see [`crate::MediaTypes::retype_layer`]).
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Gzip(_) => media_type::OCI_LAYER_GZIP,
            Compression::Zstd(_) => media_type::OCI_LAYER_ZSTD,
            Compression::Uncompressed => media_type::OCI_LAYER_TAR,
        }
    }

    /// The codec of this compression.
    pub fn codec(&self) -> LayerCodec {
        match self {
            Compression::Gzip(_) => LayerCodec::Gzip,
            Compression::Zstd(_) => LayerCodec::Zstd,
            Compression::Uncompressed => LayerCodec::Tar,
        }
    }

    /// A stable text naming the choice, for cache keys.
    pub fn key(&self) -> String {
        match self {
            Compression::Gzip(l) => format!("gzip-{l}"),
            Compression::Zstd(l) => format!("zstd-{l}"),
            Compression::Uncompressed => "uncompressed".into(),
        }
    }
}

/// Worker threads for compression: every core.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip(6)
    }
}

enum Sink {
    Gzip(Box<ParGzWriter<BlobWriter>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, BlobWriter>>),
    Plain(BlobWriter),
}

/// A `Write` that takes an uncompressed layer tar and stores it compressed.
pub struct LayerWriter {
    inner: Sha256Writer<Sink>,
    compression: Compression,
}

impl LayerWriter {
    /// Starts a new layer blob in `store`.
    pub fn new(store: &Store, compression: Compression) -> Result<LayerWriter, ImageError> {
        let blob = store.writer()?;
        let sink = match compression {
            Compression::Gzip(level) => {
                Sink::Gzip(Box::new(ParGzWriter::new(blob, level, threads())))
            }
            Compression::Zstd(level) => Sink::Zstd(Box::new(zstd_encoder(blob, level)?)),
            Compression::Uncompressed => Sink::Plain(blob),
        };
        Ok(LayerWriter {
            inner: Sha256Writer::new(sink),
            compression,
        })
    }

    /// Finishes compression and commits the blob.
    pub fn finish(self) -> Result<LayerBlob, ImageError> {
        let (sink, diff_id, _) = self.inner.finish();
        let blob = match sink {
            Sink::Gzip(gz) => (*gz).finish()?,
            Sink::Zstd(z) => (*z).finish()?,
            Sink::Plain(blob) => blob,
        };
        let (digest, size) = blob.commit(None)?;
        let media_type = self.compression.media_type();
        Ok(LayerBlob {
            digest,
            diff_id,
            size,
            media_type: media_type.into(),
        })
    }
}

/// A zstd encoder in multithreaded mode (one worker at least, so the output is the same
/// for any core count), no checksum, no content size (the tar's size is not known ahead).
fn zstd_encoder(
    blob: BlobWriter,
    level: i32,
) -> Result<zstd::stream::write::Encoder<'static, BlobWriter>, ImageError> {
    let mut z = zstd::stream::write::Encoder::new(blob, level)?;
    z.multithread(threads() as u32)?;
    z.include_checksum(false)?;
    Ok(z)
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
            Sink::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
            Sink::Plain(w) => w.flush(),
        }
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn layer_blob_digests_match_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = vec![7u8; 10_000];
        let mut w = LayerWriter::new(&store, Compression::default()).unwrap();
        w.write_all(&tar).unwrap();
        let blob = w.finish().unwrap();
        assert_eq!(blob.diff_id, Digest::sha256(&tar));
        let stored = store.read_verified(&blob.digest).unwrap();
        assert_eq!(stored.len() as u64, blob.size);
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&stored[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, tar);
        // Same input, same blob.
        let mut w = LayerWriter::new(&store, Compression::default()).unwrap();
        w.write_all(&tar).unwrap();
        assert_eq!(w.finish().unwrap(), blob);
    }
}

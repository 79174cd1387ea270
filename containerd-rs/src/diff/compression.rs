//! Layer compression by media type: what Apply reads and Diff writes.

use std::io::{self, BufRead, Read, Write};

use super::DiffError;

/// The compressions containerd 1.6 knows for layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of a layer media type (OCI and Docker), `None` if it is not a layer.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::Uncompressed),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

/// The uncompressed stream of a layer blob of `media_type`, read from `blob` through its own
/// buffer (no second buffering layer: the caller sizes it). `Send`, so another thread can
/// decompress while the caller extracts.
pub fn decompress<'a>(
    media_type: &str,
    blob: impl BufRead + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>, DiffError> {
    match Compression::of_media_type(media_type) {
        Some(Compression::Uncompressed) => Ok(Box::new(blob)),
        Some(Compression::Gzip) => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(blob))),
        Some(Compression::Zstd) => Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(DiffError::io("opening the zstd stream"))?,
        )),
        None => Err(DiffError::NoProcessor(media_type.to_string())),
    }
}

/// A writer compressing into `out` as `compression` says; `finish` must be called.
pub enum Compressor<W: Write> {
    Uncompressed(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(compression: Compression, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Uncompressed => Compressor::Uncompressed(out),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
        })
    }

    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Uncompressed(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Uncompressed(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Uncompressed(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Counts and hashes (sha256) what passes through: the uncompressed digest of a layer.
pub struct Digesting<T> {
    pub inner: T,
    hasher: sha2::Sha256,
    pub size: u64,
}

impl<T> Digesting<T> {
    pub fn new(inner: T) -> Self {
        use sha2::Digest;
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            size: 0,
        }
    }

    /// `sha256:<hex>` of what passed.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let hash = self.hasher.clone().finalize();
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

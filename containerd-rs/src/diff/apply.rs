//! Apply: a layer blob unpacked onto a snapshot's mounts, as containerd 1.6's `diff/apply`.
//!
//! Two threads share the work, so a layer costs about the slower of the two halves rather than
//! their sum: one reads the blob, decompresses it and hashes the uncompressed stream (the
//! applied digest); the other extracts the tar. Large buffers go from the first to the second
//! over a bounded channel and come back to be refilled, so memory stays at a few MiB whatever
//! the layer's size.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use super::compression::{decompress, Digesting};
use super::mounts::{overlay_upperdir, with_temp_mount};
use super::unpack::{unpack, WhiteoutMode};
use super::{Descriptor, DiffError, LayerStore, Mount, MEDIA_TYPE_LAYER};

/// The size of the blob reads and of the buffers handed to the extractor: large enough that
/// per-call costs (syscalls, channel hand-offs) vanish against the bytes moved.
const CHUNK: usize = 1 << 20;

/// Buffers in flight: enough for the decompressor to run ahead while the extractor creates a
/// file or sets its metadata.
const IN_FLIGHT: usize = 4;

/// Applies the layer `desc` of `namespace` onto `mounts` and returns the applied (uncompressed)
/// layer's descriptor. Nothing is verified, as in containerd: the caller compares digests.
pub fn apply(
    store: &dyn LayerStore,
    namespace: &str,
    desc: &Descriptor,
    mounts: &[Mount],
) -> Result<Descriptor, DiffError> {
    let blob = store
        .open_blob(namespace, &desc.digest)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DiffError::BlobNotFound(desc.digest.clone()),
            _ => DiffError::io(format!(
                "failed to get reader from content store: {}",
                desc.digest
            ))(e),
        })?;
    let layer = decompress(&desc.media_type, BufReader::with_capacity(CHUNK, blob))?;
    let (digest, size) = pipelined(layer, |stream| extract(store, mounts, stream))?;
    Ok(Descriptor {
        media_type: MEDIA_TYPE_LAYER.to_string(),
        digest,
        size,
    })
}

/// Runs `consume` on the stream of `layer` while another thread reads and hashes it, then
/// reads what `consume` left (the digest covers the whole stream, padding after the tar's end
/// included); returns the stream's digest and size.
fn pipelined(
    layer: impl Read + Send,
    consume: impl FnOnce(&mut Chunks) -> Result<(), DiffError>,
) -> Result<(String, u64), DiffError> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel(IN_FLIGHT);
        let (empty_tx, empty_rx) = mpsc::channel();
        let inflater = std::thread::Builder::new()
            .name("layer-inflate".into())
            .spawn_scoped(scope, move || inflate(layer, &full_tx, &empty_rx))
            .map_err(DiffError::io("starting the decompressing thread"))?;
        let mut stream = Chunks::new(full_rx, empty_tx);
        let consumed = consume(&mut stream).and_then(|()| {
            io::copy(&mut stream, &mut io::sink())
                .map(drop)
                .map_err(DiffError::io("reading the layer"))
        });
        // Dropped first, so an inflater still sending after a failed `consume` stops at once.
        drop(stream);
        let inflated = inflater.join();
        consumed?;
        let stopped = |why: &str| DiffError::io("reading the layer")(io::Error::other(why));
        match inflated {
            Ok(Some(done)) => Ok(done),
            // Its read error went to `consume`, which failed on it above; this is defensive.
            Ok(None) => Err(stopped("the decompressing thread stopped early")),
            Err(_) => Err(stopped("the decompressing thread panicked")),
        }
    })
}

/// Unpacks `stream` onto the mounts: straight into an overlay upperdir, else onto a temp mount.
fn extract(store: &dyn LayerStore, mounts: &[Mount], stream: &mut Chunks) -> Result<(), DiffError> {
    match overlay_upperdir(mounts) {
        Some(upper) => {
            unpack(stream, &upper, WhiteoutMode::Overlay)?;
        }
        None => {
            with_temp_mount(&store.temp_dir(), mounts, false, |root| {
                Ok(unpack(&mut *stream, root, WhiteoutMode::Delete)?)
            })?;
        }
    }
    Ok(())
}

/// The decompressing side: reads `layer` to its end in `CHUNK`-sized buffers, hashing what it
/// reads, and sends them. Returns the uncompressed digest and size; `None` if it stopped early,
/// after sending its read error (so the extractor fails with the decompressor's own message) or
/// because the extractor went away.
fn inflate(
    layer: impl Read,
    full: &SyncSender<io::Result<Vec<u8>>>,
    empty: &Receiver<Vec<u8>>,
) -> Option<(String, u64)> {
    let mut stream = Digesting::new(layer);
    loop {
        let mut buf = empty.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        match read_full(&mut stream, &mut buf) {
            Ok(0) => return Some((stream.digest(), stream.size)),
            Ok(n) => {
                buf.truncate(n);
                full.send(Ok(buf)).ok()?;
            }
            Err(e) => {
                let _ = full.send(Err(e));
                return None;
            }
        }
    }
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The extracting side's view of the channel: a reader over the buffers received, each given
/// back once consumed. The stream ends when the sender is gone; a read error of the
/// decompressor comes out as this reader's error.
struct Chunks {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl Chunks {
    fn new(full: Receiver<io::Result<Vec<u8>>>, empty: Sender<Vec<u8>>) -> Self {
        Self {
            full,
            empty,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            let next = match self.full.recv() {
                Ok(chunk) => chunk?,
                Err(mpsc::RecvError) => return Ok(0),
            };
            let done = std::mem::replace(&mut self.current, next);
            self.at = 0;
            // The inflater may have finished; then the buffer is simply freed.
            let _ = self.empty.send(done);
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `data` in odd-sized pieces, then fails if `fail` says so.
    struct Jagged {
        data: Vec<u8>,
        at: usize,
        fail: bool,
    }

    impl Read for Jagged {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "corrupt deflate",
                    ))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn through_channel(data: Vec<u8>, fail: bool) -> (io::Result<Vec<u8>>, Option<(String, u64)>) {
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = mpsc::sync_channel(IN_FLIGHT);
            let (empty_tx, empty_rx) = mpsc::channel();
            let source = Jagged { data, at: 0, fail };
            let producer = scope.spawn(move || inflate(source, &full_tx, &empty_rx));
            let mut out = Vec::new();
            let read = Chunks::new(full_rx, empty_tx)
                .read_to_end(&mut out)
                .map(|_| out);
            (read, producer.join().expect("inflater"))
        })
    }

    #[test]
    fn the_stream_arrives_whole_and_hashed() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut plain = Digesting::new(data.as_slice());
        io::copy(&mut plain, &mut io::sink()).expect("hash");
        let (read, done) = through_channel(data.clone(), false);
        assert!(read.expect("read") == data);
        assert_eq!(done, Some((plain.digest(), data.len() as u64)));
    }

    #[test]
    fn a_decompression_error_reaches_the_extractor() {
        let (read, done) = through_channel(vec![1u8; CHUNK + 10], true);
        let err = read.expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "corrupt deflate");
        assert_eq!(done, None);
    }

    #[test]
    fn pipelined_hashes_what_consume_left_and_passes_its_errors() {
        let data: Vec<u8> = (0..CHUNK + 77).map(|i| (i % 13) as u8).collect();
        let mut plain = Digesting::new(data.as_slice());
        io::copy(&mut plain, &mut io::sink()).expect("hash");
        let mut head = [0u8; 10];
        let done = pipelined(data.as_slice(), |s| {
            s.read_exact(&mut head).map_err(DiffError::io("head"))
        })
        .expect("pipelined");
        assert_eq!(done, (plain.digest(), data.len() as u64));
        assert_eq!(head, data[..10]);
        let err = pipelined(data.as_slice(), |_| {
            Err(DiffError::InvalidArgument("refused".into()))
        })
        .expect_err("consume failed");
        assert!(matches!(err, DiffError::InvalidArgument(_)), "{err}");
        let broken = Jagged {
            data: vec![1; 100],
            at: 0,
            fail: true,
        };
        let err = pipelined(broken, |s| {
            io::copy(s, &mut io::sink())
                .map(drop)
                .map_err(DiffError::io("reading the layer"))
        })
        .expect_err("read error");
        assert_eq!(err.to_string(), "reading the layer: corrupt deflate");
    }

    #[test]
    fn an_extractor_that_stops_stops_the_inflater() {
        let outcome = std::thread::scope(|scope| {
            let (full_tx, full_rx) = mpsc::sync_channel(IN_FLIGHT);
            let (empty_tx, empty_rx) = mpsc::channel();
            let source = Jagged {
                data: vec![0u8; 64 * CHUNK],
                at: 0,
                fail: false,
            };
            let producer = scope.spawn(move || inflate(source, &full_tx, &empty_rx));
            let mut chunks = Chunks::new(full_rx, empty_tx);
            let mut first = [0u8; 16];
            chunks.read_exact(&mut first).expect("first bytes");
            drop(chunks);
            producer.join().expect("inflater")
        });
        assert_eq!(outcome, None);
    }
}

//! The content store's files: blobs addressed by their digest under
//! `<dir>/blobs/sha256/<hex>`, and ingests (writes in progress, resumable by ref) under
//! `<dir>/ingest/<sha256 of the ref>/{data,ref,total,expected}` (containerd's `content/local`
//! layout, `<dir>` being `<root>/io.containerd.content.v1.content`). A blob appears under
//! its digest only after the bytes written hash to it (and have the expected size): it is
//! written in the ingest dir and renamed into place, so a reader never sees half a blob.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Why a content operation failed; the kinds map to containerd's errdefs.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another writer holds the ingest (containerd's "ref ... locked").
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    OutOfRange(String),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Storage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, ContentError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContentError {
    let what = what.into();
    move |source| ContentError::Io { what, source }
}

/// A `sha256:<64 hex>` digest, checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentDigest(String);

impl ContentDigest {
    /// Parses `sha256:<64 lowercase hex>`; other algorithms and malformed digests are refused.
    pub fn parse(text: &str) -> Result<Self> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| {
            ContentError::InvalidArgument(format!("digest {text:?}: only sha256 is supported"))
        })?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(ContentError::InvalidArgument(format!(
                "digest {text:?} is malformed"
            )));
        }
        Ok(Self(text.to_string()))
    }

    /// The digest of what `hasher` has seen.
    pub fn of(hasher: Sha256) -> Self {
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(format!("sha256:{hex}"))
    }

    fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The blob and ingest files under `<root>/content`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An ingest's progress: bytes so far and the total announced (0 if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub reference: String,
    pub offset: u64,
    pub total: u64,
    pub expected: Option<ContentDigest>,
    /// When the ingest began (its `ref` file was written).
    pub started_at: SystemTime,
    /// When its data last changed.
    pub updated_at: SystemTime,
}

impl Store {
    /// The store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let root = dir.to_path_buf();
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        Ok(Self { root })
    }

    /// Where the blob with `digest` lives (it may not exist).
    pub fn blob_path(&self, digest: &ContentDigest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &ContentDigest) -> Result<u64> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(digest)),
            Err(e) => Err(io_err(format!("stat of {}", digest.as_str()))(e)),
        }
    }

    /// Reads `len` bytes (all if 0) of a blob from `offset`.
    pub fn read(&self, digest: &ContentDigest, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut file = File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(digest),
            _ => io_err(format!("opening {}", digest.as_str()))(e),
        })?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err("seeking"))?;
        let mut out = Vec::new();
        let reader: &mut dyn Read = &mut file;
        if len == 0 {
            reader.read_to_end(&mut out).map_err(io_err("reading"))?;
        } else {
            reader
                .take(len)
                .read_to_end(&mut out)
                .map_err(io_err("reading"))?;
        }
        Ok(out)
    }

    /// The digests of every stored blob (files not named as a sha256 digest are skipped).
    pub fn blobs(&self) -> Result<Vec<ContentDigest>> {
        let dir = self.root.join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(io_err("listing the blobs"))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                ContentDigest::parse(&format!("sha256:{}", name.to_str()?)).ok()
            })
            .collect())
    }

    /// Deletes a blob.
    pub fn delete(&self, digest: &ContentDigest) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(digest)),
            Err(e) => Err(io_err(format!("deleting {}", digest.as_str()))(e)),
        }
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        let hex: String = Sha256::digest(reference.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.root.join("ingest").join(hex)
    }

    /// Starts or resumes the ingest `reference`; `total` and `expected`, if given, are kept for
    /// the commit.
    pub fn begin(
        &self,
        reference: &str,
        total: u64,
        expected: Option<&ContentDigest>,
    ) -> Result<IngestStatus> {
        if reference.is_empty() {
            return Err(ContentError::InvalidArgument(
                "an ingest needs a ref".into(),
            ));
        }
        let dir = self.ingest_dir(reference);
        fs::create_dir_all(&dir).map_err(io_err(format!("creating ingest {reference:?}")))?;
        if !dir.join("ref").exists() {
            fs::write(dir.join("ref"), reference).map_err(io_err("writing the ingest ref"))?;
        }
        if total > 0 {
            fs::write(dir.join("total"), total.to_string())
                .map_err(io_err("writing the ingest total"))?;
        }
        if let Some(d) = expected {
            fs::write(dir.join("expected"), d.as_str())
                .map_err(io_err("writing the expected digest"))?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("data"))
            .map_err(io_err("opening the ingest data"))?;
        self.status(reference)
    }

    /// Marks ingest `reference` as begun under no lease: the collector keeps such an ingest
    /// for a while by itself (containerd's ingest `expireAt`), a leased one only through its
    /// lease.
    pub fn mark_unleased(&self, reference: &str) -> Result<()> {
        fs::write(self.ingest_dir(reference).join("unleased"), "")
            .map_err(io_err("marking the ingest unleased"))
    }

    /// Whether ingest `reference` was begun under no lease (see [`Store::mark_unleased`]).
    pub fn is_unleased(&self, reference: &str) -> bool {
        self.ingest_dir(reference).join("unleased").exists()
    }

    /// Where ingest `reference` stands.
    pub fn status(&self, reference: &str) -> Result<IngestStatus> {
        let dir = self.ingest_dir(reference);
        let (offset, updated_at) = match fs::metadata(dir.join("data")) {
            Ok(m) => (m.len(), m.modified().unwrap_or_else(|_| SystemTime::now())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::NotFound(format!(
                    "ingest {reference:?} not found"
                )))
            }
            Err(e) => return Err(io_err("stat of the ingest data")(e)),
        };
        let total = fs::read_to_string(dir.join("total"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let expected = fs::read_to_string(dir.join("expected"))
            .ok()
            .and_then(|t| ContentDigest::parse(t.trim()).ok());
        let started_at = fs::metadata(dir.join("ref"))
            .and_then(|m| m.modified())
            .unwrap_or(updated_at);
        Ok(IngestStatus {
            reference: reference.to_string(),
            offset,
            total,
            expected,
            started_at,
            updated_at,
        })
    }

    /// Every ingest in the store (whatever its ref), skipping ones half made or half removed.
    pub fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let dir = self.root.join("ingest");
        let entries = fs::read_dir(&dir).map_err(io_err("listing the ingests"))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Ok(reference) = fs::read_to_string(entry.path().join("ref")) else {
                continue;
            };
            if let Ok(status) = self.status(&reference) {
                out.push(status);
            }
        }
        Ok(out)
    }

    /// Drops what ingest `reference` holds so far: a writer that restarts at offset 0.
    pub fn truncate(&self, reference: &str) -> Result<()> {
        self.status(reference)?;
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.ingest_dir(reference).join("data"))
            .map(drop)
            .map_err(io_err("truncating the ingest data"))
    }

    /// Moves a finished file (on the store's filesystem) in as a blob, returning its digest and
    /// size; if the blob is already there the file is removed instead.
    pub fn adopt(&self, file: &Path) -> Result<(ContentDigest, u64)> {
        let mut hasher = Sha256::new();
        let mut f = File::open(file).map_err(io_err(format!("opening {}", file.display())))?;
        let size =
            io::copy(&mut f, &mut hasher).map_err(io_err(format!("hashing {}", file.display())))?;
        f.sync_all().map_err(io_err("syncing the new blob"))?;
        let digest = ContentDigest::of(hasher);
        let blob = self.blob_path(&digest);
        if blob.exists() {
            fs::remove_file(file).map_err(io_err(format!("removing {}", file.display())))?;
        } else {
            fs::rename(file, &blob)
                .map_err(io_err(format!("moving {} into place", digest.as_str())))?;
        }
        Ok((digest, size))
    }

    /// Writes `data` at `offset` of ingest `reference`: the offset must be where the ingest
    /// stands (a client resuming after a break sends from there).
    pub fn write(&self, reference: &str, offset: u64, data: &[u8]) -> Result<u64> {
        let status = self.status(reference)?;
        if offset != status.offset {
            return Err(ContentError::OutOfRange(format!(
                "write @{offset} must occur at current offset {}",
                status.offset
            )));
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.ingest_dir(reference).join("data"))
            .map_err(io_err("opening the ingest data"))?;
        file.write_all(data)
            .map_err(io_err("writing the ingest data"))?;
        Ok(offset + data.len() as u64)
    }

    /// Commits ingest `reference`: its bytes must have `size` (if not 0) and hash to
    /// `expected` (if given, else the one given at `begin`). The blob is renamed into place;
    /// if a blob with that digest exists, it is kept and the ingest dropped.
    pub fn commit(
        &self,
        reference: &str,
        size: u64,
        expected: Option<&ContentDigest>,
    ) -> Result<ContentDigest> {
        let status = self.status(reference)?;
        let dir = self.ingest_dir(reference);
        let data = dir.join("data");
        if size > 0 && status.offset != size {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit size {}, expected {size}",
                status.offset
            )));
        }
        let mut hasher = Sha256::new();
        let mut file = File::open(&data).map_err(io_err("opening the ingest data"))?;
        io::copy(&mut file, &mut hasher).map_err(io_err("hashing the ingest data"))?;
        let digest = ContentDigest::of(hasher);
        if let Some(want) = expected.or(status.expected.as_ref()) {
            if *want != digest {
                return Err(ContentError::FailedPrecondition(format!(
                    "unexpected commit digest {}, expected {}",
                    digest.as_str(),
                    want.as_str()
                )));
            }
        }
        let blob = self.blob_path(&digest);
        if blob.exists() {
            // Same digest, same bytes: the blob there is as good (the metadata decides whether
            // this namespace already had it).
            let _ = fs::remove_dir_all(&dir);
            return Ok(digest);
        }
        File::open(&data)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing the ingest data"))?;
        fs::rename(&data, &blob)
            .map_err(io_err(format!("moving {} into place", digest.as_str())))?;
        let _ = fs::remove_dir_all(&dir);
        Ok(digest)
    }

    /// Opens the begun ingest `reference` for writing: the data file stays open and the bytes
    /// already there (a resumed ingest) are hashed once, so that each write only appends and
    /// hashes what it brings, and the commit neither reopens nor re-reads the data.
    pub fn open_ingest(&self, reference: &str) -> Result<OpenIngest> {
        self.status(reference)?;
        let path = self.ingest_dir(reference).join("data");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err("opening the ingest data"))?;
        let mut hasher = Sha256::new();
        let offset =
            io::copy(&mut &file, &mut hasher).map_err(io_err("hashing the ingest data"))?;
        Ok(OpenIngest {
            reference: reference.to_string(),
            path,
            file,
            offset,
            hasher,
            written_back: offset,
        })
    }

    /// Commits the open ingest `ingest`, as [`Store::commit`] does but with the digest it
    /// computed on the way. NotFound if the ingest was aborted meanwhile.
    pub fn commit_open(
        &self,
        ingest: &OpenIngest,
        size: u64,
        expected: Option<&ContentDigest>,
    ) -> Result<ContentDigest> {
        let status = self.status(&ingest.reference)?;
        if !ingest.is_current()? || status.offset != ingest.offset {
            return Err(ContentError::NotFound(format!(
                "ingest {:?} not found",
                ingest.reference
            )));
        }
        if size > 0 && ingest.offset != size {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit size {}, expected {size}",
                ingest.offset
            )));
        }
        let digest = ContentDigest::of(ingest.hasher.clone());
        if let Some(want) = expected.or(status.expected.as_ref()) {
            if *want != digest {
                return Err(ContentError::FailedPrecondition(format!(
                    "unexpected commit digest {}, expected {}",
                    digest.as_str(),
                    want.as_str()
                )));
            }
        }
        let dir = self.ingest_dir(&ingest.reference);
        let blob = self.blob_path(&digest);
        if blob.exists() {
            let _ = fs::remove_dir_all(&dir);
            return Ok(digest);
        }
        // Most of it is on disk already (see `OpenIngest::write`): this waits for the tail.
        ingest
            .file
            .sync_all()
            .map_err(io_err("syncing the ingest data"))?;
        fs::rename(&ingest.path, &blob)
            .map_err(io_err(format!("moving {} into place", digest.as_str())))?;
        let _ = fs::remove_dir_all(&dir);
        Ok(digest)
    }

    /// Drops ingest `reference`.
    pub fn abort(&self, reference: &str) -> Result<()> {
        self.status(reference)?;
        fs::remove_dir_all(self.ingest_dir(reference))
            .map_err(io_err(format!("removing ingest {reference:?}")))
    }
}

/// How much data an open ingest accumulates before its writeback is started: the commit's
/// fsync then finds most of a large blob already written.
const WRITEBACK_STEP: u64 = 8 << 20;

/// An ingest open for writing (see [`Store::open_ingest`]).
#[derive(Debug)]
pub struct OpenIngest {
    reference: String,
    path: PathBuf,
    file: File,
    offset: u64,
    /// Of every byte of the data file, in order.
    hasher: Sha256,
    /// Up to where writeback has been started.
    written_back: u64,
}

impl OpenIngest {
    /// The bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends `data` at `offset`, which must be where the ingest stands; returns the new
    /// offset.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        if offset != self.offset {
            return Err(ContentError::OutOfRange(format!(
                "write @{offset} must occur at current offset {}",
                self.offset
            )));
        }
        self.file
            .write_all(data)
            .map_err(io_err("writing the ingest data"))?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        if self.offset - self.written_back >= WRITEBACK_STEP {
            // Only a hint: a failure here shows up at the commit's fsync.
            let _ = start_writeback(&self.file, self.written_back, self.offset);
            self.written_back = self.offset;
        }
        Ok(self.offset)
    }

    /// Drops what the ingest holds: a writer that starts over at offset 0.
    pub fn truncate(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(io_err("truncating the ingest data"))?;
        self.hasher = Sha256::new();
        self.offset = 0;
        self.written_back = 0;
        Ok(())
    }

    /// Whether the ingest's data file is still the one this handle writes (not aborted, and
    /// not begun again since).
    fn is_current(&self) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let open = self
            .file
            .metadata()
            .map_err(io_err("stat of the ingest data"))?;
        Ok(match fs::metadata(&self.path) {
            Ok(named) => named.dev() == open.dev() && named.ino() == open.ino(),
            Err(_) => false,
        })
    }
}

/// Starts writing back `[from, to)` of `file` without waiting for it (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`), so the data trickles to disk while more arrives instead of all
/// at the commit.
#[allow(unsafe_code)]
fn start_writeback(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(to - from)) else {
        return Ok(());
    };
    // SAFETY: a plain syscall on a descriptor this function borrows; no memory is passed.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn not_found(digest: &ContentDigest) -> ContentError {
    ContentError::NotFound(format!("content {} not found", digest.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> ContentDigest {
        let mut h = Sha256::new();
        h.update(bytes);
        ContentDigest::of(h)
    }

    #[test]
    fn digests_are_checked() {
        assert!(ContentDigest::parse(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha512:ab",
            "sha256:xyz",
            "sha256:",
            &format!("sha256:{}", "A".repeat(64)),
            "abc",
        ] {
            assert!(ContentDigest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resumed_ingest_commits_under_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let want = digest_of(b"hello world");
        store.begin("ref-1", 11, Some(&want)).unwrap();
        assert_eq!(store.write("ref-1", 0, b"hello ").unwrap(), 6);
        // A client that lost its connection asks where the ingest stands and resumes there.
        let again = store.begin("ref-1", 11, Some(&want)).unwrap();
        assert_eq!(again.offset, 6);
        assert!(matches!(
            store.write("ref-1", 2, b"x"),
            Err(ContentError::OutOfRange(_))
        ));
        store.write("ref-1", 6, b"world").unwrap();
        assert!(
            !store.blob_path(&want).exists(),
            "nothing visible before the commit"
        );
        assert_eq!(store.commit("ref-1", 11, None).unwrap(), want);
        assert_eq!(store.read(&want, 6, 0).unwrap(), b"world");
        assert_eq!(store.read(&want, 0, 5).unwrap(), b"hello");
        assert_eq!(store.size(&want).unwrap(), 11);
        assert!(matches!(
            store.status("ref-1"),
            Err(ContentError::NotFound(_))
        ));
    }

    #[test]
    fn a_wrong_digest_or_size_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wrong = digest_of(b"other");
        store.begin("r", 0, None).unwrap();
        store.write("r", 0, b"data").unwrap();
        let err = store.commit("r", 0, Some(&wrong)).unwrap_err();
        assert!(matches!(err, ContentError::FailedPrecondition(_)), "{err}");
        assert!(!store.blob_path(&digest_of(b"data")).exists());
        let err = store.commit("r", 10, None).unwrap_err();
        assert!(
            err.to_string().contains("unexpected commit size 4"),
            "{err}"
        );
        store.abort("r").unwrap();
        assert!(matches!(store.abort("r"), Err(ContentError::NotFound(_))));
    }

    #[test]
    fn an_open_ingest_hashes_as_it_writes_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let want = digest_of(b"hello world");
        store.begin("r", 11, Some(&want)).unwrap();
        store.write("r", 0, b"hello").unwrap();
        // Resumed: the bytes already there are hashed on open.
        let mut ingest = store.open_ingest("r").unwrap();
        assert_eq!(ingest.offset(), 5);
        assert!(matches!(
            ingest.write(3, b"x"),
            Err(ContentError::OutOfRange(_))
        ));
        assert_eq!(ingest.write(5, b" world").unwrap(), 11);
        assert_eq!(store.status("r").unwrap().offset, 11);
        let err = store.commit_open(&ingest, 12, None).unwrap_err();
        assert!(matches!(err, ContentError::FailedPrecondition(_)), "{err}");
        assert_eq!(store.commit_open(&ingest, 11, None).unwrap(), want);
        assert_eq!(store.read(&want, 0, 0).unwrap(), b"hello world");
        assert!(store.ingests().unwrap().is_empty());
    }

    #[test]
    fn an_open_ingest_truncates_checks_digests_and_notices_an_abort() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.begin("r", 0, None).unwrap();
        let mut ingest = store.open_ingest("r").unwrap();
        // Past the writeback step, so that path runs too.
        let big = vec![3u8; (WRITEBACK_STEP + 1) as usize];
        ingest.write(0, &big).unwrap();
        ingest.truncate().unwrap();
        assert_eq!(store.status("r").unwrap().offset, 0);
        ingest.write(0, b"data").unwrap();
        let wrong = digest_of(b"other");
        let err = store.commit_open(&ingest, 0, Some(&wrong)).unwrap_err();
        assert!(
            err.to_string().contains("unexpected commit digest"),
            "{err}"
        );
        assert!(!store.blob_path(&digest_of(b"data")).exists());
        store.abort("r").unwrap();
        store.begin("r", 0, None).unwrap();
        let err = store.commit_open(&ingest, 0, None).unwrap_err();
        assert!(matches!(err, ContentError::NotFound(_)), "{err}");
        assert!(!store.blob_path(&digest_of(b"data")).exists());
        assert!(matches!(
            store.open_ingest("missing"),
            Err(ContentError::NotFound(_))
        ));
    }

    #[test]
    fn committing_existing_content_keeps_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for reference in ["a", "b"] {
            store.begin(reference, 0, None).unwrap();
            store.write(reference, 0, b"same").unwrap();
        }
        let d = digest_of(b"same");
        assert_eq!(store.commit("a", 0, None).unwrap(), d);
        assert_eq!(store.commit("b", 0, None).unwrap(), d);
        assert!(store.ingests().unwrap().is_empty());
        store.delete(&d).unwrap();
        assert!(matches!(store.delete(&d), Err(ContentError::NotFound(_))));
        assert!(matches!(
            store.read(&d, 0, 0),
            Err(ContentError::NotFound(_))
        ));
    }
}

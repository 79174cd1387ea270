//! Copying a process's output to where containerd reads it, and telling when what the process
//! wrote has reached that reader.
//!
//! containerd 1.6's client (`ctr run`, `task.Delete`) closes its FIFOs as soon as the task's
//! exit is reported, so output still in the container's pipe, in the shim's hands or unread in
//! the FIFO at that moment is lost. The shim therefore reports an exit only once the output
//! has settled (see [`Output::settled`]).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{CHUNK, POLL, READER_PATIENCE};
use crate::console::Master;

nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// Bytes waiting to be read in a pipe, FIFO or terminal master.
fn unread(fd: BorrowedFd<'_>) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid for the call; the fd
    // is borrowed, so it stays open meanwhile.
    match unsafe { fionread(fd.as_raw_fd(), &mut n) } {
        Ok(_) => usize::try_from(n).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Where output goes: a FIFO (opened read-write, so it neither blocks on open nor fails when
/// the reader goes away) or a plain file for `file://` URIs.
pub enum Sink {
    Fifo(pipe::Sender),
    File(File),
}

impl Sink {
    pub fn open(target: &str) -> io::Result<Self> {
        if let Some(path) = target.strip_prefix("file://") {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            return Ok(Sink::File(file));
        }
        if target.contains("://") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("stdio URI {target:?}: only FIFO paths and file:// are supported"),
            ));
        }
        pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(target)
            .map(Sink::Fifo)
    }

    async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(f) => (&*f).write_all(buf),
            Sink::Fifo(tx) => {
                while !buf.is_empty() {
                    tx.writable().await?;
                    match tx.try_write(buf) {
                        Ok(n) => buf = &buf[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    /// What the reader has not read yet (a file has no reader to wait for).
    fn backlog(&self) -> usize {
        match self {
            Sink::Fifo(tx) => unread(tx.as_fd()),
            Sink::File(_) => 0,
        }
    }
}

/// Where output comes from: the shim's end of the container's pipe, or a terminal's master.
pub enum Source {
    Pipe(pipe::Receiver),
    Terminal(Arc<Master>),
}

impl Source {
    /// The next chunk; 0 at the end (a terminal's EIO, once no process holds its other side,
    /// is its end).
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Pipe(rx) => loop {
                rx.readable().await?;
                match rx.try_read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            Source::Terminal(master) => match master.read(buf).await {
                Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
                other => other,
            },
        }
    }

    fn unread(&self) -> usize {
        match self {
            Source::Pipe(rx) => unread(rx.as_fd()),
            Source::Terminal(master) => unread(master.as_fd()),
        }
    }
}

/// How far one output's copy has got.
#[derive(Debug, Default)]
struct Progress {
    /// The copy has ended: end of file, or an error.
    done: AtomicBool,
    /// A chunk has been read from the source and not all written to the sink yet.
    holding: AtomicBool,
    /// Bytes written to the sink.
    moved: AtomicU64,
}

/// One output being copied. Holds its source and sink weakly, so they close when the copy
/// ends.
pub struct Output {
    source: Weak<Source>,
    sink: Weak<Sink>,
    progress: Arc<Progress>,
}

/// Where an output stands: settled, or a mark that changes whenever it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Settled,
    Moving { moved: u64, backlog: usize },
}

impl Output {
    /// Starts copying `source` to `sink` until the source ends.
    pub fn start(source: Source, sink: Sink) -> (Self, JoinHandle<()>) {
        let (source, sink) = (Arc::new(source), Arc::new(sink));
        let progress = Arc::new(Progress::default());
        let output = Self {
            source: Arc::downgrade(&source),
            sink: Arc::downgrade(&sink),
            progress: progress.clone(),
        };
        (output, tokio::spawn(copy(source, sink, progress)))
    }

    /// Settled once nothing is left in the source, in the shim's hands or unread in the sink
    /// (all a process wrote before it exited has been read), or once the copy has ended
    /// (which waits for the sink's reader too).
    pub fn standing(&self) -> Standing {
        let p = &self.progress;
        if p.done.load(Ordering::Acquire) {
            return Standing::Settled;
        }
        // The source is gone once it has ended; the sink once the copy has.
        let unread = self.source.upgrade().map_or(0, |s| s.unread());
        let backlog = self.sink.upgrade().map_or(0, |s| s.backlog());
        if unread == 0 && !p.holding.load(Ordering::Acquire) && backlog == 0 {
            return Standing::Settled;
        }
        Standing::Moving {
            moved: p.moved.load(Ordering::Acquire),
            backlog,
        }
    }
}

/// Copies until the source ends; says why it stopped and after how many bytes (an early stop
/// is output lost).
async fn copy(source: Arc<Source>, sink: Arc<Sink>, progress: Arc<Progress>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let copied = progress.moved.load(Ordering::Relaxed);
        let n = match source.read(&mut buf).await {
            Ok(0) => {
                tracing::debug!(copied, "output copied to its end");
                break;
            }
            Err(e) => {
                tracing::warn!(copied, "reading the container's output: {e}");
                break;
            }
            Ok(n) => n,
        };
        progress.holding.store(true, Ordering::Release);
        if let Err(e) = sink.write_all(&buf[..n]).await {
            tracing::warn!(copied, "copying output: {e}");
            break;
        }
        progress.moved.fetch_add(n as u64, Ordering::Release);
        progress.holding.store(false, Ordering::Release);
    }
    drop(source);
    linger(&sink).await;
    progress.done.store(true, Ordering::Release);
}

/// Keeps the sink open until its reader has read what is in it, or has read nothing for
/// [`READER_PATIENCE`]: an exit is reported only after that (see the module's comment), and
/// the reader's end of file comes when the sink closes.
async fn linger(sink: &Sink) {
    let mut last = sink.backlog();
    let mut since = Instant::now();
    while last > 0 {
        tokio::time::sleep(POLL).await;
        let now = sink.backlog();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= READER_PATIENCE {
            tracing::warn!(
                unread = now,
                "output's reader stopped reading; closing anyway"
            );
            return;
        }
    }
}

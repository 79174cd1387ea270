//! A process's stdio as containerd gives it (FIFO paths, `file://` URIs, or a terminal) and the
//! pipes between the container and the shim. The container gets one end of a pipe per stream;
//! the shim copies between the other end and the FIFOs, so a slow or absent reader only makes
//! the container wait (nothing is dropped), and a reader going away never kills it with EPIPE.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::console::Master;

/// The stdio of a process, as named in containerd's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The container's ends of the pipes, to become the runtime command's stdio.
#[derive(Debug, Default)]
pub struct ContainerEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// The shim's ends of the pipes.
#[derive(Debug, Default)]
pub struct ShimEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// A pipe per named stream (none with a terminal: the terminal carries them).
pub fn pipes(paths: &StdioPaths) -> io::Result<(ContainerEnds, ShimEnds)> {
    let mut container = ContainerEnds::default();
    let mut shim = ShimEnds::default();
    if paths.terminal {
        return Ok((container, shim));
    }
    if !paths.stdin.is_empty() {
        let (r, w) = pipe()?;
        (container.stdin, shim.stdin) = (Some(r), Some(w));
    }
    if !paths.stdout.is_empty() {
        let (r, w) = pipe()?;
        (container.stdout, shim.stdout) = (Some(w), Some(r));
    }
    if !paths.stderr.is_empty() {
        let (r, w) = pipe()?;
        (container.stderr, shim.stderr) = (Some(w), Some(r));
    }
    Ok((container, shim))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

impl ContainerEnds {
    /// Makes these the command's stdin, stdout and stderr (`/dev/null` where there is none).
    /// The command owns them afterwards, so the shim keeps no copy of the container's ends.
    pub fn apply(self, cmd: &mut Command) {
        let or_null = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::null, Stdio::from);
        cmd.stdin(or_null(self.stdin))
            .stdout(or_null(self.stdout))
            .stderr(or_null(self.stderr));
    }
}

/// The containerd side of a process's stdio, opened before the process is created so a bad
/// path fails the request before anything exists.
pub struct Endpoints {
    stdin: Option<pipe::Receiver>,
    stdout: Option<Sink>,
    stderr: Option<Sink>,
}

impl Endpoints {
    /// Opens the stdin FIFO for reading and the output FIFOs (or files) for writing; a terminal
    /// has no separate stderr.
    pub fn open(paths: &StdioPaths) -> io::Result<Self> {
        let stdin = named(&paths.stdin).map(open_fifo_reader).transpose()?;
        let stdout = named(&paths.stdout).map(Sink::open).transpose()?;
        let stderr = match paths.terminal {
            true => None,
            false => named(&paths.stderr).map(Sink::open).transpose()?,
        };
        Ok(Self {
            stdin,
            stdout,
            stderr,
        })
    }
}

/// The copying of one process's stdio, running on the shim's runtime.
#[derive(Debug, Default)]
pub struct Copying {
    close_stdin: Arc<Notify>,
    outputs: Mutex<Vec<JoinHandle<()>>>,
    master: Option<Arc<Master>>,
}

impl Copying {
    /// Starts copying between the endpoints and the shim's pipe ends, or the terminal's master.
    pub fn start(endpoints: Endpoints, ends: ShimEnds, master: Option<Master>) -> io::Result<Self> {
        let mut outputs = Vec::new();
        let master = master.map(Arc::new);
        let close_stdin = Arc::new(Notify::new());
        if let Some(master) = &master {
            if let Some(source) = endpoints.stdin {
                tokio::spawn(copy_stdin_to_master(
                    source,
                    master.clone(),
                    close_stdin.clone(),
                ));
            }
            if let Some(sink) = endpoints.stdout {
                outputs.push(tokio::spawn(copy_master_out(master.clone(), sink)));
            }
        } else {
            if let (Some(fd), Some(source)) = (ends.stdin, endpoints.stdin) {
                let sink = pipe::Sender::from_owned_fd(fd)?;
                tokio::spawn(copy_stdin(source, sink, close_stdin.clone()));
            }
            for (fd, sink) in [
                (ends.stdout, endpoints.stdout),
                (ends.stderr, endpoints.stderr),
            ] {
                if let (Some(fd), Some(sink)) = (fd, sink) {
                    let source = pipe::Receiver::from_owned_fd(fd)?;
                    outputs.push(tokio::spawn(copy_out(source, sink)));
                }
            }
        }
        Ok(Self {
            close_stdin,
            outputs: Mutex::new(outputs),
            master,
        })
    }

    /// CloseIO: the container reads end of file once what was written to the stdin FIFO
    /// before has been copied (ctr closes its writer and sends CloseIO with its last bytes
    /// still in the FIFO: they must reach the container), even if a writer is still open.
    pub fn close_stdin(&self) {
        self.close_stdin.notify_one();
    }

    /// The terminal's master, if the process has one.
    pub fn master(&self) -> Option<&Master> {
        self.master.as_deref()
    }

    /// Waits, up to `limit`, until the container's output has all been copied (its write ends
    /// are closed once every process holding them has exited).
    pub async fn drain(&self, limit: Duration) {
        let handles: Vec<_> = self
            .outputs
            .lock()
            .map(|mut o| o.drain(..).collect())
            .unwrap_or_default();
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("output still open after {limit:?}; not waiting for it");
        }
    }
}

fn named(path: &str) -> Option<&str> {
    (!path.is_empty()).then_some(path)
}

/// Opens the stdin FIFO for reading without blocking; reads wait for a writer, and end of file
/// comes once a writer has come and gone.
fn open_fifo_reader(path: &str) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new().open_receiver(path)
}

/// Where output goes: a FIFO (opened read-write, so it neither blocks on open nor fails when
/// the reader goes away) or a plain file for `file://` URIs.
enum Sink {
    Fifo(pipe::Sender),
    File(File),
}

impl Sink {
    fn open(target: &str) -> io::Result<Self> {
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

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Fifo(tx) => tx.write_all(buf).await,
            Sink::File(f) => f.write_all(buf),
        }
    }
}

const CHUNK: usize = 32 * 1024;

/// Copies until the container's end is closed; says why it stopped and after how many bytes
/// (an early stop is output lost).
async fn copy_out(mut source: pipe::Receiver, mut sink: Sink) {
    let mut buf = vec![0u8; CHUNK];
    let mut copied: u64 = 0;
    loop {
        match source.read(&mut buf).await {
            Ok(0) => {
                tracing::debug!(copied, "output copied to its end");
                return;
            }
            Err(e) => {
                tracing::warn!(copied, "reading the container's output: {e}");
                return;
            }
            Ok(n) => {
                if let Err(e) = sink.write_all(&buf[..n]).await {
                    tracing::warn!(copied, "copying output: {e}");
                    return;
                }
                copied += n as u64;
            }
        }
    }
}

/// Reads the next chunk of stdin: waits for data until CloseIO, then only takes what is
/// already there. `None` at the end.
async fn next_stdin_chunk(
    source: &mut pipe::Receiver,
    buf: &mut [u8],
    close: &Notify,
    closing: &mut bool,
) -> Option<usize> {
    loop {
        if *closing {
            return source.try_read(buf).ok().filter(|n| *n > 0);
        }
        tokio::select! {
            read = source.read(buf) => return read.ok().filter(|n| *n > 0),
            () = close.notified() => *closing = true,
        }
    }
}

async fn copy_stdin(mut source: pipe::Receiver, mut sink: pipe::Sender, close: Arc<Notify>) {
    let mut buf = vec![0u8; CHUNK];
    let mut closing = false;
    while let Some(n) = next_stdin_chunk(&mut source, &mut buf, &close, &mut closing).await {
        if sink.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Dropping the sink closes the container's stdin.
}

async fn copy_stdin_to_master(mut source: pipe::Receiver, master: Arc<Master>, close: Arc<Notify>) {
    let mut buf = vec![0u8; CHUNK];
    let mut closing = false;
    while let Some(n) = next_stdin_chunk(&mut source, &mut buf, &close, &mut closing).await {
        if master.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn copy_master_out(master: Arc<Master>, mut sink: Sink) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match master.read(&mut buf).await {
            // EIO: every process holding the terminal's other side has exited.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sink.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

//! A process's stdio as containerd gives it (FIFO paths, `file://` URIs, or a terminal) and the
//! pipes between the container and the shim. The container gets one end of a pipe per stream;
//! the shim copies between the other end and the FIFOs, so a slow or absent reader only makes
//! the container wait (nothing is dropped), and a reader going away never kills it with EPIPE.

mod output;

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::console::Master;
use output::{Output, Sink, Source, Standing};

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
#[derive(Default)]
pub struct Copying {
    close_stdin: Arc<Notify>,
    outputs: Vec<Output>,
    copies: Mutex<Vec<JoinHandle<()>>>,
    master: Option<Arc<Master>>,
}

impl std::fmt::Debug for Copying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copying")
            .field("outputs", &self.outputs.len())
            .field("terminal", &self.master.is_some())
            .finish_non_exhaustive()
    }
}

impl Copying {
    /// Starts copying between the endpoints and the shim's pipe ends, or the terminal's master.
    pub fn start(endpoints: Endpoints, ends: ShimEnds, master: Option<Master>) -> io::Result<Self> {
        let mut started = Vec::new();
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
                started.push(Output::start(Source::Terminal(master.clone()), sink));
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
                    started.push(Output::start(Source::Pipe(source), sink));
                }
            }
        }
        let (outputs, copies) = started.into_iter().unzip();
        Ok(Self {
            close_stdin,
            outputs,
            copies: Mutex::new(copies),
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
            .copies
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

    /// Waits until what the process wrote before it exited has been read from its FIFOs (or
    /// written to its files), so reporting the exit loses nothing; gives up once nothing has
    /// moved for [`READER_PATIENCE`] (a reader that went away). Processes still holding the
    /// output open do not hold this up: only what is already written counts.
    pub async fn settle(&self) {
        let mut last = Vec::new();
        let mut quiet_since = Instant::now();
        let mut settled_before = false;
        loop {
            let now: Vec<Standing> = self.outputs.iter().map(Output::standing).collect();
            let settled = now.iter().all(|s| *s == Standing::Settled);
            // Twice in a row: a terminal's output reaches its master a moment after it is
            // written.
            if settled && (settled_before || self.master.is_none()) {
                return;
            }
            settled_before = settled;
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            } else if quiet_since.elapsed() >= READER_PATIENCE {
                tracing::warn!("output unread for {READER_PATIENCE:?}; reporting the exit anyway");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The size of one read from a stream.
const CHUNK: usize = 32 * 1024;

/// How often a copy's progress is looked at while waiting for a reader.
const POLL: Duration = Duration::from_millis(1);

/// How long output may sit unread before the shim stops waiting for its reader (which may
/// have gone away).
const READER_PATIENCE: Duration = Duration::from_secs(2);

fn named(path: &str) -> Option<&str> {
    (!path.is_empty()).then_some(path)
}

/// Opens the stdin FIFO for reading without blocking; reads wait for a writer, and end of file
/// comes once a writer has come and gone.
fn open_fifo_reader(path: &str) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new().open_receiver(path)
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

//! A container's stdio: FIFOs the shim writes the process's output into (and reads its input
//! from), and the copier that turns the output into the container's json-file log. The FIFOs
//! are opened read-write so that neither side's open blocks and a restarted engine can open
//! them again; the copier therefore never sees EOF and is told when the task has ended, then
//! reads until the FIFOs stay quiet.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::stat::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::json_log::{self, LineSplitter, Stream};

/// How long output must pause, once the task has ended, before the copier stops.
const QUIET: Duration = Duration::from_millis(100);

/// The FIFOs of one task, in `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fifos {
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    /// None with a terminal: its output is all on stdout.
    pub stderr: Option<PathBuf>,
}

impl Fifos {
    /// Makes the FIFOs (mode 0600) in `dir`, which must exist.
    pub fn create(dir: &Path, stdin: bool, tty: bool) -> io::Result<Self> {
        let make = |name: &str| -> io::Result<PathBuf> {
            let path = dir.join(name);
            match nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
                Err(e) => Err(io::Error::from(e)),
            }
        };
        Ok(Self {
            stdin: stdin.then(|| make("stdin")).transpose()?,
            stdout: make("stdout")?,
            stderr: (!tty).then(|| make("stderr")).transpose()?,
        })
    }

    /// The paths as the task API takes them (empty for none).
    pub fn paths(&self) -> (String, String, String) {
        let show = |p: Option<&PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        (
            show(self.stdin.as_ref()),
            show(Some(&self.stdout)),
            show(self.stderr.as_ref()),
        )
    }
}

/// Copies a task's output into its log until [`LogCopier::finish`].
#[derive(Debug)]
pub struct LogCopier {
    ended: watch::Sender<bool>,
    writer: JoinHandle<io::Result<()>>,
}

impl LogCopier {
    /// Starts copying `fifos`' output into the json-file log at `log` (appended to).
    pub async fn start(fifos: &Fifos, log: &Path) -> io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .await?;
        let (ended, ended_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(64);
        let mut sources = vec![(Stream::Stdout, &fifos.stdout)];
        sources.extend(fifos.stderr.as_ref().map(|p| (Stream::Stderr, p)));
        for (stream, path) in sources {
            let receiver = pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)?;
            tokio::spawn(read(receiver, stream, tx.clone(), ended_rx.clone()));
        }
        drop(tx);
        let writer = tokio::spawn(write(file, rx));
        Ok(Self { ended, writer })
    }

    /// The task has ended: copies what is still coming, then stops.
    pub async fn finish(self) -> io::Result<()> {
        let _ = self.ended.send(true);
        self.writer
            .await
            .map_err(|e| io::Error::other(format!("log writer: {e}")))?
    }
}

/// Reads one FIFO until the task has ended and the FIFO stays quiet.
async fn read(
    mut receiver: pipe::Receiver,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>, SystemTime)>,
    mut ended: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = if *ended.borrow() {
            match tokio::time::timeout(QUIET, receiver.read(&mut buf)).await {
                Ok(n) => n,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                n = receiver.read(&mut buf) => n,
                // The copier was dropped without finish(): nobody wants the rest.
                changed = ended.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            }
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send((stream, buf[..n].to_vec(), SystemTime::now()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Writes the records of both streams as they arrive.
async fn write(
    mut file: tokio::fs::File,
    mut rx: mpsc::Receiver<(Stream, Vec<u8>, SystemTime)>,
) -> io::Result<()> {
    let (mut out, mut err) = (LineSplitter::default(), LineSplitter::default());
    let mut last = SystemTime::now();
    while let Some((stream, data, at)) = rx.recv().await {
        let splitter = if stream == Stream::Stdout {
            &mut out
        } else {
            &mut err
        };
        let mut records = Vec::new();
        for piece in splitter.push(&data) {
            json_log::write_record(&mut records, stream, &piece, at)?;
        }
        file.write_all(&records).await?;
        last = at;
    }
    let mut records = Vec::new();
    for (stream, splitter) in [(Stream::Stdout, &mut out), (Stream::Stderr, &mut err)] {
        if let Some(piece) = splitter.finish() {
            json_log::write_record(&mut records, stream, &piece, last)?;
        }
    }
    file.write_all(&records).await?;
    file.flush().await
}

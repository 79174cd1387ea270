//! The test's ends of FIFOs: a task's output read in a thread ([`FifoReader`]), its stdin
//! written ([`open_writer`]), and the shim's log kept ([`LogReader`]).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::host;

/// Reads a FIFO in a thread until end of file, from `delay` on; keeps what it read.
#[derive(Debug, Clone)]
pub struct FifoReader {
    data: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
}

impl FifoReader {
    /// Starts reading `path` at once (the open waits for the shim to open its end).
    pub fn spawn(path: &str) -> Self {
        Self::spawn_after(path, Duration::ZERO)
    }

    /// Starts reading `path` after `delay`.
    pub fn spawn_after(path: &str, delay: Duration) -> Self {
        Self::read_in_thread(path, delay, 64 * 1024, Duration::ZERO)
    }

    /// Starts reading `path` at once, `chunk` bytes at a time with `pause` after each: a
    /// reader slower than the container writes.
    pub fn spawn_paced(path: &str, chunk: usize, pause: Duration) -> Self {
        Self::read_in_thread(path, Duration::ZERO, chunk, pause)
    }

    fn read_in_thread(path: &str, delay: Duration, chunk: usize, pause: Duration) -> Self {
        let reader = Self {
            data: Arc::new(Mutex::new(Vec::new())),
            done: Arc::new(AtomicBool::new(false)),
        };
        let (data, done, path) = (reader.data.clone(), reader.done.clone(), path.to_string());
        thread::spawn(move || {
            thread::sleep(delay);
            if let Ok(mut file) = File::open(&path) {
                let mut buf = vec![0u8; chunk];
                while let Ok(n @ 1..) = file.read(&mut buf) {
                    if let Ok(mut data) = data.lock() {
                        data.extend_from_slice(&buf[..n]);
                    }
                    thread::sleep(pause);
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        reader
    }

    /// What was read so far.
    pub fn so_far(&self) -> Vec<u8> {
        self.data.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Everything, once the writer closed its end (an error after `timeout`).
    pub fn wait(&self, timeout: Duration) -> Result<Vec<u8>> {
        if !host::wait_until(timeout, || self.done.load(Ordering::SeqCst)) {
            bail!(
                "no end of file within {timeout:?}; read so far: {:?}",
                String::from_utf8_lossy(&self.so_far())
            );
        }
        Ok(self.so_far())
    }

    /// [`FifoReader::wait`], as text.
    pub fn text(&self, timeout: Duration) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.wait(timeout)?).into_owned())
    }
}

/// Opens a FIFO the shim reads (a stdin) for writing; fails if the shim has not opened it.
pub fn open_writer(path: &str) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {path} for writing (is the shim reading it?)"))?;
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .context("making the stdin writer blocking")?;
    Ok(file)
}

/// Keeps what the shim writes to the bundle's `log` FIFO. Opened read-write, so it neither
/// waits for the daemon nor sees end of file between its writes.
#[derive(Debug)]
pub(super) struct LogReader {
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl LogReader {
    pub(super) fn spawn(path: &Path) -> Result<Self> {
        let mut fifo = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (keep, stopping) = (text.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while !stopping.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
                if !matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(1..)) {
                    continue;
                }
                while let Ok(n @ 1..) = fifo.read(&mut buf) {
                    if let Ok(mut text) = keep.lock() {
                        text.extend_from_slice(&buf[..n]);
                    }
                }
            }
        });
        Ok(Self {
            text,
            stop,
            thread: Some(thread),
        })
    }

    pub(super) fn text(&self) -> String {
        let bytes = self.text.lock().map(|t| t.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Terminals: the socket the runtime sends a terminal's master to (`--console-socket`), and the
//! master itself, read and written without blocking the shim, resized on ResizePty.
#![allow(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::cmsg_space;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::Winsize;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;

/// A listening socket for the runtime's `--console-socket`, removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds a new socket in `dir` (short, private paths: a unix socket path is at most 108
    /// bytes, a bundle path can be longer).
    pub fn bind(dir: &Path) -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("console-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(Self { path, listener })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master the runtime sent. Called once the runtime command has finished, so its
    /// connection is already queued: an empty queue means it sent none.
    pub fn receive(&self) -> io::Result<Master> {
        self.listener.set_nonblocking(true)?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| io::Error::new(e.kind(), format!("the runtime sent no terminal: {e}")))?;
        stream.set_nonblocking(false)?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let fd = msg
            .cmsgs()
            .map_err(io::Error::from)?
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .ok_or_else(|| io::Error::other("the runtime's console message carried no fd"))?;
        // SAFETY: the kernel just installed `fd` in this process for us (SCM_RIGHTS); nothing
        // else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Master::new(fd)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A terminal's master side.
#[derive(Debug)]
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

impl AsFd for Master {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl Master {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags =
            OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(io::Error::from)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        // SAFETY: the AsyncFd owns the master, whose fd stays open and the same until it is
        // dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Reads what the container wrote; `Err` (EIO) once no process holds the other side.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `buf` to the container's terminal.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal's size.
    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let size = Winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `Winsize` from the pointer, which is valid for the call.
        unsafe { set_winsize(self.fd.get_ref().as_raw_fd(), &size) }
            .map(drop)
            .map_err(io::Error::from)
    }
}

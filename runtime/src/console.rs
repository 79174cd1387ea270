//! `process.terminal`: a pty made inside the container; the master goes to the caller's
//! `--console-socket` (SCM_RIGHTS, as runc sends it), the slave becomes init's stdio and
//! controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::Box as ConsoleSize;

/// Errors with the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console: {what}: {source}")]
    Sys {
        what: &'static str,
        source: nix::Error,
    },
    #[error("console socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("process.terminal is true: --console-socket is required when the runtime does not stay attached")]
    SocketRequired,
}

pub type Result<T> = std::result::Result<T, ConsoleError>;

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ConsoleError {
    move |source| ConsoleError::Sys { what, source }
}

/// Opens a new pty through the container's `/dev/ptmx`: returns (master, slave).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(sys("ptsname"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    Ok((OwnedFd::from(master), slave))
}

/// Sets the window size of a pty.
pub fn set_size(fd: &impl AsFd, size: &ConsoleSize) -> Result<()> {
    let ws = nix::pty::Winsize {
        ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
        ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    set_winsize(fd.as_fd().as_raw_fd(), &ws)
}

#[allow(unsafe_code)]
fn set_winsize(fd: i32, ws: &nix::pty::Winsize) -> Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer for the call's duration.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws as *const nix::pty::Winsize) };
    nix::Error::result(r)
        .map(drop)
        .map_err(sys("set window size"))
}

/// Makes `slave` the stdio and controlling terminal of this (session leader) process.
pub fn make_controlling(slave: &OwnedFd) -> Result<()> {
    for target in 0..=2 {
        dup_to(slave, target)?;
    }
    set_controlling(slave.as_raw_fd())
}

fn dup_to(fd: &OwnedFd, target: i32) -> Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: dup2 onto a stdio number; the process owns both fds and no Rust object wraps 0-2.
    let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    nix::Error::result(r)
        .map(drop)
        .map_err(sys("dup2 pty slave"))
}

#[allow(unsafe_code)]
fn set_controlling(fd: i32) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument, no memory.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    nix::Error::result(r)
        .map(drop)
        .map_err(sys("set controlling terminal"))
}

/// Sends `master` to the unix socket at `path`, with the pty's name as the message, as runc does.
pub fn send_to_socket(path: &Path, master: &OwnedFd) -> Result<()> {
    let err = |source| ConsoleError::Socket {
        path: path.display().to_string(),
        source,
    };
    let sock = UnixStream::connect(path).map_err(err)?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| err(e.into()))?;
    Ok(())
}

//! The container's own network namespace starts with `lo` down; like runc, bring it up so
//! 127.0.0.1 works inside.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// Errors bringing up the loopback interface.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("bring up lo: {0}")]
    Sys(#[from] nix::Error),
}

pub type Result<T> = std::result::Result<T, NetworkError>;

/// Sets IFF_UP on `lo` in the current network namespace.
pub fn loopback_up() -> Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = ifreq_for(b"lo");
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    set_up_flag(&mut req);
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut req)
}

fn ifreq_for(name: &[u8]) -> libc::ifreq {
    // An all-zero ifreq is a valid value (empty name, zero union).
    let mut req = libc::ifreq {
        ifr_name: [0; libc::IFNAMSIZ],
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
    };
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    req
}

#[allow(unsafe_code)]
fn set_up_flag(req: &mut libc::ifreq) {
    // SAFETY: SIOCGIFFLAGS filled the union's flags member, the one we read and write.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
}

#[allow(unsafe_code)]
fn ioctl(sock: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> Result<()> {
    // SAFETY: both requests read/write one ifreq through a pointer valid for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    nix::Error::result(r).map(drop).map_err(NetworkError::from)
}

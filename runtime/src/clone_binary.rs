//! The runtime binary as the container's init is exec'ed from: never a path on the host that a
//! container could write.
//!
//! Why: a container process can reach the binary its init was exec'ed from through
//! `/proc/<pid>/exe` (or `#!/proc/self/exe`) and, once the runtime exits, open it for writing
//! (CVE-2019-5736). Init runs either from a detached read-only bind mount of the binary (no
//! copy: writes fail with EROFS, and the mount is in no namespace a container can remount), or,
//! where the kernel or privileges do not allow that, from a copy in a memfd sealed against
//! writes.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Errors making the protected binary.
#[derive(Debug, thiserror::Error)]
pub enum CloneBinaryError {
    #[error("copy of the runtime binary: {0}")]
    Io(#[from] std::io::Error),
    #[error("copy of the runtime binary: {0}")]
    Sys(#[from] nix::Error),
}

pub type Result<T> = std::result::Result<T, CloneBinaryError>;

/// An fd of the runtime binary that exec can use and nothing can write through.
pub fn protected_self() -> Result<OwnedFd> {
    readonly_mount_of_self().or_else(|_| sealed_copy())
}

/// A detached, read-only bind mount of `/proc/self/exe`.
fn readonly_mount_of_self() -> Result<OwnedFd> {
    let tree = open_tree_clone(c"/proc/self/exe")?;
    crate::mounts::make_readonly(&tree)?;
    Ok(tree)
}

#[allow(unsafe_code)]
fn open_tree_clone(path: &CStr) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree reads a NUL-terminated path we own; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = nix::Error::result(fd)? as i32;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies `/proc/self/exe` into a memfd and seals it against every change.
pub fn sealed_copy() -> Result<OwnedFd> {
    let fd = memfd_create(
        c"keel-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut exe = File::open("/proc/self/exe")?;
    let mut copy = File::from(fd);
    std::io::copy(&mut exe, &mut copy)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    // EBUSY means a page of the copy is still under write-back from the copy: try again.
    for _ in 0..100 {
        match fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)) {
            Err(nix::Error::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(1)),
            r => {
                r?;
                return Ok(OwnedFd::from(copy));
            }
        }
    }
    Err(nix::Error::EBUSY.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    fn refuses_writes(fd: &OwnedFd) {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(
            len,
            std::fs::metadata("/proc/self/exe").expect("stat exe").len()
        );
        let opened = std::fs::OpenOptions::new().write(true).open(&path);
        assert!(
            opened.and_then(|mut f| f.write_all(b"x")).is_err(),
            "writable: {path}"
        );
    }

    #[test]
    fn sealed_copy_refuses_writes() {
        refuses_writes(&sealed_copy().expect("sealed copy"));
    }

    #[test]
    fn readonly_mount_refuses_writes() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: open_tree needs root");
            return;
        }
        refuses_writes(&readonly_mount_of_self().expect("read-only mount"));
    }
}

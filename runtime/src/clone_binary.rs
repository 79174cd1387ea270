//! A sealed in-memory copy of the runtime binary, executed as the container's init.
//!
//! Why: a container process can reach the binary its init was exec'ed from through
//! `/proc/<pid>/exe` (or `#!/proc/self/exe`) and, once the runtime exits, open it for writing
//! (CVE-2019-5736). Init runs from a memfd sealed against writes, so there is nothing on the
//! host to overwrite.

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Errors making the sealed copy.
#[derive(Debug, thiserror::Error)]
pub enum CloneBinaryError {
    #[error("copy of the runtime binary: {0}")]
    Io(#[from] std::io::Error),
    #[error("copy of the runtime binary: {0}")]
    Sys(#[from] nix::Error),
}

pub type Result<T> = std::result::Result<T, CloneBinaryError>;

/// Copies `/proc/self/exe` into a memfd and seals it against every change.
pub fn sealed_self() -> Result<OwnedFd> {
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
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(OwnedFd::from(copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn copy_is_sealed() {
        let fd = sealed_self().expect("sealed copy");
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let len = std::fs::metadata(&path).expect("stat").len();
        assert_eq!(
            len,
            std::fs::metadata("/proc/self/exe").expect("stat exe").len()
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("reopen");
        assert!(
            f.write_all(b"x").is_err(),
            "a sealed copy must refuse writes"
        );
    }
}

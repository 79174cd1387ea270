//! The few syscalls nix does not wrap: extended attributes set on a file named relative to a
//! directory descriptor, without following a symlink in the last component.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets the extended attribute `key` on `name` inside the directory `dir`, never following a
/// symlink in `name`. The `/proc/self/fd` path pins the parent to the descriptor already resolved
/// inside the root, so nothing outside the root can be reached.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let key = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; `value` is a valid slice of
    // `value.len()` bytes; lsetxattr does not keep any pointer after it returns.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

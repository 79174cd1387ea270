//! The few syscalls nix does not wrap: extended attributes read from a path, or set on a file
//! named relative to a directory descriptor, never following a symlink in the last component.
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

/// The extended attribute `key` of `path` (a symlink itself, not followed); `None` if the file
/// has none by that name or its filesystem keeps none.
pub fn get_xattr(path: &std::path::Path, key: &str) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let key = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut value = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated and outlive the call; `value` is a valid,
        // writable buffer of `value.len()` bytes; lgetxattr keeps no pointer after it returns.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                key.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if let Ok(n) = usize::try_from(n) {
            value.truncate(n);
            return Ok(Some(value));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if value.len() < 1 << 16 => value.resize(value.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

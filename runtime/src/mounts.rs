//! One `mounts[]` entry: option parsing (flags, propagation, data) and the mount itself, onto a
//! destination resolved inside the rootfs.
//!
//! STUB: interface fixed; implementation being written.

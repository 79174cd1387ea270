//! `/dev` in the container: the default devices, `linux.devices`, and the std* and fd links.
//!
//! STUB: interface fixed; implementation being written.

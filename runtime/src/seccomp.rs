//! `linux.seccomp`: compiled by libseccomp into BPF once per profile (cached under the runtime
//! root), loaded into the init process with seccomp(2) right before exec.
//!
//! STUB: interface fixed; implementation being written.

use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

/// Errors of compiling or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, SeccompError>;

/// A compiled filter: the BPF program (raw `struct sock_filter` array) and seccomp(2) flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filter {
    pub program: Vec<u8>,
    pub flags: u32,
}

/// Compiles `seccomp` to BPF, reusing a program cached in `cache_dir` for the same profile.
pub fn compile(_seccomp: &LinuxSeccomp, _cache_dir: Option<&Path>) -> Result<Filter> {
    Err(SeccompError::Invalid("not yet supported".into()))
}

/// Loads `filter` into the calling process (and, with TSYNC, its threads).
pub fn load(_filter: &Filter) -> Result<()> {
    Err(SeccompError::Invalid("not yet supported".into()))
}

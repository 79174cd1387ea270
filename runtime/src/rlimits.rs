//! `process.rlimits`.

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Errors setting rlimits.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("rlimit {kind}: {source}")]
    Set { kind: String, source: nix::Error },
    #[error("rlimit {0}: soft limit is above the hard limit")]
    SoftAboveHard(String),
}

pub type Result<T> = std::result::Result<T, RlimitError>;

/// Sets every rlimit of the config.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let kind = r.typ().to_string();
        if r.soft() > r.hard() {
            return Err(RlimitError::SoftAboveHard(kind));
        }
        setrlimit(resource(r.typ()), r.soft(), r.hard())
            .map_err(|source| RlimitError::Set { kind, source })?;
    }
    Ok(())
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

//! The shim's errors and the one place they become ttrpc statuses, keeping the kind containerd
//! branches on (its errdefs: NotFound, AlreadyExists, FailedPrecondition, InvalidArgument).

use std::io;

use ttrpc::Code;

use crate::runtime::RuntimeError;

/// Result of the task service's logic.
pub type Result<T> = std::result::Result<T, ShimError>;

/// Why a task API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ShimError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        ShimError::Io {
            context: context.into(),
            source,
        }
    }

    /// The ttrpc (gRPC) code for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Runtime(e) if e.is_not_found() => Code::NOT_FOUND,
            ShimError::Runtime(_) => Code::UNKNOWN,
            ShimError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Code::NOT_FOUND
            }
            ShimError::Io { source, .. } if source.kind() == io::ErrorKind::Unsupported => {
                Code::UNIMPLEMENTED
            }
            ShimError::Io { .. } => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_codes() {
        assert_eq!(ShimError::NotFound("x".into()).code(), Code::NOT_FOUND);
        assert_eq!(
            ShimError::FailedPrecondition("x".into()).code(),
            Code::FAILED_PRECONDITION
        );
        let missing = ShimError::io("open config.json", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(missing.code(), Code::NOT_FOUND);
        match ttrpc::Error::from(missing) {
            ttrpc::Error::RpcStatus(s) => assert!(s.message.contains("open config.json")),
            other => panic!("{other:?}"),
        }
    }
}

//! The one place where errors meet the wire: every failure a handler returns is an [`ApiError`],
//! whose kind decides the HTTP status exactly as dockerd's `errdefs` do, and whose text is the
//! `{"message": "..."}` body the docker CLI prints. Keeping the kind (not a string) is what lets
//! a client tell "No such image" (404) from a broken supervisor (500).

use hyper::StatusCode;
use serde::Serialize;

/// A failed API request, by the kind of failure dockerd would report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The object (image, container, route) does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (parameters, body, API version): 400.
    #[error("{0}")]
    InvalidParameter(String),
    /// Credentials were refused: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The request conflicts with the current state (a name in use, an image in use): 409.
    #[error("{0}")]
    Conflict(String),
    /// The daemon cannot serve this right now (the supervisor is gone): 503.
    #[error("{0}")]
    Unavailable(String),
    /// The feature is not implemented by this engine: 501.
    #[error("{0}")]
    NotImplemented(String),
    /// Anything else, the engine's own fault: 500.
    #[error("{0}")]
    Internal(String),
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// The body of every error response, as dockerd's `types.ErrorResponse`.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
}

impl ApiError {
    /// The error dockerd answers an unknown route (or a known route with the wrong method) with.
    pub fn page_not_found() -> Self {
        ApiError::NotFound("page not found".to_string())
    }

    /// The HTTP status dockerd's `errdefs` give this kind.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body, newline-terminated as Go's `json.Encoder` writes it.
    pub fn body(&self) -> String {
        let message = self.to_string();
        let mut body = serde_json::to_string(&ErrorBody { message: &message })
            .unwrap_or_else(|_| String::from(r#"{"message":"internal error"}"#));
        body.push('\n');
        body
    }
}

impl From<crate::containerd::ContainerdError> for ApiError {
    fn from(e: crate::containerd::ContainerdError) -> Self {
        use crate::containerd::ContainerdError as E;
        use tonic::Code;
        let message = e.to_string();
        match &e {
            E::Connect { .. } => ApiError::Unavailable(message),
            E::Call { status, .. } => match status.code() {
                Code::NotFound => ApiError::NotFound(message),
                Code::AlreadyExists | Code::FailedPrecondition => ApiError::Conflict(message),
                Code::InvalidArgument | Code::OutOfRange => ApiError::InvalidParameter(message),
                Code::Unavailable => ApiError::Unavailable(message),
                Code::Unimplemented => ApiError::NotImplemented(message),
                _ => ApiError::Internal(message),
            },
            E::Endpoint(_) | E::Namespace(_) => ApiError::Internal(message),
        }
    }
}

impl From<crate::registry_login::LoginError> for ApiError {
    fn from(e: crate::registry_login::LoginError) -> Self {
        use crate::registry_login::LoginError as E;
        let message = e.to_string();
        match e {
            E::Denied { .. } => ApiError::Unauthorized(message),
            E::Address(_) => ApiError::InvalidParameter(message),
            E::Unsupported(_) => ApiError::NotImplemented(message),
            E::Transport { .. } => ApiError::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_dockers_status_codes() {
        let cases = [
            (ApiError::NotFound("x".into()), 404),
            (ApiError::InvalidParameter("x".into()), 400),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::Unavailable("x".into()), 503),
            (ApiError::NotImplemented("x".into()), 501),
            (ApiError::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn body_is_a_message_object_with_a_newline() {
        let e = ApiError::page_not_found();
        assert_eq!(e.body(), "{\"message\":\"page not found\"}\n");
    }

    #[test]
    fn body_escapes_quotes() {
        let e = ApiError::Conflict("name \"/x\" in use".into());
        let parsed: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(parsed["message"], "name \"/x\" in use");
    }

    #[test]
    fn grpc_codes_keep_their_kind() {
        use crate::containerd::ContainerdError;
        let call = |code| ContainerdError::Call {
            what: "images.get",
            status: tonic::Status::new(code, "nope"),
        };
        assert_eq!(
            ApiError::from(call(tonic::Code::NotFound)).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(call(tonic::Code::AlreadyExists)).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(call(tonic::Code::Internal)).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

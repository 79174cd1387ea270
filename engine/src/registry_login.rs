//! `POST /auth` (`docker login`): checks credentials against a registry the way dockerd does,
//! by `GET /v2/` and, when the registry asks for them (`401` with `WWW-Authenticate`), again
//! with HTTP Basic credentials or through its Bearer token realm. Only registries on the
//! loopback are reached, over plain HTTP (dockerd treats 127.0.0.0/8 as insecure by default);
//! TLS registries are refused with a message saying so until the engine has a TLS client.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// How long one exchange with the registry may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A login that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The registry refused the credentials.
    #[error("login attempt to {url} failed with status: {status}")]
    Denied { url: String, status: StatusCode },
    /// The registry cannot be reached or answered nonsense.
    #[error("Get \"{url}\": {why}")]
    Transport { url: String, why: String },
    /// A registry the engine cannot talk to yet.
    #[error(
        "keeld cannot log in to {0} yet: only registries on the loopback (plain HTTP) are supported"
    )]
    Unsupported(String),
    /// The server address is not a registry address.
    #[error("invalid registry address {0:?}")]
    Address(String),
}

/// Checks `username`/`password` against the registry at `server` (`host:port`, optionally
/// with `http://`); `Ok` when the registry accepts them (or needs none).
pub async fn login(server: &str, username: &str, password: &str) -> Result<(), LoginError> {
    let host = registry_host(server)?;
    let url = format!("http://{host}/v2/");
    let first = get(&url, None).await?;
    if first.status.is_success() {
        return Ok(());
    }
    if first.status != StatusCode::UNAUTHORIZED {
        return Err(LoginError::Denied {
            url,
            status: first.status,
        });
    }
    let basic = format!("Basic {}", base64(&format!("{username}:{password}")));
    let challenge = first.challenge.unwrap_or_default();
    let checked = match bearer_realm(&challenge) {
        Some(realm) => get(&realm, Some(&basic)).await?,
        None => get(&url, Some(&basic)).await?,
    };
    if checked.status.is_success() {
        Ok(())
    } else {
        Err(LoginError::Denied {
            url,
            status: checked.status,
        })
    }
}

/// `host[:port]` of a loopback registry; others are [`LoginError::Unsupported`].
pub fn registry_host(server: &str) -> Result<String, LoginError> {
    let trimmed = server.trim().trim_end_matches('/');
    if trimmed.starts_with("https://") {
        return Err(LoginError::Unsupported(trimmed.to_string()));
    }
    let host = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let host = host.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(LoginError::Address(server.to_string()));
    }
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(host.to_string())
    } else {
        Err(LoginError::Unsupported(host.to_string()))
    }
}

/// The token URL of a `Bearer realm="...",service="...",scope="..."` challenge.
pub fn bearer_realm(challenge: &str) -> Option<String> {
    let params = challenge.strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut query = Vec::new();
    for part in params.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        let value = value.trim_matches('"');
        match key {
            "realm" => realm = Some(value.to_string()),
            "service" | "scope" => query.push(format!("{key}={value}")),
            _ => {}
        }
    }
    let realm = realm?;
    Some(if query.is_empty() {
        realm
    } else {
        format!("{realm}?{}", query.join("&"))
    })
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
}

/// One plain-HTTP GET on its own connection.
async fn get(url: &str, authorization: Option<&str>) -> Result<Answer, LoginError> {
    let transport = |why: String| LoginError::Transport {
        url: url.to_string(),
        why,
    };
    let uri: Uri = url.parse().map_err(|e| transport(format!("{e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(LoginError::Unsupported(url.to_string()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| transport("no host".into()))?
        .clone();
    registry_host(authority.as_str())?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, authority.as_str());
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Drain the body so the connection closes cleanly; its content does not matter.
        let _ = response.into_body().collect().await;
        Ok(Answer { status, challenge })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| transport(format!("no answer within {}s", TIMEOUT.as_secs())))?
}

/// Standard base64 with padding (for HTTP Basic credentials).
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_rfc4648() {
        assert_eq!(base64(""), "");
        assert_eq!(base64("f"), "Zg==");
        assert_eq!(base64("fo"), "Zm8=");
        assert_eq!(base64("foo"), "Zm9v");
        assert_eq!(base64("user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn only_loopback_registries_are_reached() {
        assert_eq!(registry_host("127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(
            registry_host("http://localhost:5000/").unwrap(),
            "localhost:5000"
        );
        assert_eq!(registry_host("[::1]:5000").unwrap(), "[::1]:5000");
        for remote in [
            "registry.example.com",
            "https://127.0.0.1:5000",
            "10.0.0.1:5000",
        ] {
            assert!(
                matches!(registry_host(remote), Err(LoginError::Unsupported(_))),
                "{remote}"
            );
        }
        assert!(matches!(registry_host(""), Err(LoginError::Address(_))));
    }

    #[test]
    fn bearer_challenges_give_the_token_url() {
        let c = r#"Bearer realm="http://127.0.0.1:5001/token",service="registry",scope="x""#;
        assert_eq!(
            bearer_realm(c).as_deref(),
            Some("http://127.0.0.1:5001/token?service=registry&scope=x")
        );
        assert_eq!(bearer_realm("Basic realm=\"r\""), None);
        assert_eq!(bearer_realm("Bearer service=\"s\""), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_error() {
        let err = login("127.0.0.1:1", "u", "p").await.unwrap_err();
        assert!(matches!(err, LoginError::Transport { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("Get \"http://127.0.0.1:1/v2/\": "),
            "{err}"
        );
    }
}

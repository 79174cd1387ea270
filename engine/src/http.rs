//! The HTTP vocabulary shared by the server and the handlers: the response body type, JSON and
//! text responses written as dockerd writes them (JSON with a trailing newline, as Go's
//! `json.Encoder` does), and reading a JSON request body with dockerd's checks (Content-Type,
//! a size limit, `invalid JSON: ...` on a malformed body).

use std::convert::Infallible;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::errors::{ApiError, ApiResult};

/// The body of every response: whole for now, a stream later (pull progress, logs).
pub type Body = BoxBody<Bytes, Infallible>;

/// The largest JSON request body accepted: container configs are a few KiB; 10 MiB is ample.
pub const MAX_JSON_BODY: usize = 10 * 1024 * 1024;

/// `value` as `application/json`, newline-terminated.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response<Body>> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::Internal(format!("encoding the response: {e}")))?;
    bytes.push(b'\n');
    Ok(with_type(status, "application/json", full(bytes)))
}

/// `text` as `text/plain; charset=utf-8`.
pub fn text(status: StatusCode, text: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", full(text))
}

/// An empty body with a Content-Type (HEAD answers).
pub fn empty(status: StatusCode, content_type: &'static str) -> Response<Body> {
    with_type(status, content_type, Empty::new().boxed())
}

/// The error's status and `{"message": ...}` body.
pub fn error(e: &ApiError) -> Response<Body> {
    with_type(e.status(), "application/json", full(e.body()))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The request's JSON body as `T`, checked as dockerd's `httputils.ReadJSON` does: a
/// Content-Type other than JSON is 400, an empty body is `T`'s default, a malformed one is
/// `400 invalid JSON: ...`; bodies over [`MAX_JSON_BODY`] are 400 before they are read whole.
pub async fn read_json<T, B>(request: Request<B>) -> ApiResult<T>
where
    T: DeserializeOwned + Default,
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    check_json_content_type(request.headers().get(CONTENT_TYPE))?;
    let bytes = Limited::new(request.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::InvalidParameter(format!(
                    "the request body is larger than {MAX_JSON_BODY} bytes"
                ))
            } else {
                ApiError::InvalidParameter(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes();
    parse_json(&bytes)
}

/// A body's bytes as `T` (see [`read_json`]).
pub fn parse_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidParameter(format!("invalid JSON: {e}")))
}

/// dockerd accepts no Content-Type or `application/json` (with parameters) for JSON bodies.
pub fn check_json_content_type(value: Option<&HeaderValue>) -> ApiResult<()> {
    let Some(value) = value else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let media_type = text.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::InvalidParameter(format!(
            "unsupported Content-Type header ({text}): must be 'application/json'"
        )))
    }
}

/// The query string's parameters, percent-decoded (`+` is a space), later ones winning.
pub fn query_params(query: Option<&str>) -> std::collections::HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space in queries); invalid escapes stay as they are,
/// invalid UTF-8 is replaced, so no input fails.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        if let Some(value) = escaped.and_then(|v| u8::try_from(v).ok()) {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(match bytes[i] {
            b'+' if plus_is_space => b' ',
            b => b,
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean query parameter as dockerd's `httputils.BoolValue` reads it: absent, empty,
/// `0`, `no`, `false` and `none` are false, anything else true.
pub fn bool_param(params: &std::collections::HashMap<String, String>, key: &str) -> bool {
    params.get(key).is_some_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        )
    })
}

/// Docker's `filters` query argument: `{"key":{"value":true}}` (or the old `{"key":["value"]}`),
/// as (key, values) pairs; anything else is 400.
pub fn filters(json: Option<&str>) -> ApiResult<Vec<(String, Vec<String>)>> {
    let Some(json) = json.filter(|j| !j.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let raw: std::collections::HashMap<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| ApiError::InvalidParameter(format!("invalid filter: {e}")))?;
    raw.into_iter()
        .map(|(key, value)| {
            let values = match value {
                serde_json::Value::Object(map) => map.into_iter().map(|(k, _)| k).collect(),
                serde_json::Value::Array(list) => list
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => return Err(unknown_filter(&key)),
            };
            Ok((key, values))
        })
        .collect()
}

/// A filter key the route does not know (400).
pub fn unknown_filter(key: &str) -> ApiError {
    ApiError::InvalidParameter(format!("invalid filter '{key}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    struct Sample {
        #[serde(default)]
        name: String,
    }

    #[test]
    fn json_bodies_parse_and_empty_is_default() {
        assert_eq!(parse_json::<Sample>(br#"{"name":"x"}"#).unwrap().name, "x");
        assert_eq!(parse_json::<Sample>(b"").unwrap(), Sample::default());
        assert_eq!(parse_json::<Sample>(b" \n").unwrap(), Sample::default());
    }

    #[test]
    fn malformed_json_is_400_invalid_json() {
        for bad in [&b"{"[..], b"not json", b"{\"name\": 3}", b"\xff\xfe"] {
            let e = parse_json::<Sample>(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
        }
    }

    fn request(content_type: &'static str, body: Vec<u8>) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        request
    }

    #[tokio::test]
    async fn request_bodies_are_read_within_the_limit() {
        let ok: Sample = read_json(request("application/json", br#"{"name":"n"}"#.to_vec()))
            .await
            .unwrap();
        assert_eq!(ok.name, "n");
        let mut huge = br#"{"name":""#.to_vec();
        huge.resize(MAX_JSON_BODY + 1, b'a');
        let e = read_json::<Sample, _>(request("application/json", huge))
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("larger than"), "{e}");
        let e = read_json::<Sample, _>(request("text/plain", b"{}".to_vec()))
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("unsupported Content-Type"), "{e}");
    }

    #[test]
    fn queries_are_decoded() {
        let q = query_params(Some(
            "repo=127.0.0.1%3A5000%2Fa&tag=v1&force=1&x=a+b&bad=%zz%4",
        ));
        assert_eq!(q["repo"], "127.0.0.1:5000/a");
        assert_eq!(q["tag"], "v1");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz%4");
        assert!(bool_param(&q, "force"));
        assert!(!bool_param(&q, "noprune"));
        assert!(query_params(None).is_empty());
        assert_eq!(percent_decode("%ff%fe", false), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn dockerd_booleans() {
        let q = query_params(Some("a=0&b=false&c=none&d=&e=true&f=yes"));
        for key in ["a", "b", "c", "d", "missing"] {
            assert!(!bool_param(&q, key), "{key}");
        }
        assert!(bool_param(&q, "e") && bool_param(&q, "f"));
    }

    #[test]
    fn content_types_are_checked() {
        let ok = [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ];
        for ct in ok {
            check_json_content_type(Some(&HeaderValue::from_static(ct))).unwrap();
        }
        check_json_content_type(None).unwrap();
        let e = check_json_content_type(Some(&HeaderValue::from_static("text/plain"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
    }
}

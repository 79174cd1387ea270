//! From a method and a path to a [`Route`] and the API version the client asked for, as
//! dockerd's router and version middleware decide: every route is served both unversioned
//! (`/info`, at the newest version) and versioned (`/v1.47/info`); a path that matches no route,
//! or a route with another method, is `404 page not found`; a version below
//! [`MIN_API_VERSION`] or above [`MAX_API_VERSION`] is 400 with dockerd's wording.
//!
//! Image names contain slashes (`localhost:5000/a/b:tag`), so image routes match by prefix and
//! suffix, as dockerd's `{name:.*}` does.

use std::cmp::Ordering;

use hyper::Method;

use crate::errors::{ApiError, ApiResult};
use crate::http::percent_decode;

/// The oldest API version the engine serves (dockerd's minimum).
pub const MIN_API_VERSION: &str = "1.24";

/// The newest API version the engine serves: the one its models (bollard-stubs) are made from.
pub const MAX_API_VERSION: &str = "1.49";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /_ping`.
    Ping,
    /// `GET /version`.
    Version,
    /// `GET /info`.
    Info,
    /// `POST /auth`.
    Auth,
    /// `GET /events`.
    Events,
    /// `GET /system/df`.
    SystemDf,
    /// `GET /images/json`.
    ImageList,
    /// `GET /images/{name}/json`.
    ImageInspect(String),
    /// `GET /images/{name}/history`.
    ImageHistory(String),
    /// `DELETE /images/{name}`.
    ImageDelete(String),
    /// `POST /images/{name}/tag`.
    ImageTag(String),
    /// `POST /images/prune`.
    ImagePrune,
    /// `POST /images/create` (`docker pull`).
    ImageCreate,
}

/// A resolved request: the route and the API version to answer in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The route matched.
    pub route: Route,
    /// The negotiated API version, e.g. `1.47`.
    pub version: String,
}

/// Resolves `method path` (the path without its query), checking the API version.
pub fn resolve(method: &Method, path: &str) -> ApiResult<Routed> {
    let (version, rest) = split_version(path);
    let route = match_route(method, rest).ok_or_else(ApiError::page_not_found)?;
    let version = negotiate(version)?;
    Ok(Routed { route, version })
}

/// `/v1.47/info` → (`Some("1.47")`, `/info`); paths without a `/v<digits and dots>` prefix are
/// unversioned.
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    let Some(after_v) = path.strip_prefix("/v") else {
        return (None, path);
    };
    let end = after_v.find('/').unwrap_or(after_v.len());
    let candidate = &after_v[..end];
    let is_version =
        !candidate.is_empty() && candidate.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if is_version {
        (Some(candidate), &after_v[end..])
    } else {
        (None, path)
    }
}

/// The version to answer in: the client's, if within range; the newest if it named none.
pub fn negotiate(requested: Option<&str>) -> ApiResult<String> {
    let Some(version) = requested else {
        return Ok(MAX_API_VERSION.to_string());
    };
    if compare_versions(version, MIN_API_VERSION) == Ordering::Less {
        return Err(ApiError::InvalidParameter(format!(
            "client version {version} is too old. Minimum supported API version is \
             {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if compare_versions(version, MAX_API_VERSION) == Ordering::Greater {
        return Err(ApiError::InvalidParameter(format!(
            "client version {version} is too new. Maximum supported API version is \
             {MAX_API_VERSION}"
        )));
    }
    Ok(version.to_string())
}

/// Compares dotted versions field by field as numbers, a missing field counting as 0
/// (dockerd's `versions.compare`: `1.9 < 1.24`, `1 < 1.24`, `1.24 == 1.24.0`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let fields = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect()
    };
    let (a, b) = (fields(a), fields(b));
    let len = a.len().max(b.len());
    for i in 0..len {
        let ordering = a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0));
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn match_route(method: &Method, path: &str) -> Option<Route> {
    let get = method == Method::GET;
    if let Some(rest) = path.strip_prefix("/images/") {
        return match_image_route(method, rest);
    }
    match path {
        "/_ping" if get || method == Method::HEAD => Some(Route::Ping),
        "/version" if get => Some(Route::Version),
        "/info" if get => Some(Route::Info),
        "/auth" if method == Method::POST => Some(Route::Auth),
        "/events" if get => Some(Route::Events),
        "/system/df" if get => Some(Route::SystemDf),
        _ => None,
    }
}

/// `rest` is the path after `/images/`; names may hold slashes and are percent-decoded.
fn match_image_route(method: &Method, rest: &str) -> Option<Route> {
    let name = |n: &str| Some(percent_decode(n, false)).filter(|n| !n.is_empty());
    if *method == Method::GET {
        if rest == "json" {
            return Some(Route::ImageList);
        }
        if let Some(image) = rest.strip_suffix("/history") {
            return name(image).map(Route::ImageHistory);
        }
        return rest
            .strip_suffix("/json")
            .and_then(name)
            .map(Route::ImageInspect);
    }
    if *method == Method::POST {
        if rest == "prune" {
            return Some(Route::ImagePrune);
        }
        if rest == "create" {
            return Some(Route::ImageCreate);
        }
        return rest
            .strip_suffix("/tag")
            .and_then(name)
            .map(Route::ImageTag);
    }
    if *method == Method::DELETE {
        return name(rest).map(Route::ImageDelete);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(method: Method, path: &str) -> Routed {
        resolve(&method, path).unwrap()
    }

    fn err(method: Method, path: &str) -> ApiError {
        resolve(&method, path).unwrap_err()
    }

    #[test]
    fn routes_match_versioned_and_not() {
        assert_eq!(ok(Method::GET, "/_ping").route, Route::Ping);
        assert_eq!(ok(Method::HEAD, "/_ping").route, Route::Ping);
        assert_eq!(ok(Method::GET, "/v1.47/version").route, Route::Version);
        assert_eq!(ok(Method::GET, "/v1.24/info").route, Route::Info);
        assert_eq!(ok(Method::POST, "/v1.49/auth").route, Route::Auth);
        assert_eq!(ok(Method::GET, "/events").route, Route::Events);
        assert_eq!(ok(Method::GET, "/v1.44/system/df").route, Route::SystemDf);
    }

    #[test]
    fn image_routes_take_names_with_slashes() {
        assert_eq!(
            ok(Method::GET, "/v1.47/images/json").route,
            Route::ImageList
        );
        assert_eq!(
            ok(Method::GET, "/images/127.0.0.1:5000/a/b:v1/json").route,
            Route::ImageInspect("127.0.0.1:5000/a/b:v1".into())
        );
        assert_eq!(ok(Method::POST, "/images/prune").route, Route::ImagePrune);
        assert_eq!(
            ok(Method::POST, "/v1.49/images/create").route,
            Route::ImageCreate
        );
        assert_eq!(
            ok(Method::GET, "/images/a/b/history").route,
            Route::ImageHistory("a/b".into())
        );
        assert_eq!(
            ok(Method::DELETE, "/images/busybox%3Alatest").route,
            Route::ImageDelete("busybox:latest".into())
        );
        assert_eq!(
            ok(Method::POST, "/images/sha256:abc/tag").route,
            Route::ImageTag("sha256:abc".into())
        );
        for (method, path) in [
            (Method::GET, "/images//json"),
            (Method::GET, "/images/"),
            (Method::DELETE, "/images/"),
            (Method::POST, "/images/x"),
            (Method::PUT, "/images/x/tag"),
        ] {
            assert_eq!(
                resolve(&method, path).unwrap_err(),
                ApiError::page_not_found(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unversioned_requests_get_the_newest_version() {
        assert_eq!(ok(Method::GET, "/info").version, MAX_API_VERSION);
        assert_eq!(ok(Method::GET, "/v1.41/info").version, "1.41");
    }

    #[test]
    fn unknown_paths_and_methods_are_page_not_found() {
        for (method, path) in [
            (Method::GET, "/nope"),
            (Method::GET, "/v1.47/nope"),
            (Method::POST, "/info"),
            (Method::GET, "/auth"),
            (Method::HEAD, "/version"),
            (Method::GET, "/v1.47"),
            (Method::GET, "/v/_ping"),
            (Method::GET, "/vx.y/_ping"),
            (Method::GET, ""),
            (Method::GET, "/_ping/"),
        ] {
            assert_eq!(
                resolve(&method, path).unwrap_err(),
                ApiError::page_not_found(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn too_new_versions_are_rejected_as_dockerd_words_it() {
        let e = err(Method::GET, "/v1.99/version");
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(
            e.to_string(),
            format!("client version 1.99 is too new. Maximum supported API version is {MAX_API_VERSION}")
        );
    }

    #[test]
    fn too_old_versions_are_rejected() {
        for old in ["1.23", "1.9", "1", "0.99"] {
            let e = err(Method::GET, &format!("/v{old}/_ping"));
            assert_eq!(e.status().as_u16(), 400, "{old}");
            assert!(e.to_string().contains("is too old"), "{old}: {e}");
        }
    }

    #[test]
    fn an_unknown_route_is_404_even_with_a_bad_version() {
        assert_eq!(err(Method::GET, "/v1.99/nope"), ApiError::page_not_found());
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("1.9", "1.24"), Ordering::Less);
        assert_eq!(compare_versions("1.24", "1.24.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.50", "1.49"), Ordering::Greater);
        assert_eq!(compare_versions("2", "1.99"), Ordering::Greater);
        assert_eq!(compare_versions("1..", "1"), Ordering::Equal);
        assert_eq!(
            compare_versions("1.99999999999999999999999", "1.49"),
            Ordering::Less,
            "an overflowing field counts as 0, never a panic"
        );
    }

    #[test]
    fn split_version_only_takes_digit_and_dot_prefixes() {
        assert_eq!(split_version("/v1.47/info"), (Some("1.47"), "/info"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/v1.47"), (Some("1.47"), ""));
        assert_eq!(split_version("/info"), (None, "/info"));
    }
}

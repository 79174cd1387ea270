//! `GET /system/df` (`docker system df`): the images with their sizes and how many containers
//! use each, from containerd. The engine has no containers, volumes or build cache of its own
//! yet, so those sections are empty lists (never absent: the CLI prints every section).

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models::SystemDataUsageResponse;
use hyper::{Response, StatusCode};

use super::images::{api, summary};
use crate::engine::Engine;
use crate::errors::{ApiError, ApiResult};
use crate::http::{self, Body};
use crate::images::{Images, ResolvedImage};

/// The sections `type` can ask for (API 1.42+); none asked means all.
const SECTIONS: [&str; 4] = ["container", "image", "volume", "build-cache"];

/// `GET /system/df?type=...`.
pub async fn df(engine: &Engine, params: &HashMap<String, String>) -> ApiResult<Response<Body>> {
    let wanted = sections(params)?;
    let mut body = SystemDataUsageResponse::default();
    if wanted.contains(&"image") {
        let all = Images::new(&engine.containerd).list().await.map_err(api)?;
        let containers = engine.containerd.containers().await?;
        let mut by_id: BTreeMap<&String, Vec<ResolvedImage>> = BTreeMap::new();
        for image in &all {
            by_id.entry(&image.id).or_default().push(image.clone());
        }
        let mut images = Vec::new();
        for records in by_id.values() {
            let Some(mut image) = summary(records) else {
                continue;
            };
            let users = containers
                .iter()
                .filter(|c| records.iter().any(|r| r.name == c.image))
                .count();
            image.containers = i64::try_from(users).unwrap_or(i64::MAX);
            image.shared_size = 0;
            images.push(image);
        }
        body.layers_size = Some(images.iter().map(|i| i.size).sum());
        body.images = Some(images);
    }
    if wanted.contains(&"container") {
        body.containers = Some(Vec::new());
    }
    if wanted.contains(&"volume") {
        body.volumes = Some(Vec::new());
    }
    if wanted.contains(&"build-cache") {
        body.build_cache = Some(Vec::new());
    }
    http::json(StatusCode::OK, &body)
}

/// The `type` parameters (repeated or absent), checked against [`SECTIONS`].
fn sections(params: &HashMap<String, String>) -> ApiResult<Vec<&'static str>> {
    let Some(asked) = params.get("type").filter(|t| !t.is_empty()) else {
        return Ok(SECTIONS.to_vec());
    };
    SECTIONS
        .iter()
        .find(|s| **s == asked.as_str())
        .map(|s| vec![*s])
        .ok_or_else(|| ApiError::InvalidParameter(format!("unknown object type: {asked}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_select_sections() {
        let none = HashMap::new();
        assert_eq!(sections(&none).unwrap(), SECTIONS);
        let image = HashMap::from([("type".to_string(), "image".to_string())]);
        assert_eq!(sections(&image).unwrap(), ["image"]);
        let bad = HashMap::from([("type".to_string(), "disk".to_string())]);
        let e = sections(&bad).unwrap_err();
        assert_eq!(e.to_string(), "unknown object type: disk");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

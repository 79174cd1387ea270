//! `POST /images/prune` (`docker image prune`): deletes the images no container was made from,
//! only the untagged ones unless `dangling=false` (`-a`), as dockerd does; an image is kept
//! whole if any of its tags is in use. The space reclaimed is the images' content size (the
//! content itself goes with containerd's garbage collection).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard_stubs::models::ImagePruneResponse;
use hyper::{Response, StatusCode};

use super::images::{api, deleted as deleted_image, labels, untag, ImageFilters};
use crate::engine::Engine;
use crate::errors::ApiResult;
use crate::events::{Event, EventKind};
use crate::http::{self, Body};
use crate::images::{Images, ResolvedImage};

/// `POST /images/prune?filters=...` (`dangling`, `label`).
pub async fn prune(engine: &Engine, params: &HashMap<String, String>) -> ApiResult<Response<Body>> {
    let filters = ImageFilters::parse(params.get("filters").map(String::as_str))?;
    let dangling_only = filters.dangling.unwrap_or(true);
    let all = Images::new(&engine.containerd).list().await.map_err(api)?;
    let containers = engine.containerd.containers().await?;
    let used: BTreeSet<&String> = all
        .iter()
        .filter(|i| containers.iter().any(|c| c.image == i.name))
        .map(|i| &i.id)
        .collect();
    let mut by_id: BTreeMap<&String, Vec<&ResolvedImage>> = BTreeMap::new();
    for image in &all {
        by_id.entry(&image.id).or_default().push(image);
    }
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for (id, records) in by_id {
        let tagged = records.iter().any(|r| r.repo_tag().is_some());
        let Some(first) = records.first() else {
            continue;
        };
        if used.contains(id) || (dangling_only && tagged) || !filters.labels_match(&labels(first)) {
            continue;
        }
        for record in &records {
            deleted.push(untag(engine, record).await?);
        }
        deleted.push(deleted_image(engine, id));
        reclaimed += first.size;
    }
    let reclaimed_text = reclaimed.to_string();
    engine.events.publish(Event::now(
        EventKind::Image,
        "prune",
        "",
        &[("reclaimed", reclaimed_text.as_str())],
    ));
    let body = ImagePruneResponse {
        images_deleted: Some(deleted),
        space_reclaimed: Some(reclaimed),
    };
    http::json(StatusCode::OK, &body)
}

//! `GET /images/json`, `GET /images/{name}/json`, `GET /images/{name}/history`,
//! `DELETE /images/{name}` and `POST /images/{name}/tag`, over containerd's Images and Content
//! services (see [`crate::images`]): the docker CLI's `images`, `image inspect`, `history`, `rmi` and `tag`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard_stubs::models::{
    DriverData, HistoryResponseItem, ImageConfig, ImageDeleteResponseItem, ImageInspect,
    ImageInspectMetadata, ImageInspectRootFs, ImageSummary,
};
use hyper::{Response, StatusCode};
use keel_proto::images::Image as Record;

use crate::engine::Engine;
use crate::errors::{ApiError, ApiResult};
use crate::events::{Event, EventKind};
use crate::http::{self, bool_param, Body};
use crate::images::{Found, HistoryStep, ImageError, Images, ResolvedImage};
use crate::reference::Reference;

/// `GET /images/json`: one entry per image ID, with all its tags.
pub async fn list(engine: &Engine, params: &HashMap<String, String>) -> ApiResult<Response<Body>> {
    let filters = ImageFilters::parse(params.get("filters").map(String::as_str))?;
    let images = Images::new(&engine.containerd).list().await.map_err(api)?;
    let mut by_id: BTreeMap<String, Vec<ResolvedImage>> = BTreeMap::new();
    for image in images {
        by_id.entry(image.id.clone()).or_default().push(image);
    }
    let mut summaries: Vec<ImageSummary> = by_id
        .values()
        .filter_map(|records| summary(records).and_then(|s| filters.apply(s)))
        .collect();
    summaries.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    http::json(StatusCode::OK, &summaries)
}

/// The summary of one image from its records (`None` for none).
pub(super) fn summary(records: &[ResolvedImage]) -> Option<ImageSummary> {
    let first = records.first()?;
    let repo_tags: BTreeSet<String> = records.iter().filter_map(ResolvedImage::repo_tag).collect();
    let repo_digests: BTreeSet<String> = records
        .iter()
        .filter_map(ResolvedImage::repo_digest)
        .collect();
    Some(ImageSummary {
        id: first.id.clone(),
        parent_id: String::new(),
        repo_tags: repo_tags.into_iter().collect(),
        repo_digests: repo_digests.into_iter().collect(),
        created: created_unix(first.config.created.as_deref()),
        size: first.size,
        shared_size: -1,
        labels: labels(first),
        containers: -1,
        ..Default::default()
    })
}

/// `GET /images/{name}/json`.
pub async fn inspect(engine: &Engine, name: &str) -> ApiResult<Response<Body>> {
    let images = Images::new(&engine.containerd);
    let found = images.find(name).await.map_err(api)?;
    let image = found.image().ok_or_else(|| not_found(name))?;
    // Every tag of the image, as dockerd lists them, not only the one asked for.
    let all = images.list().await.map_err(api)?;
    let records: Vec<&ResolvedImage> = all.iter().filter(|i| i.id == image.id).collect();
    let repo_tags: BTreeSet<String> = records.iter().filter_map(|i| i.repo_tag()).collect();
    let repo_digests: BTreeSet<String> = records.iter().filter_map(|i| i.repo_digest()).collect();
    let config = &image.config;
    let body = ImageInspect {
        id: Some(image.id.clone()),
        repo_tags: Some(repo_tags.into_iter().collect()),
        repo_digests: Some(repo_digests.into_iter().collect()),
        parent: Some(String::new()),
        comment: Some(String::new()),
        created: config.created.clone(),
        author: Some(config.author.clone().unwrap_or_default()),
        config: config
            .config
            .clone()
            .and_then(|c| serde_json::from_value::<ImageConfig>(c).ok()),
        architecture: Some(config.architecture.clone()),
        os: Some(config.os.clone()),
        size: Some(image.size),
        graph_driver: Some(DriverData {
            name: "overlayfs".to_string(),
            data: HashMap::new(),
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".to_string(),
            layers: Some(config.rootfs.diff_ids.clone()),
        }),
        metadata: Some(ImageInspectMetadata {
            last_tag_time: image.updated_at.clone(),
        }),
        ..Default::default()
    };
    http::json(StatusCode::OK, &body)
}

/// `GET /images/{name}/history`: the config's build steps, newest first, each non-empty one
/// with its layer's size; the top step carries the image ID and tags, the others `<missing>`
/// (as dockerd shows steps whose images it does not have).
pub async fn history(engine: &Engine, name: &str) -> ApiResult<Response<Body>> {
    let found = Images::new(&engine.containerd)
        .find(name)
        .await
        .map_err(api)?;
    let image = found.image().ok_or_else(|| not_found(name))?;
    let tags: Vec<String> = image.repo_tag().into_iter().collect();
    let mut items = history_items(&image.config.history, &image.layer_sizes);
    if let Some(top) = items.last_mut() {
        top.id = image.id.clone();
        top.tags = tags;
    }
    items.reverse();
    http::json(StatusCode::OK, &items)
}

/// One item per history step (oldest first); a config without history gets one per layer.
fn history_items(steps: &[HistoryStep], layer_sizes: &[i64]) -> Vec<HistoryResponseItem> {
    let missing =
        |created: i64, created_by: String, comment: String, size: i64| HistoryResponseItem {
            id: "<missing>".to_string(),
            created,
            created_by,
            tags: Vec::new(),
            size,
            comment,
        };
    if steps.is_empty() {
        return layer_sizes
            .iter()
            .map(|size| missing(0, String::new(), String::new(), *size))
            .collect();
    }
    let mut layers = layer_sizes.iter();
    steps
        .iter()
        .map(|step| {
            let size = if step.empty_layer {
                0
            } else {
                layers.next().copied().unwrap_or(0)
            };
            missing(
                created_unix(step.created.as_deref()),
                step.created_by.clone().unwrap_or_default(),
                step.comment.clone().unwrap_or_default(),
                size,
            )
        })
        .collect()
}

/// `DELETE /images/{name}`: untags a tag; deletes the image with its last tag. By ID, an image
/// with several tags needs `force`; an image a container uses needs `force` too.
pub async fn delete(
    engine: &Engine,
    name: &str,
    params: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    let force = bool_param(params, "force");
    let images = Images::new(&engine.containerd);
    let found = images.find(name).await.map_err(api)?;
    let image = found.image().ok_or_else(|| not_found(name))?.clone();
    let records = match found {
        Found::Tag(record) => vec![*record],
        Found::Id(records) => {
            if records.len() > 1 && !force {
                return Err(ApiError::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    short_id(&image.id)
                )));
            }
            records
        }
    };
    check_not_in_use(engine, &records, force).await?;
    let mut report = Vec::new();
    for record in &records {
        report.push(untag(engine, record).await?);
    }
    let remaining = images.list().await.map_err(api)?;
    if !remaining.iter().any(|i| i.id == image.id) {
        report.push(deleted(engine, &image.id));
    }
    http::json(StatusCode::OK, &report)
}

/// Deletes `record` (one tag), reporting it and publishing an `untag` event.
pub(super) async fn untag(
    engine: &Engine,
    record: &ResolvedImage,
) -> ApiResult<ImageDeleteResponseItem> {
    engine.containerd.delete_image(&record.name).await?;
    let name = record.repo_tag().unwrap_or_else(|| record.name.clone());
    engine.events.publish(Event::now(
        EventKind::Image,
        "untag",
        &record.id,
        &[("name", name.as_str())],
    ));
    Ok(ImageDeleteResponseItem {
        untagged: Some(name),
        deleted: None,
    })
}

/// Reports the image `id` gone (its last tag was removed), publishing a `delete` event.
pub(super) fn deleted(engine: &Engine, id: &str) -> ImageDeleteResponseItem {
    engine
        .events
        .publish(Event::now(EventKind::Image, "delete", id, &[("name", id)]));
    ImageDeleteResponseItem {
        untagged: None,
        deleted: Some(id.to_string()),
    }
}

/// dockerd refuses to untag an image a container was made from, unless forced.
async fn check_not_in_use(
    engine: &Engine,
    records: &[ResolvedImage],
    force: bool,
) -> ApiResult<()> {
    if force {
        return Ok(());
    }
    let containers = engine.containerd.containers().await?;
    for record in records {
        if let Some(user) = containers.iter().find(|c| c.image == record.name) {
            // dockerd names the reference as the user knows it: `busybox:latest`.
            let repository = record.repo_tag().unwrap_or_else(|| record.name.clone());
            return Err(ApiError::Conflict(format!(
                "conflict: unable to remove repository reference \"{repository}\" (must force) - container {} is using its referenced image {}",
                short(&user.id),
                short_id(&record.id)
            )));
        }
    }
    Ok(())
}

/// `POST /images/{name}/tag?repo=R&tag=T`: a new record for the same content.
pub async fn tag(
    engine: &Engine,
    name: &str,
    params: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    let target = new_tag(params)?;
    let found = Images::new(&engine.containerd)
        .find(name)
        .await
        .map_err(api)?;
    let image = found.image().ok_or_else(|| not_found(name))?;
    let record = Record {
        name: target.to_string(),
        labels: HashMap::new(),
        target: Some(image.target.clone()),
        ..Default::default()
    };
    engine.containerd.put_image(record).await?;
    let name = target.familiar();
    engine.events.publish(Event::now(
        EventKind::Image,
        "tag",
        &image.id,
        &[("name", name.as_str())],
    ));
    Ok(http::empty(
        StatusCode::CREATED,
        "text/plain; charset=utf-8",
    ))
}

/// The reference `repo` and `tag` name, `latest` by default; digests cannot be tagged to.
fn new_tag(params: &HashMap<String, String>) -> ApiResult<Reference> {
    let repo = params.get("repo").map(String::as_str).unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::InvalidParameter(
            "repository name must have at least one component".to_string(),
        ));
    }
    let text = match params.get("tag").filter(|t| !t.is_empty()) {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_string(),
    };
    let reference =
        Reference::parse(&text).map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
    if reference.digest.is_some() {
        return Err(ApiError::InvalidParameter(
            "refusing to create a tag with a digest reference".to_string(),
        ));
    }
    Ok(reference.with_default_tag())
}

/// The filters `GET /images/json` understands: `dangling`, `reference` and `label`.
#[derive(Debug, Default)]
pub(super) struct ImageFilters {
    pub(super) dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<String>,
}

impl ImageFilters {
    /// `{"key":{"value":true}}` (or the old `{"key":["value"]}`); unknown keys are 400.
    pub(super) fn parse(json: Option<&str>) -> ApiResult<Self> {
        let mut filters = Self::default();
        for (key, values) in crate::http::filters(json)? {
            match key.as_str() {
                "dangling" => {
                    filters.dangling = Some(values.iter().any(|v| v == "true" || v == "1"))
                }
                "reference" => filters.references = values,
                "label" => filters.labels = values,
                _ => return Err(crate::http::unknown_filter(&key)),
            }
        }
        Ok(filters)
    }

    /// Whether `labels` has every `label` filter (`key` or `key=value`).
    pub(super) fn labels_match(&self, labels: &HashMap<String, String>) -> bool {
        self.labels.iter().all(|label| match label.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
            None => labels.contains_key(label),
        })
    }

    /// The summary if it passes, its tags narrowed to the matching ones when filtering by
    /// reference (as dockerd shows only the tags asked for).
    fn apply(&self, mut image: ImageSummary) -> Option<ImageSummary> {
        if let Some(dangling) = self.dangling {
            if dangling != image.repo_tags.is_empty() {
                return None;
            }
        }
        if !self.labels_match(&image.labels) {
            return None;
        }
        if !self.references.is_empty() {
            let matches = |tag: &String| self.references.iter().any(|p| reference_matches(p, tag));
            image.repo_tags.retain(matches);
            if image.repo_tags.is_empty() {
                return None;
            }
            let digest_matches = |digest: &String| {
                let repository = digest.split_once('@').map_or(digest.as_str(), |(r, _)| r);
                self.references.iter().any(|p| glob(p, repository))
            };
            image.repo_digests.retain(digest_matches);
        }
        Some(image)
    }
}

/// `busybox` matches `busybox:latest` (any tag of the repository); `busybox:1*` globs.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let repository = tag
        .rsplit_once(':')
        .map_or(tag, |(repo, t)| if t.contains('/') { tag } else { repo });
    glob(pattern, tag) || glob(pattern, repository)
}

/// `*` matches any run of characters except `/`, as Go's `path.Match` does.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i) && !rest[..i].contains('/'))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

pub(super) fn labels(image: &ResolvedImage) -> HashMap<String, String> {
    image
        .config
        .config
        .as_ref()
        .and_then(|c| c.get("Labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

/// An RFC 3339 time as Unix seconds (0 when absent or unreadable).
fn created_unix(created: Option<&str>) -> i64 {
    created
        .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// The 12 hex digits the CLI shows for an ID.
fn short_id(id: &str) -> String {
    short(id.strip_prefix("sha256:").unwrap_or(id))
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("No such image: {name}"))
}

pub(super) fn api(e: ImageError) -> ApiError {
    let message = e.to_string();
    match e {
        ImageError::NotFound(_) => ApiError::NotFound(message),
        ImageError::Reference(_) | ImageError::Ambiguous(_) => ApiError::InvalidParameter(message),
        ImageError::Containerd(e) => e.into(),
        ImageError::Unusable { .. } => ApiError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn new_tags_are_validated_and_normalized() {
        let r = new_tag(&params(&[("repo", "127.0.0.1:5000/x"), ("tag", "v2")])).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/x:v2");
        let r = new_tag(&params(&[("repo", "mine")])).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/mine:latest");
        for bad in [
            params(&[]),
            params(&[("repo", "Bad")]),
            params(&[("repo", "x"), ("tag", "-no")]),
            params(&[("repo", &format!("x@sha256:{}", "a".repeat(64)))]),
        ] {
            let e = new_tag(&bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}: {e}");
        }
    }

    #[test]
    fn filters_parse_both_formats_and_reject_unknown_keys() {
        let f = ImageFilters::parse(Some(r#"{"reference":{"busybox":true}}"#)).unwrap();
        assert_eq!(f.references, ["busybox"]);
        let f = ImageFilters::parse(Some(r#"{"dangling":["true"]}"#)).unwrap();
        assert_eq!(f.dangling, Some(true));
        let e = ImageFilters::parse(Some(r#"{"color":{"red":true}}"#)).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'color'");
        assert!(ImageFilters::parse(Some("{not json")).is_err());
        assert!(ImageFilters::parse(None).unwrap().references.is_empty());
    }

    #[test]
    fn references_match_repositories_tags_and_globs() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:1"));
        assert!(reference_matches("127.0.0.1:5000/b", "127.0.0.1:5000/b:v1"));
        assert!(!reference_matches("busybox:1", "busybox:latest"));
        assert!(!reference_matches("*", "a/b:1"));
    }

    #[test]
    fn history_pairs_steps_with_layers() {
        let step = |by: &str, empty| HistoryStep {
            created: Some("1970-01-01T00:00:10Z".into()),
            created_by: Some(by.into()),
            comment: None,
            empty_layer: empty,
        };
        let items = history_items(
            &[
                step("ADD rootfs", false),
                step("CMD sh", true),
                step("RUN x", false),
            ],
            &[100, 7],
        );
        let summary: Vec<(&str, i64, i64)> = items
            .iter()
            .map(|i| (i.created_by.as_str(), i.size, i.created))
            .collect();
        assert_eq!(
            summary,
            [("ADD rootfs", 100, 10), ("CMD sh", 0, 10), ("RUN x", 7, 10)]
        );
        assert!(items.iter().all(|i| i.id == "<missing>"));
        let bare = history_items(&[], &[5, 6]);
        assert_eq!(bare.iter().map(|i| i.size).collect::<Vec<_>>(), [5, 6]);
        // More non-empty steps than layers (a broken config) never panics.
        assert_eq!(history_items(&[step("a", false)], &[]).len(), 1);
    }

    #[test]
    fn created_times_parse() {
        assert_eq!(created_unix(Some("1970-01-01T00:01:00Z")), 60);
        assert_eq!(
            created_unix(Some("2024-01-01T00:00:00.123456789Z")),
            1_704_067_200
        );
        assert_eq!(created_unix(Some("garbage")), 0);
        assert_eq!(created_unix(None), 0);
    }

    #[test]
    fn ids_are_shortened_like_the_cli() {
        assert_eq!(
            short_id(&format!("sha256:{}", "0123456789abcdef".repeat(4))),
            "0123456789ab"
        );
        assert_eq!(short_id("abc"), "abc");
    }
}

//! containerd's image update by field mask: `labels`, `labels.<key>`, `target`, `annotations`
//! and `annotations.<key>` (the target's annotations); no mask replaces the whole image.

use std::collections::HashMap;

use keel_proto::images::Image;

use super::invalid;
use crate::metadata::Result;

/// `current` changed by `given` through `paths`, as containerd's `imageStore.Update` does:
/// a `labels.<key>` or `annotations.<key>` path absent from `given` sets an empty value, which
/// the store then drops (how a label is removed).
pub fn apply_update(mut current: Image, given: &Image, paths: &[String]) -> Result<Image> {
    if paths.is_empty() {
        return Ok(given.clone());
    }
    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            let value = given.labels.get(key).cloned().unwrap_or_default();
            current.labels.insert(key.to_string(), value);
            continue;
        }
        if let Some(key) = path.strip_prefix("annotations.") {
            let value = given_annotations(given).remove(key).unwrap_or_default();
            let target = current.target.get_or_insert_with(Default::default);
            target.annotations.insert(key.to_string(), value);
            continue;
        }
        match path.as_str() {
            "labels" => current.labels.clone_from(&given.labels),
            "target" => current.target.clone_from(&given.target),
            "annotations" => {
                let target = current.target.get_or_insert_with(Default::default);
                target.annotations = given_annotations(given);
            }
            _ => {
                return Err(invalid(format!(
                    "cannot update {path:?} field on image {:?}",
                    given.name
                )))
            }
        }
    }
    Ok(current)
}

/// The target's annotations in `given`; containerd's target is not nullable, so none if absent.
fn given_annotations(given: &Image) -> HashMap<String, String> {
    given
        .target
        .as_ref()
        .map(|t| t.annotations.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::types::Descriptor;

    fn image(labels: &[(&str, &str)], digest: &str) -> Image {
        Image {
            name: "x".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            target: Some(Descriptor {
                media_type: "m".into(),
                digest: digest.into(),
                size: 1,
                annotations: [("a".to_string(), digest.to_string())].into(),
            }),
            ..Default::default()
        }
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn masks_change_only_their_fields() {
        let current = image(&[("keep", "1"), ("k", "old")], "d1");
        let given = image(&[("k", "new"), ("other", "2")], "d2");
        let one = apply_update(current.clone(), &given, &paths(&["labels.k"])).unwrap();
        assert_eq!(one.labels.get("k").map(String::as_str), Some("new"));
        assert_eq!(one.labels.get("keep").map(String::as_str), Some("1"));
        assert!(!one.labels.contains_key("other"));
        assert_eq!(one.target, current.target);

        let gone = apply_update(current.clone(), &given, &paths(&["labels.keep"])).unwrap();
        assert_eq!(gone.labels.get("keep").map(String::as_str), Some(""));

        let all = apply_update(current.clone(), &given, &paths(&["labels"])).unwrap();
        assert_eq!(all.labels, given.labels);

        let target = apply_update(current.clone(), &given, &paths(&["target"])).unwrap();
        assert_eq!(target.target, given.target);
        assert_eq!(target.labels, current.labels);

        let ann = apply_update(current.clone(), &given, &paths(&["annotations.a"])).unwrap();
        let t = ann.target.unwrap();
        assert_eq!(t.digest, "d1");
        assert_eq!(t.annotations.get("a").map(String::as_str), Some("d2"));

        let whole = apply_update(current.clone(), &given, &[]).unwrap();
        assert_eq!(whole, given, "no mask replaces the image");

        let bad = apply_update(current, &given, &paths(&["name"]));
        assert!(
            matches!(&bad, Err(crate::metadata::MetadataError::InvalidArgument(m))
                if m == "cannot update \"name\" field on image \"x\": invalid argument"),
            "{bad:?}"
        );
    }
}

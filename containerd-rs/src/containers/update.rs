//! Update masks: which fields of a container an Update changes, as containerd applies them.

use keel_proto::containers::Container;

use super::{drop_empty_labels, invalid, runtime_name, validate};
use crate::metadata::{MetadataError, Result};

/// What an empty update mask replaces: every mutable field.
const MUTABLE: [&str; 5] = ["labels", "spec", "extensions", "image", "snapshotkey"];

/// Applies `given` to `current` through the field mask `paths`, as containerd does: `labels`,
/// `labels.<key>`, `spec`, `extensions`, `extensions.<name>`, `image` and `snapshotkey` can
/// change; any other path (`id`, `runtime`, `snapshotter`, ...) is InvalidArgument. An empty
/// mask replaces every mutable field, and then a different runtime name or snapshotter is
/// refused rather than silently ignored. A `labels.<key>` or `extensions.<name>` missing from
/// `given` removes that entry (containerd 1.6 keeps an empty `Any` for the extension; an
/// empty entry has no use, so we do not). The result is validated; timestamps are the
/// caller's business.
pub fn apply_update(current: Container, given: &Container, paths: &[String]) -> Result<Container> {
    let mut updated = current;
    let full: Vec<String>;
    let paths = if paths.is_empty() {
        if updated.snapshotter != given.snapshotter {
            return Err(invalid("container.Snapshotter field is immutable"));
        }
        if runtime_name(&updated) != runtime_name(given) {
            return Err(invalid("container.Runtime.Name field is immutable"));
        }
        full = MUTABLE.iter().map(ToString::to_string).collect();
        &full
    } else {
        paths
    };
    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            match given.labels.get(key) {
                Some(value) => updated.labels.insert(key.to_string(), value.clone()),
                None => updated.labels.remove(key),
            };
            continue;
        }
        if let Some(key) = path.strip_prefix("extensions.") {
            match given.extensions.get(key) {
                Some(value) => updated.extensions.insert(key.to_string(), value.clone()),
                None => updated.extensions.remove(key),
            };
            continue;
        }
        match path.as_str() {
            "labels" => updated.labels = given.labels.clone(),
            "spec" => updated.spec = given.spec.clone(),
            "extensions" => updated.extensions = given.extensions.clone(),
            "image" => updated.image = given.image.clone(),
            "snapshotkey" => updated.snapshot_key = given.snapshot_key.clone(),
            _ => {
                return Err(invalid(format!(
                    "cannot update {path:?} field on {:?}",
                    given.id
                )))
            }
        }
    }
    drop_empty_labels(&mut updated);
    validate(&updated).map_err(|e| match e {
        MetadataError::InvalidArgument(m) => {
            MetadataError::InvalidArgument(format!("update failed validation: {m}"))
        }
        other => other,
    })?;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::tests::{any, container, invalid_message, paths};
    use crate::containers::MAX_LABEL_SIZE;
    use keel_proto::containers::container::Runtime;

    #[test]
    fn a_label_path_sets_or_removes_one_label() {
        let mut given = Container {
            id: "c".into(),
            ..Default::default()
        };
        given.labels.insert("new".into(), "1".into());
        let updated = apply_update(
            container("c"),
            &given,
            &paths(&["labels.new", "labels.app"]),
        )
        .unwrap();
        assert_eq!(updated.labels.get("new").map(String::as_str), Some("1"));
        assert!(
            !updated.labels.contains_key("app"),
            "absent in the update: removed"
        );
        assert!(updated.labels.contains_key("io.k8s.name"), "unnamed: kept");
        assert_eq!(updated.image, container("c").image, "not in the mask: kept");
        given.labels.insert("io.k8s.name".into(), String::new());
        let updated =
            apply_update(container("c"), &given, &paths(&["labels.io.k8s.name"])).unwrap();
        assert!(
            !updated.labels.contains_key("io.k8s.name"),
            "an empty value removes"
        );
    }

    #[test]
    fn whole_fields_are_replaced() {
        let mut given = container("c");
        given.labels.clear();
        given.image = "other".into();
        given.snapshot_key = "key2".into();
        given.spec = Some(any("spec", b"new"));
        given.extensions.clear();
        given.extensions.insert("b".into(), any("y", b"2"));
        let updated = apply_update(
            container("c"),
            &given,
            &paths(&["labels", "image", "snapshotkey", "spec", "extensions.b"]),
        )
        .unwrap();
        assert!(updated.labels.is_empty());
        assert_eq!(updated.image, "other");
        assert_eq!(updated.snapshot_key, "key2");
        assert_eq!(updated.spec, given.spec);
        assert_eq!(
            updated.extensions.len(),
            2,
            "extensions.b adds b, keeps ext"
        );
        let updated = apply_update(container("c"), &given, &paths(&["extensions"])).unwrap();
        assert_eq!(updated.extensions, given.extensions);
        let updated = apply_update(container("c"), &given, &paths(&["extensions.ext"])).unwrap();
        assert!(updated.extensions.is_empty());
    }

    #[test]
    fn an_empty_mask_replaces_every_mutable_field() {
        let mut given = container("c");
        given.labels.clear();
        given.image = String::new();
        given.snapshot_key = String::new();
        given.extensions.clear();
        let updated = apply_update(container("c"), &given, &[]).unwrap();
        assert_eq!(updated, given);
        let mut other_runtime = container("c");
        other_runtime.runtime = Some(Runtime {
            name: "io.containerd.keel.v2".into(),
            options: None,
        });
        let m = invalid_message(apply_update(container("c"), &other_runtime, &[]));
        assert!(m.contains("Runtime.Name field is immutable"), "{m}");
        let mut other_snapshotter = container("c");
        other_snapshotter.snapshotter = "native".into();
        let m = invalid_message(apply_update(container("c"), &other_snapshotter, &[]));
        assert!(m.contains("Snapshotter field is immutable"), "{m}");
    }

    #[test]
    fn immutable_and_unknown_paths_are_refused() {
        for path in [
            "id",
            "runtime",
            "runtime.name",
            "snapshotter",
            "created_at",
            "label",
        ] {
            let m = invalid_message(apply_update(
                container("c"),
                &container("c"),
                &paths(&[path]),
            ));
            assert_eq!(
                m,
                format!("cannot update {path:?} field on \"c\": invalid argument")
            );
        }
    }

    #[test]
    fn the_result_is_validated() {
        let given = Container {
            id: "c".into(),
            ..Default::default()
        };
        let m = invalid_message(apply_update(container("c"), &given, &paths(&["spec"])));
        assert_eq!(
            m,
            "update failed validation: container.Spec must be set: invalid argument"
        );
        let mut big = given.clone();
        big.labels.insert("k".into(), "v".repeat(MAX_LABEL_SIZE));
        let m = invalid_message(apply_update(container("c"), &big, &paths(&["labels.k"])));
        assert!(m.contains("greater than maximum size"), "{m}");
    }
}

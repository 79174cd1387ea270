//! Containers: metadata only (what to run, with which runtime, spec, rootfs snapshot, labels
//! and extensions); running one is the tasks' job. Changes are published as
//! `/containers/{create,update,delete}` in the container's namespace.
//!
//! Record (see the schema in [`crate::metadata`]): kind [`KIND`], id = the container id, value
//! = the prost encoding of `keel_proto::containers::Container` as the client gave it, with
//! `created_at`/`updated_at` set here and labels with empty values dropped (containerd never
//! stores those, which is how `ctr containers label ID key=` removes a label). The tasks read
//! the record as is.
//!
//! Messages carry containerd's errdefs suffix (`: not found`, ...) so they read on the wire
//! exactly as containerd's do.

use std::time::SystemTime;

use keel_proto::containers::Container;
use keel_proto::events::{container_create, ContainerCreate, ContainerDelete, ContainerUpdate};
use keel_proto::prost::Message;
use keel_proto::topics;

use crate::filters::{Fields, Filter};
use crate::identifiers;
use crate::metadata::{MetadataError, Result};
use crate::supervisor::Supervisor;

mod update;

pub use update::apply_update;

/// The metadata kind of container records.
pub const KIND: &str = "containers";

/// containerd's limit on a label's key and value together.
const MAX_LABEL_SIZE: usize = 4096;

fn invalid(message: impl std::fmt::Display) -> MetadataError {
    MetadataError::InvalidArgument(format!("{message}: invalid argument"))
}

/// Store errors worded as containerd 1.6 words them, which differs by call: Get names the
/// namespace, Update quotes the id, Delete does not.
fn named(e: MetadataError, not_found: impl FnOnce() -> String, id: &str) -> MetadataError {
    match e {
        MetadataError::NotFound(_) => {
            MetadataError::NotFound(format!("{}: not found", not_found()))
        }
        MetadataError::AlreadyExists(_) => {
            MetadataError::AlreadyExists(format!("container {id:?}: already exists"))
        }
        other => other,
    }
}

fn decode(id: &str, record: &[u8]) -> Result<Container> {
    Container::decode(record).map_err(|e| {
        MetadataError::Storage(format!("container {id:?}: record does not decode: {e}"))
    })
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// containerd's `validateContainer`: what every stored container must have.
pub fn validate(container: &Container) -> Result<()> {
    identifiers::validate(&container.id).map_err(|e| invalid(format!("container.ID: {e}")))?;
    if container.extensions.keys().any(String::is_empty) {
        return Err(invalid("container.Extension keys must not be zero-length"));
    }
    for (key, value) in &container.labels {
        if key.len() + value.len() > MAX_LABEL_SIZE {
            let short: String = key.chars().take(10).collect();
            return Err(invalid(format!(
                "containers.Labels: label key and value greater than maximum size \
                 ({MAX_LABEL_SIZE} bytes), key: {short}"
            )));
        }
    }
    if container.runtime.as_ref().is_none_or(|r| r.name.is_empty()) {
        return Err(invalid("container.Runtime.Name must be set"));
    }
    let Some(spec) = &container.spec else {
        return Err(invalid("container.Spec must be set"));
    };
    // containerd stores any bytes here and fails only when a task is made of them; the spec
    // of a runtime-spec type must be a JSON object, so refuse it where it comes in.
    if spec.type_url.ends_with(SPEC_TYPE_NAME) {
        if let Err(e) =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&spec.value)
        {
            return Err(invalid(format!(
                "container.Spec is not a JSON OCI runtime spec: {e}"
            )));
        }
    }
    if !container.snapshot_key.is_empty() && container.snapshotter.is_empty() {
        return Err(invalid(
            "container.Snapshotter must be set if container.SnapshotKey is set",
        ));
    }
    Ok(())
}

fn drop_empty_labels(container: &mut Container) {
    container.labels.retain(|_, v| !v.is_empty());
}

fn runtime_name(container: &Container) -> &str {
    container.runtime.as_ref().map_or("", |r| r.name.as_str())
}

/// The OCI runtime spec's type, as containerd's typeurl names it (with a `types.containerd.io/`
/// prefix).
const SPEC_TYPE_NAME: &str = "opencontainers/runtime-spec/1/Spec";

/// Stores a new container and publishes `/containers/create`.
pub fn create(
    supervisor: &Supervisor,
    namespace: &str,
    mut container: Container,
) -> Result<Container> {
    let _span = tracing::info_span!("create", container = %container.id).entered();
    drop_empty_labels(&mut container);
    validate(&container).map_err(|e| match e {
        MetadataError::InvalidArgument(m) => MetadataError::InvalidArgument(format!(
            "create container {:?} failed validation: {m}",
            container.id
        )),
        other => other,
    })?;
    let at = now();
    container.created_at = Some(at);
    container.updated_at = Some(at);
    let _hold = supervisor.gc.hold();
    supervisor
        .store
        .create(namespace, KIND, &container.id, &container.encode_to_vec())
        .map_err(|e| named(e, String::new, &container.id))?;
    tracing::debug!("created");
    let runtime = container.runtime.clone().unwrap_or_default();
    supervisor.publish(
        namespace,
        topics::CONTAINER_CREATE,
        &ContainerCreate {
            id: container.id.clone(),
            image: container.image.clone(),
            runtime: Some(container_create::Runtime {
                name: runtime.name,
                options: runtime.options,
            }),
        },
    );
    Ok(container)
}

/// One container.
pub fn get(supervisor: &Supervisor, namespace: &str, id: &str) -> Result<Container> {
    let record = supervisor.store.get(namespace, KIND, id).map_err(|e| {
        named(
            e,
            || format!("container {id:?} in namespace {namespace:?}"),
            id,
        )
    })?;
    decode(id, &record)
}

/// Every container of `namespace`, as stored (the garbage collector's roots).
pub fn records(store: &crate::metadata::Store, namespace: &str) -> Result<Vec<Container>> {
    store
        .list(namespace, KIND)?
        .into_iter()
        .map(|(id, record)| decode(&id, &record))
        .collect()
}

/// The containers of `namespace` that pass any of `filters` (all of them if none).
pub fn list(
    supervisor: &Supervisor,
    namespace: &str,
    filters: &[String],
) -> Result<Vec<Container>> {
    let filter = Filter::parse_all(filters).map_err(invalid)?;
    let mut all = Vec::new();
    for (id, record) in supervisor.store.list(namespace, KIND)? {
        let container = decode(&id, &record)?;
        if filter.matches(&container) {
            all.push(container);
        }
    }
    Ok(all)
}

/// Changes a container through the field mask `paths` (see [`apply_update`]) in one metadata
/// transaction, and publishes `/containers/update`.
pub fn update(
    supervisor: &Supervisor,
    namespace: &str,
    given: Container,
    paths: &[String],
) -> Result<Container> {
    if given.id.is_empty() {
        // The one message containerd sends without its errdefs suffix.
        return Err(MetadataError::InvalidArgument(
            "Container.ID required".into(),
        ));
    }
    let _span = tracing::info_span!("update", container = %given.id).entered();
    let _hold = supervisor.gc.hold();
    let record = supervisor
        .store
        .update(namespace, KIND, &given.id, |old| {
            let current = decode(&given.id, &old)?;
            let created_at = current.created_at;
            let mut updated = apply_update(current, &given, paths)?;
            updated.id.clone_from(&given.id);
            updated.created_at = created_at;
            updated.updated_at = Some(now());
            Ok(updated.encode_to_vec())
        })
        .map_err(|e| named(e, || format!("container {:?}", given.id), &given.id))?;
    let updated = decode(&given.id, &record)?;
    tracing::debug!(?paths, "updated");
    supervisor.publish(
        namespace,
        topics::CONTAINER_UPDATE,
        &ContainerUpdate {
            id: updated.id.clone(),
            image: updated.image.clone(),
            labels: updated.labels.clone(),
            snapshot_key: updated.snapshot_key.clone(),
        },
    );
    Ok(updated)
}

/// Deletes a container's record and publishes `/containers/delete`. As in containerd, a task
/// does not hold its container here: clients delete the task first.
pub fn delete(supervisor: &Supervisor, namespace: &str, id: &str) -> Result<()> {
    let _span = tracing::info_span!("delete", container = %id).entered();
    {
        let _hold = supervisor.gc.hold();
        supervisor
            .store
            .delete(namespace, KIND, id)
            .map_err(|e| named(e, || format!("container {id}"), id))?;
    }
    supervisor.gc.deleted();
    tracing::debug!("deleted");
    supervisor.publish(
        namespace,
        topics::CONTAINER_DELETE,
        &ContainerDelete { id: id.to_string() },
    );
    Ok(())
}

/// containerd's container adaptor: `id`, `image`, `runtime.name` and `labels.<key>` (a key
/// with dots is the rest of the path joined); an empty value counts as absent.
impl Fields for Container {
    fn field(&self, path: &[String]) -> Option<String> {
        let present = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match path {
            [f] if f == "id" => present(&self.id),
            [f] if f == "image" => present(&self.image),
            [f, name] if f == "runtime" && name == "name" => present(runtime_name(self)),
            [f, key @ ..] if f == "labels" && !key.is_empty() => {
                self.labels.get(&key.join(".")).cloned()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::containers::container::Runtime;
    use prost_types::Any;

    use crate::test_support::supervisor;

    pub(super) fn any(type_url: &str, value: &[u8]) -> Any {
        Any {
            type_url: type_url.into(),
            value: value.to_vec(),
        }
    }

    pub(super) fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            labels: [("app", "web"), ("io.k8s.name", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            image: "docker.io/library/busybox:latest".into(),
            runtime: Some(Runtime {
                name: "io.containerd.runc.v2".into(),
                options: Some(any("containerd.runc.v1.Options", b"")),
            }),
            spec: Some(any(
                "types.containerd.io/opencontainers/runtime-spec/1/Spec",
                b"{}",
            )),
            snapshotter: "overlayfs".into(),
            snapshot_key: id.into(),
            extensions: [("ext".to_string(), any("x", b"1"))].into_iter().collect(),
            ..Default::default()
        }
    }

    pub(super) fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(ToString::to_string).collect()
    }

    pub(super) fn invalid_message(r: Result<Container>) -> String {
        match r {
            Err(MetadataError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn passes(filter: &str, c: &Container) -> bool {
        Filter::parse_all(&[filter]).unwrap().matches(c)
    }

    #[test]
    fn filters_see_containerds_fields() {
        let c = container("web-1");
        for yes in [
            "id==web-1",
            "image==docker.io/library/busybox:latest",
            "runtime.name==io.containerd.runc.v2",
            "labels.app==web",
            "labels.io.k8s.name==x",
            r#"labels."io.k8s.name"==x"#,
            "labels.app",
            "id~=^web-",
        ] {
            assert!(passes(yes, &c), "{yes}");
        }
        for no in [
            "id==web-2",
            "labels.app==db",
            "labels",
            "runtime",
            "runtime.options",
            "snapshotter==overlayfs",
            "snapshotkey==web-1",
            "spec",
        ] {
            assert!(!passes(no, &c), "{no}");
        }
        let mut bare = c.clone();
        bare.image = String::new();
        assert!(!passes("image", &bare), "an empty image is absent");
        assert!(!passes("image!=x", &bare));
    }

    #[test]
    fn create_validates_as_containerd_does() {
        let (_dir, s) = supervisor();
        type Change = fn(&mut Container);
        let cases: [(&str, Change); 7] = [
            ("container.ID: identifier \"a/b\" must match", |c| {
                c.id = "a/b".into()
            }),
            ("container.ID: identifier must not be empty", |c| {
                c.id.clear()
            }),
            ("container.Runtime.Name must be set", |c| c.runtime = None),
            ("container.Spec must be set", |c| c.spec = None),
            (
                "Snapshotter must be set if container.SnapshotKey is set",
                |c| {
                    c.snapshotter.clear();
                },
            ),
            ("Extension keys must not be zero-length", |c| {
                c.extensions.insert(String::new(), Any::default());
            }),
            ("container.Spec is not a JSON OCI runtime spec", |c| {
                if let Some(spec) = c.spec.as_mut() {
                    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
                    spec.value = b"not json".to_vec();
                }
            }),
        ];
        for (expected, change) in cases {
            let mut c = container("c");
            change(&mut c);
            let m = invalid_message(create(&s, "ns", c));
            assert!(m.starts_with("create container \""), "{m}");
            assert!(m.contains("failed validation: "), "{m}");
            assert!(m.contains(expected), "{m}");
            assert!(m.ends_with(": invalid argument"), "{m}");
        }
        assert!(
            s.store.list("ns", KIND).unwrap().is_empty(),
            "nothing stored"
        );
    }

    #[test]
    fn lifecycle_with_events() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_dir, s) = supervisor();
        let mut events = s.events.subscribe(Filter::default());
        let mut c = container("c1");
        c.labels.insert("empty".into(), String::new());
        let created = create(&s, "ns", c).unwrap();
        assert!(
            !created.labels.contains_key("empty"),
            "empty labels are not stored"
        );
        assert!(created.created_at.is_some());
        assert_eq!(created.created_at, created.updated_at);
        let got = get(&s, "ns", "c1").unwrap();
        assert_eq!(got, created, "the record is the message as created");
        assert!(matches!(
            create(&s, "ns", container("c1")),
            Err(MetadataError::AlreadyExists(m)) if m == "container \"c1\": already exists"
        ));
        create(&s, "ns", container("c2")).unwrap();
        create(&s, "other", container("c3")).unwrap();
        let ids = |filters: &[&str]| -> Vec<String> {
            let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
            list(&s, "ns", &filters)
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(&[]), ["c1", "c2"]);
        assert_eq!(ids(&["id==c2"]), ["c2"]);
        assert_eq!(ids(&["id==c2", "id==c1"]), ["c1", "c2"]);
        assert!(matches!(
            list(&s, "ns", &["id=".to_string()]),
            Err(MetadataError::InvalidArgument(_))
        ));

        let mut given = Container {
            id: "c1".into(),
            ..Default::default()
        };
        given.labels.insert("k".into(), "v".into());
        let updated = update(&s, "ns", given.clone(), &paths(&["labels.k"])).unwrap();
        assert_eq!(updated.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(updated.created_at, created.created_at);
        assert_eq!(get(&s, "ns", "c1").unwrap(), updated);
        let before = get(&s, "ns", "c1").unwrap();
        assert!(update(&s, "ns", given.clone(), &paths(&["runtime"])).is_err());
        assert_eq!(
            get(&s, "ns", "c1").unwrap(),
            before,
            "a refused update changes nothing"
        );
        given.id = "nope".into();
        assert!(matches!(
            update(&s, "ns", given, &paths(&["labels.k"])),
            Err(MetadataError::NotFound(m)) if m == "container \"nope\": not found"
        ));

        delete(&s, "ns", "c1").unwrap();
        assert!(matches!(
            get(&s, "ns", "c1"),
            Err(MetadataError::NotFound(m)) if m == "container \"c1\" in namespace \"ns\": not found"
        ));
        assert!(matches!(
            delete(&s, "ns", "c1"),
            Err(MetadataError::NotFound(m)) if m == "container c1: not found"
        ));

        s.publish("ns", "/marker", &ContainerDelete::default());
        rt.block_on(async {
            let mut seen = Vec::new();
            loop {
                let e = events.next().await.unwrap();
                if e.topic == "/marker" {
                    break;
                }
                if e.topic == topics::CONTAINER_CREATE && seen.is_empty() {
                    let c = ContainerCreate::decode(e.payload.as_slice()).unwrap();
                    assert_eq!(c.id, "c1");
                    assert_eq!(c.runtime.unwrap().name, "io.containerd.runc.v2");
                }
                if e.topic == topics::CONTAINER_UPDATE {
                    assert_eq!(e.type_url, "containerd.events.ContainerUpdate");
                    let u = ContainerUpdate::decode(e.payload.as_slice()).unwrap();
                    assert_eq!(u.labels.get("k").map(String::as_str), Some("v"));
                }
                seen.push(format!("{} {}", e.namespace, e.topic));
            }
            // Nothing for the refused calls.
            assert_eq!(
                seen,
                [
                    "ns /containers/create",
                    "ns /containers/create",
                    "other /containers/create",
                    "ns /containers/update",
                    "ns /containers/delete",
                ]
            );
        });
    }
}

//! The topics containerd publishes each event on (`Envelope.topic`); clients filter on them
//! (`ctr events 'topic=="/tasks/exit"'`).

/// [`TaskCreate`](crate::events::TaskCreate)
pub const TASK_CREATE: &str = "/tasks/create";
/// [`TaskStart`](crate::events::TaskStart)
pub const TASK_START: &str = "/tasks/start";
/// [`TaskOOM`](crate::events::TaskOom)
pub const TASK_OOM: &str = "/tasks/oom";
/// [`TaskExit`](crate::events::TaskExit)
pub const TASK_EXIT: &str = "/tasks/exit";
/// [`TaskDelete`](crate::events::TaskDelete)
pub const TASK_DELETE: &str = "/tasks/delete";
/// [`TaskExecAdded`](crate::events::TaskExecAdded)
pub const TASK_EXEC_ADDED: &str = "/tasks/exec-added";
/// [`TaskExecStarted`](crate::events::TaskExecStarted)
pub const TASK_EXEC_STARTED: &str = "/tasks/exec-started";
/// [`TaskPaused`](crate::events::TaskPaused)
pub const TASK_PAUSED: &str = "/tasks/paused";
/// [`TaskResumed`](crate::events::TaskResumed)
pub const TASK_RESUMED: &str = "/tasks/resumed";
/// [`TaskCheckpointed`](crate::events::TaskCheckpointed)
pub const TASK_CHECKPOINTED: &str = "/tasks/checkpointed";

/// [`ContainerCreate`](crate::events::ContainerCreate)
pub const CONTAINER_CREATE: &str = "/containers/create";
/// [`ContainerUpdate`](crate::events::ContainerUpdate)
pub const CONTAINER_UPDATE: &str = "/containers/update";
/// [`ContainerDelete`](crate::events::ContainerDelete)
pub const CONTAINER_DELETE: &str = "/containers/delete";

/// [`NamespaceCreate`](crate::events::NamespaceCreate)
pub const NAMESPACE_CREATE: &str = "/namespaces/create";
/// [`NamespaceUpdate`](crate::events::NamespaceUpdate)
pub const NAMESPACE_UPDATE: &str = "/namespaces/update";
/// [`NamespaceDelete`](crate::events::NamespaceDelete)
pub const NAMESPACE_DELETE: &str = "/namespaces/delete";

/// [`ImageCreate`](crate::images::ImageCreate)
pub const IMAGE_CREATE: &str = "/images/create";
/// [`ImageUpdate`](crate::images::ImageUpdate)
pub const IMAGE_UPDATE: &str = "/images/update";
/// [`ImageDelete`](crate::images::ImageDelete)
pub const IMAGE_DELETE: &str = "/images/delete";

/// [`ContentDelete`](crate::events::ContentDelete)
pub const CONTENT_DELETE: &str = "/content/delete";

/// [`SnapshotPrepare`](crate::events::SnapshotPrepare)
pub const SNAPSHOT_PREPARE: &str = "/snapshot/prepare";
/// [`SnapshotCommit`](crate::events::SnapshotCommit)
pub const SNAPSHOT_COMMIT: &str = "/snapshot/commit";
/// [`SnapshotRemove`](crate::events::SnapshotRemove)
pub const SNAPSHOT_REMOVE: &str = "/snapshot/remove";

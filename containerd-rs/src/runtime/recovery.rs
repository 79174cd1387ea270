//! Restart recovery, containerd's `loadShims`: every bundle left under
//! `<state>/io.containerd.runtime.v2.task/<ns>/<id>` is a task we had. Its shim is reconnected
//! if it still answers (the task stays, RUNNING or whatever it is); a shim that is gone is
//! cleaned up after with its binary's `delete` and the task's TaskExit and TaskDelete are
//! published (containerd logs only; our clients learn the task ended); a bundle of a container
//! that no longer exists is taken down.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::ConnectRequest;
use keel_proto::containers::Container;
use keel_proto::prost::Message;

use super::binary;
use super::bundle::{Bundle, TASK_DIR};
use super::client::{ShimClient, ShimError};
use super::manager::Manager;
use super::shim::{Exit, Shim};
use super::shim_log;
use crate::metadata::Store;

/// How long a shim found on restart has to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Manager {
    /// Reconnects to the shims of the tasks in the state directory, cleans up after the dead
    /// ones. Runs once, before the daemon serves.
    pub async fn recover(&self, store: &Store) {
        let base = self.inner().state.join(TASK_DIR);
        for namespace in visible_dirs(&base) {
            for id in visible_dirs(&base.join(&namespace)) {
                let bundle = Bundle::at(&self.inner().state, &namespace, &id);
                self.recover_task(store, bundle).await;
            }
        }
    }

    async fn recover_task(&self, store: &Store, bundle: Bundle) {
        let (namespace, id) = (bundle.namespace.clone(), bundle.id.clone());
        if bundle.is_empty() {
            if let Err(e) = bundle.delete() {
                tracing::warn!(%namespace, %id, "removing an empty bundle: {e}");
            }
            return;
        }
        let container = load_container(store, &namespace, &id);
        // The binary: from the container's runtime, as containerd resolves it; else the one
        // recorded in the bundle.
        let path = container
            .as_ref()
            .and_then(|c| c.runtime.as_ref())
            .and_then(|r| binary::resolve_here(&r.name).ok())
            .or_else(|| bundle.shim_binary());
        let reconnected = self.reconnect(&bundle, path.clone()).await;
        match (container.is_some(), reconnected) {
            (true, Ok(shim)) => {
                tracing::info!(%namespace, %id, pid = shim.pid(), "reconnected to the task's shim");
                self.adopt(shim);
            }
            (true, Err(e)) => {
                tracing::warn!(%namespace, %id, "the task's shim is gone ({e}); cleaning up");
                let exit = match path {
                    Some(path) => {
                        let binary = self.shim_binary(path, &namespace, &id);
                        self.delete_dead(&binary, &bundle).await
                    }
                    None => {
                        remove_bundle(&bundle);
                        None
                    }
                };
                let exit = exit.unwrap_or(Exit {
                    pid: 0,
                    status: 255,
                    at: SystemTime::now(),
                });
                self.publish_exit(&namespace, &id, exit);
            }
            (false, Ok(shim)) => {
                tracing::warn!(%namespace, %id, "the task's container is gone; taking the task down");
                self.teardown(&shim).await;
            }
            (false, Err(_)) => {
                tracing::warn!(%namespace, %id, "removing the bundle of a gone container and shim");
                match path {
                    Some(path) => {
                        let binary = self.shim_binary(path, &namespace, &id);
                        self.delete_dead(&binary, &bundle).await;
                    }
                    None => remove_bundle(&bundle),
                }
            }
        }
    }

    /// Connects to the shim whose address the bundle holds and checks that it answers.
    async fn reconnect(
        &self,
        bundle: &Bundle,
        binary: Option<std::path::PathBuf>,
    ) -> Result<Arc<Shim>, ShimError> {
        let address = bundle.address().map_err(|e| ShimError::Connect {
            address: bundle.path.join("address").display().to_string(),
            message: e.to_string(),
        })?;
        let client = tokio::time::timeout(
            CONNECT_TIMEOUT,
            ShimClient::dial(&address, &bundle.namespace),
        )
        .await
        .map_err(|_| ShimError::Timeout {
            method: "connect",
            limit: CONNECT_TIMEOUT,
        })??;
        let mut request = ConnectRequest::new();
        request.id = bundle.id.clone();
        let connected = client.connect(&request, Some(CONNECT_TIMEOUT)).await?;
        let path = binary.unwrap_or_default();
        let shim = Arc::new(Shim::new(
            bundle.clone(),
            self.shim_binary(path, &bundle.namespace, &bundle.id),
            client,
        ));
        shim.set_pid(connected.task_pid);
        match shim_log::copy(&bundle.log(), &bundle.namespace, &bundle.id) {
            Ok(copier) => shim.set_log(copier),
            Err(e) => tracing::debug!(
                namespace = %bundle.namespace,
                id = %bundle.id,
                "not copying the shim's log: {e}"
            ),
        }
        Ok(shim)
    }
}

fn load_container(store: &Store, namespace: &str, id: &str) -> Option<Container> {
    let bytes = store.get(namespace, "containers", id).ok()?;
    Container::decode(bytes.as_slice()).ok()
}

fn remove_bundle(bundle: &Bundle) {
    if let Err(e) = bundle.delete() {
        tracing::warn!(namespace = %bundle.namespace, id = %bundle.id, "removing the bundle: {e}");
    }
}

/// The directories in `dir` whose names do not start with a dot (hidden ones are being
/// deleted).
fn visible_dirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_non_directories_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["b", "a", ".gone"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("file"), "").unwrap();
        assert_eq!(visible_dirs(dir.path()), ["a", "b"]);
        assert!(visible_dirs(&dir.path().join("missing")).is_empty());
    }
}

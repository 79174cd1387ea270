//! Looking at tasks: the state of one process, every task of the namespace, a task's pids, and
//! its metrics (the shim's cgroup statistics).

use std::time::{Duration, SystemTime};

use containerd_shim_protos::api;
use keel_proto::task_types::{Process, ProcessInfo, Status};
use keel_proto::tasks::{
    GetRequest, GetResponse, ListPidsRequest, ListPidsResponse, ListTasksRequest,
    ListTasksResponse, MetricsRequest, MetricsResponse,
};
use keel_proto::types::Metric;

use super::{from_shim, process_name, Result, TaskError, Tasks};
use crate::filters::{Fields, Filter};
use crate::runtime::protos::{any_field, status_from_shim, timestamp_field};
use crate::runtime::{Shim, ShimError};

/// How long List waits for each shim's state (containerd's `stateTimeout`).
const STATE_TIMEOUT: Duration = Duration::from_secs(2);

impl Tasks {
    /// The state of the init process, or of the exec `exec_id`.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn get(&self, namespace: &str, req: GetRequest) -> Result<GetResponse> {
        let shim = self.task(namespace, &req.container_id)?;
        let process = state(&shim, &req.exec_id, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(GetResponse {
            process: Some(process),
        })
    }

    /// Every task of the namespace (its init process), those the filter passes.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace))]
    pub async fn list(&self, namespace: &str, req: ListTasksRequest) -> Result<ListTasksResponse> {
        let filter = Filter::parse_all(&[req.filter])
            .map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
        let mut tasks = Vec::new();
        for shim in self.manager().list(namespace) {
            let process = match state(&shim, "", Some(STATE_TIMEOUT)).await {
                Ok(process) => process,
                // Deleted meanwhile.
                Err(ShimError::Status {
                    code: ttrpc::Code::NOT_FOUND,
                    ..
                }) => continue,
                Err(e) => {
                    tracing::warn!(id = shim.id(), "state of the task: {e}");
                    Process {
                        container_id: shim.id().to_string(),
                        id: shim.id().to_string(),
                        pid: shim.pid(),
                        status: Status::Unknown.into(),
                        ..Default::default()
                    }
                }
            };
            if filter.matches(&process) {
                tasks.push(process);
            }
        }
        Ok(ListTasksResponse { tasks })
    }

    /// Every process of the task, with the shim's details about each (its exec id).
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn list_pids(
        &self,
        namespace: &str,
        req: ListPidsRequest,
    ) -> Result<ListPidsResponse> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::PidsRequest::new();
        request.id = req.container_id.clone();
        let pids = shim
            .client()
            .pids(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, ""), e))?;
        let processes = pids
            .processes
            .iter()
            .map(|p| ProcessInfo {
                pid: p.pid,
                info: any_field(&p.info),
            })
            .collect();
        Ok(ListPidsResponse { processes })
    }

    /// The metrics of the namespace's tasks that the filters pass (`id==web`); tasks whose
    /// shim cannot say are left out.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace))]
    pub async fn metrics(&self, namespace: &str, req: MetricsRequest) -> Result<MetricsResponse> {
        let filter = Filter::parse_all(&req.filters)
            .map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
        let mut metrics = Vec::new();
        for shim in self.manager().list(namespace) {
            if !filter.matches(&TaskFields(&shim)) {
                continue;
            }
            let collected = SystemTime::now();
            let mut request = api::StatsRequest::new();
            request.id = shim.id().to_string();
            match shim.client().stats(&request, None).await {
                Ok(stats) => metrics.push(Metric {
                    timestamp: Some(collected.into()),
                    id: shim.id().to_string(),
                    data: any_field(&stats.stats),
                }),
                Err(ShimError::Status {
                    code: ttrpc::Code::NOT_FOUND,
                    ..
                }) => {}
                Err(e) => tracing::warn!(id = shim.id(), "metrics of the task: {e}"),
            }
        }
        Ok(MetricsResponse { metrics })
    }
}

/// The state of one process of the task, as our API's `Process`.
async fn state(
    shim: &Shim,
    exec_id: &str,
    limit: Option<Duration>,
) -> std::result::Result<Process, ShimError> {
    let mut request = api::StateRequest::new();
    request.id = shim.id().to_string();
    request.exec_id = exec_id.to_string();
    let state = shim.client().state(&request, limit).await?;
    let status = status_from_shim(state.status.enum_value_or_default());
    Ok(Process {
        container_id: shim.id().to_string(),
        id: if exec_id.is_empty() {
            shim.id().to_string()
        } else {
            exec_id.to_string()
        },
        pid: state.pid,
        status: status.into(),
        stdin: state.stdin,
        stdout: state.stdout,
        stderr: state.stderr,
        terminal: state.terminal,
        exit_status: state.exit_status,
        exited_at: timestamp_field(&state.exited_at),
    })
}

impl Fields for Process {
    /// List filters see `id`, `container_id`, `pid` and `status` (`running`, `stopped`, ...).
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "id" => Some(self.id.clone()),
            [f] if f == "container_id" => Some(self.container_id.clone()),
            [f] if f == "pid" => Some(self.pid.to_string()),
            [f] if f == "status" => Some(self.status().as_str_name().to_ascii_lowercase()),
            _ => None,
        }
    }
}

/// Metrics filters see a task's `id` and `namespace`, as containerd's do.
struct TaskFields<'a>(&'a Shim);

impl Fields for TaskFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "id" => Some(self.0.id().to_string()),
            [f] if f == "namespace" => Some(self.0.namespace().to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_filtered_by_their_fields() {
        let process = Process {
            container_id: "web".into(),
            id: "web".into(),
            pid: 42,
            status: Status::Running.into(),
            ..Default::default()
        };
        for (filter, passes) in [
            ("", true),
            ("id==web", true),
            ("status==running", true),
            ("status==stopped", false),
            ("pid==42", true),
            ("id~=^db", false),
        ] {
            let f = Filter::parse_all(&[filter]).unwrap();
            assert_eq!(f.matches(&process), passes, "{filter}");
        }
    }
}

//! `/_ping`, `/version` and `/info`: what the docker CLI asks before anything else, answered
//! with dockerd's headers and the models of the Docker Engine API (bollard-stubs). The numbers
//! are real: container and image counts from the supervisor (namespace `keel`), the host's
//! CPUs, memory, kernel and cgroup setup.

use std::collections::HashMap;
use std::time::SystemTime;

use bollard_stubs::models::{
    AuthConfig, Commit, ContainerdInfo, ContainerdInfoNamespaces, IndexInfo, LocalNodeState,
    PluginsInfo, RegistryServiceConfig, Runtime, SwarmInfo, SystemAuthResponse, SystemInfo,
    SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum, SystemVersion,
    SystemVersionComponents, SystemVersionPlatform,
};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, PRAGMA};
use hyper::{Method, Response, StatusCode};
use keel_proto::task_types::Status as TaskStatus;

use crate::engine::{Engine, ENGINE_VERSION};
use crate::errors::ApiResult;
use crate::http::{self, Body};
use crate::router::{MAX_API_VERSION, MIN_API_VERSION};

/// The runtime containers get unless they ask for another: our shim over keel-runtime.
pub const DEFAULT_RUNTIME: &str = "keel";

/// The log driver containers get: Docker's json-file format.
pub const DEFAULT_LOG_DRIVER: &str = "json-file";

/// `GET|HEAD /_ping`: "OK", with the headers dockerd adds for clients that only ping
/// (no caching by proxies, the builder to use, swarm state).
pub fn ping(method: &Method) -> Response<Body> {
    let mut response = if method == Method::HEAD {
        let mut head = http::empty(StatusCode::OK, "text/plain; charset=utf-8");
        head.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        head
    } else {
        http::text(StatusCode::OK, "OK")
    };
    let headers = response.headers_mut();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert("Builder-Version", HeaderValue::from_static("2"));
    headers.insert("Swarm", HeaderValue::from_static("inactive"));
    response
}

/// `GET /version`: the engine and the supervisor it runs on.
pub async fn version(engine: &Engine) -> ApiResult<Response<Body>> {
    let supervisor = engine.containerd.version().await?;
    let arch = go_arch(std::env::consts::ARCH).to_string();
    let details = HashMap::from([
        ("ApiVersion".to_string(), MAX_API_VERSION.to_string()),
        ("MinAPIVersion".to_string(), MIN_API_VERSION.to_string()),
        ("Os".to_string(), "linux".to_string()),
        ("Arch".to_string(), arch.clone()),
        (
            "KernelVersion".to_string(),
            engine.host.kernel_version.clone(),
        ),
        ("Experimental".to_string(), "false".to_string()),
    ]);
    let components = vec![
        component("Engine", ENGINE_VERSION, details),
        component(
            "containerd",
            &supervisor.version,
            HashMap::from([("GitCommit".to_string(), supervisor.revision)]),
        ),
    ];
    let body = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "Keel Engine".to_string(),
        }),
        components: Some(components),
        version: Some(ENGINE_VERSION.to_string()),
        api_version: Some(MAX_API_VERSION.to_string()),
        min_api_version: Some(MIN_API_VERSION.to_string()),
        os: Some("linux".to_string()),
        arch: Some(arch),
        kernel_version: Some(engine.host.kernel_version.clone()),
        experimental: Some(false),
        ..Default::default()
    };
    http::json(StatusCode::OK, &body)
}

fn component(
    name: &str,
    version: &str,
    details: HashMap<String, String>,
) -> SystemVersionComponents {
    SystemVersionComponents {
        name: name.to_string(),
        version: version.to_string(),
        details: Some(details),
    }
}

/// Go's names for the architectures (`GOARCH`), which /version reports.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// How many of the namespace's containers are in each state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContainerCounts {
    /// All containers.
    pub total: i64,
    /// With a running task.
    pub running: i64,
    /// With a paused (or pausing) task.
    pub paused: i64,
    /// The rest: created, exited, or with no task.
    pub stopped: i64,
}

/// Counts `total` containers by their tasks' statuses (a container without a task is stopped,
/// as dockerd counts it).
pub fn count_containers(total: usize, task_statuses: &[i32]) -> ContainerCounts {
    let count = |wanted: &[TaskStatus]| {
        task_statuses
            .iter()
            .filter(|s| wanted.iter().any(|w| *w as i32 == **s))
            .count()
    };
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let running = count(&[TaskStatus::Running]);
    let paused = count(&[TaskStatus::Paused, TaskStatus::Pausing]);
    ContainerCounts {
        total: to_i64(total),
        running: to_i64(running),
        paused: to_i64(paused),
        stopped: to_i64(total.saturating_sub(running + paused)),
    }
}

/// `GET /info`.
pub async fn info(engine: &Engine) -> ApiResult<Response<Body>> {
    let c = &engine.containerd;
    let (containers, tasks, images, supervisor) =
        tokio::try_join!(c.containers(), c.tasks(), c.images(), c.version())?;
    let statuses: Vec<i32> = tasks
        .iter()
        .filter(|t| t.id.is_empty() || t.id == t.container_id)
        .map(|t| t.status)
        .collect();
    let counts = count_containers(containers.len(), &statuses);
    let mut info = host_info(engine);
    info.containers = Some(counts.total);
    info.containers_running = Some(counts.running);
    info.containers_paused = Some(counts.paused);
    info.containers_stopped = Some(counts.stopped);
    info.images = Some(i64::try_from(images.len()).unwrap_or(i64::MAX));
    // Debian's containerd reports its package version as its commit; ours has no commit.
    let commit = if supervisor.revision.is_empty() {
        supervisor.version
    } else {
        supervisor.revision
    };
    info.containerd_commit = Some(Commit { id: Some(commit) });
    info.nfd = Some(open_fds());
    info.n_goroutines = Some(alive_tasks());
    http::json(StatusCode::OK, &info)
}

/// `POST /auth`: checks the credentials against the registry (see
/// [`crate::registry_login`]); the CLI stores them itself.
pub async fn auth(config: AuthConfig) -> ApiResult<Response<Body>> {
    let server = config
        .serveraddress
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://index.docker.io/v1/".to_string());
    crate::registry_login::login(
        &server,
        config.username.as_deref().unwrap_or(""),
        config.password.as_deref().unwrap_or(""),
    )
    .await?;
    let body = SystemAuthResponse {
        status: "Login Succeeded".to_string(),
        identity_token: Some(String::new()),
    };
    http::json(StatusCode::OK, &body)
}

/// The parts of /info that come from the host and the engine's configuration.
fn host_info(engine: &Engine) -> SystemInfo {
    let host = &engine.host;
    let cgroups = crate::host::CgroupFeatures::read();
    SystemInfo {
        id: Some(engine.id.clone()),
        driver: Some("overlayfs".to_string()),
        driver_status: Some(vec![vec![
            "driver-type".to_string(),
            "io.containerd.snapshotter.v1".to_string(),
        ]]),
        docker_root_dir: Some(engine.config.data_root.display().to_string()),
        plugins: Some(PluginsInfo {
            volume: Some(Vec::new()),
            network: Some(Vec::new()),
            authorization: None,
            log: Some(Vec::new()),
        }),
        memory_limit: Some(cgroups.memory),
        kernel_memory_tcp: Some(cgroups.kernel_memory_tcp),
        swap_limit: Some(cgroups.memory),
        cpu_cfs_period: Some(cgroups.cpu),
        cpu_cfs_quota: Some(cgroups.cpu),
        cpu_shares: Some(cgroups.cpu),
        cpu_set: Some(cgroups.cpuset),
        pids_limit: Some(cgroups.pids),
        // memory.oom_control exists on cgroup v1 only.
        oom_kill_disable: Some(cgroups.memory && host.cgroup_version == "1"),
        ipv4_forwarding: Some(crate::host::sysctl_enabled("net/ipv4/ip_forward")),
        bridge_nf_iptables: Some(crate::host::sysctl_enabled(
            "net/bridge/bridge-nf-call-iptables",
        )),
        bridge_nf_ip6tables: Some(crate::host::sysctl_enabled(
            "net/bridge/bridge-nf-call-ip6tables",
        )),
        http_proxy: Some(proxy_env("HTTP_PROXY")),
        https_proxy: Some(proxy_env("HTTPS_PROXY")),
        no_proxy: Some(proxy_env("NO_PROXY")),
        debug: Some(matches!(
            engine.config.log_level.as_str(),
            "debug" | "trace"
        )),
        system_time: Some(humantime::format_rfc3339_nanos(SystemTime::now()).to_string()),
        logging_driver: Some(DEFAULT_LOG_DRIVER.to_string()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(if host.cgroup_version == "2" {
            SystemInfoCgroupVersionEnum::_2
        } else {
            SystemInfoCgroupVersionEnum::_1
        }),
        n_events_listener: Some(0),
        kernel_version: Some(host.kernel_version.clone()),
        operating_system: Some(host.operating_system.clone()),
        os_version: Some(host.os_version.clone()),
        os_type: Some("linux".to_string()),
        architecture: Some(host.architecture.clone()),
        ncpu: Some(host.ncpu),
        mem_total: Some(host.mem_total),
        index_server_address: Some("https://index.docker.io/v1/".to_string()),
        registry_config: Some(registry_config()),
        name: Some(host.hostname.clone()),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        server_version: Some(ENGINE_VERSION.to_string()),
        runtimes: Some(runtimes()),
        default_runtime: Some(DEFAULT_RUNTIME.to_string()),
        swarm: Some(SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        live_restore_enabled: Some(false),
        security_options: Some(Vec::new()),
        warnings: Some(cgroups.warnings()),
        containerd: Some(ContainerdInfo {
            address: Some(engine.containerd.address().display().to_string()),
            namespaces: Some(ContainerdInfoNamespaces {
                containers: Some(engine.config.containerd_namespace.clone()),
                plugins: Some(format!("plugins.{}", engine.config.containerd_namespace)),
            }),
        }),
        ..Default::default()
    }
}

/// The engine's open file descriptors (dockerd's `NFd`).
fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| i64::try_from(dir.count()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The engine's live async tasks: what dockerd's goroutine count stands for.
fn alive_tasks() -> i64 {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    i64::try_from(tasks).unwrap_or(i64::MAX)
}

/// A proxy setting from the environment, upper case first then lower, as Go's `httpproxy`.
fn proxy_env(name: &str) -> String {
    std::env::var(name)
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// The runtimes containers can name: ours by default, runc through containerd's stock shim.
fn runtimes() -> HashMap<String, Runtime> {
    let runtime = |path: &str| Runtime {
        path: Some(path.to_string()),
        ..Default::default()
    };
    HashMap::from([
        (DEFAULT_RUNTIME.to_string(), runtime("keel-runtime")),
        ("runc".to_string(), runtime("runc")),
    ])
}

/// dockerd's defaults: loopback registries are insecure (plain HTTP), Docker Hub is the index.
fn registry_config() -> RegistryServiceConfig {
    let hub = IndexInfo {
        name: Some("docker.io".to_string()),
        mirrors: Some(Vec::new()),
        secure: Some(true),
        official: Some(true),
    };
    RegistryServiceConfig {
        insecure_registry_cidrs: Some(vec!["127.0.0.0/8".to_string(), "::1/128".to_string()]),
        index_configs: Some(HashMap::from([("docker.io".to_string(), hub)])),
        mirrors: Some(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_counted_by_task_status() {
        let running = TaskStatus::Running as i32;
        let paused = TaskStatus::Paused as i32;
        let stopped = TaskStatus::Stopped as i32;
        let counts = count_containers(5, &[running, running, paused, stopped]);
        assert_eq!(
            counts,
            ContainerCounts {
                total: 5,
                running: 2,
                paused: 1,
                stopped: 2
            }
        );
        assert_eq!(count_containers(0, &[]), ContainerCounts::default());
        // Tasks listed without their container (a race with a delete) never make it negative.
        assert_eq!(count_containers(0, &[running]).stopped, 0);
    }

    #[test]
    fn ping_has_dockerds_headers() {
        let get = ping(&Method::GET);
        assert_eq!(get.status(), StatusCode::OK);
        let h = get.headers();
        assert_eq!(h["Cache-Control"], "no-cache, no-store, must-revalidate");
        assert_eq!(h["Pragma"], "no-cache");
        assert_eq!(h["Builder-Version"], "2");
        assert_eq!(h["Content-Type"], "text/plain; charset=utf-8");
        let head = ping(&Method::HEAD);
        assert_eq!(head.headers()["Content-Type"], "text/plain; charset=utf-8");
    }

    #[test]
    fn architectures_use_gos_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }
}

//! The OCI runtime spec the engine writes for a container, with Docker's defaults: its
//! capability set, its seccomp profile, masked and read-only paths, the device allow list,
//! `/dev/shm`, `/dev/mqueue`, the engine's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`; `--privileged` lifts the confinement. What the request and the image say
//! is resolved first (see [`process`]) and given here as [`Settings`].

pub mod capabilities;
pub mod mounts;
pub mod process;
pub mod seccomp;

use std::collections::HashSet;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroup,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

pub use mounts::{Bind, EtcFiles};
pub use process::User;

/// Why a spec cannot be made; `InvalidParameter` is the request's fault (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("building the runtime spec: {0}")]
    Internal(String),
}

/// The network a container joins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// A namespace of its own with only loopback (`--network none`).
    #[default]
    None,
    /// The host's (`--network host`).
    Host,
    /// An existing namespace (a bridge network's, made by the engine).
    Path(String),
}

/// Resource limits (`--memory`, `--cpus`, `--pids-limit` ...); zero or none is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory: i64,
    /// Memory plus swap; -1 is unlimited swap.
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: u64,
    pub cpu_quota: i64,
    pub cpu_period: u64,
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
}

/// Everything the spec is made from, already resolved.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub hostname: String,
    pub domainname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    pub tty: bool,
    pub privileged: bool,
    pub read_only_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt`: `no-new-privileges[:true|false]`, `seccomp=unconfined`.
    pub security_opt: Vec<String>,
    pub network: Network,
    pub etc: Option<EtcFiles>,
    pub binds: Vec<Bind>,
    /// `--tmpfs DST[:OPTS]` as (DST, OPTS).
    pub tmpfs: Vec<(String, String)>,
    pub shm_size: Option<u64>,
    pub resources: Resources,
    /// The container's cgroup (containerd's `/<namespace>/<id>` for the cgroupfs driver).
    pub cgroups_path: String,
}

/// Docker's masked paths: hidden from a container unless privileged.
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Devices a container may use (the cgroup allow list): Docker's defaults after "deny all".
const ALLOWED_DEVICES: &[(&str, Option<i64>, Option<i64>, &str)] = &[
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", Some(1), Some(3), "rwm"),    // null
    ("c", Some(1), Some(8), "rwm"),    // random
    ("c", Some(1), Some(7), "rwm"),    // full
    ("c", Some(5), Some(0), "rwm"),    // tty
    ("c", Some(1), Some(5), "rwm"),    // zero
    ("c", Some(1), Some(9), "rwm"),    // urandom
    ("c", Some(136), None, "rwm"),     // pts
    ("c", Some(5), Some(1), "rwm"),    // console
    ("c", Some(5), Some(2), "rwm"),    // ptmx
    ("c", Some(10), Some(200), "rwm"), // tun
];

/// The runtime spec for `settings`.
pub fn build(settings: &Settings) -> Result<Spec, SpecError> {
    let internal = |e: oci_spec::OciSpecError| SpecError::Internal(e.to_string());
    let caps = capabilities::effective(&settings.cap_add, &settings.cap_drop, settings.privileged)?;
    let caps: HashSet<Capability> = caps
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
        .collect();
    // Inheritable and ambient stay empty, as Docker's since CVE-2022-24769 (oci-spec's
    // defaults would hand a non-root process KILL, NET_BIND_SERVICE and AUDIT_WRITE).
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(internal)?;
    let user = UserBuilder::default()
        .uid(settings.user.uid)
        .gid(settings.user.gid)
        .additional_gids(settings.user.additional_gids.clone())
        .build()
        .map_err(internal)?;
    let mut process = ProcessBuilder::default()
        .terminal(settings.tty)
        .args(settings.args.clone())
        .env(settings.env.clone())
        .cwd(if settings.cwd.is_empty() {
            "/"
        } else {
            &settings.cwd
        })
        .user(user)
        .capabilities(caps)
        .no_new_privileges(no_new_privileges(&settings.security_opt)?)
        .oom_score_adj(0)
        .build()
        .map_err(internal)?;
    // As dockerd: no limits of its own, the engine's are inherited (oci-spec's default would
    // cap open files at 1024).
    process.set_rlimits(None);
    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(settings.read_only_rootfs)
        .build()
        .map_err(internal)?;
    let etc = settings.etc.clone().unwrap_or_else(|| EtcFiles {
        hosts: String::new(),
        hostname: String::new(),
        resolv_conf: String::new(),
    });
    let mut all_mounts = mounts::mounts(
        &etc,
        &settings.binds,
        &settings.tmpfs,
        settings.shm_size.unwrap_or(mounts::DEFAULT_SHM_SIZE),
        settings.privileged,
    )?;
    if settings.etc.is_none() {
        all_mounts.retain(|m| !m.destination().starts_with("/etc"));
    }
    SpecBuilder::default()
        .version("1.1.0")
        .process(process)
        .root(root)
        .hostname(settings.hostname.clone())
        .domainname(settings.domainname.clone())
        .mounts(all_mounts)
        .linux(linux(settings)?)
        .build()
        .map_err(internal)
}

fn linux(settings: &Settings) -> Result<oci_spec::runtime::Linux, SpecError> {
    let internal = |e: oci_spec::OciSpecError| SpecError::Internal(e.to_string());
    let mut builder = LinuxBuilder::default()
        .namespaces(namespaces(&settings.network))
        .resources(resources(settings)?)
        .cgroups_path(settings.cgroups_path.clone());
    // oci-spec's own defaults (youki's) are replaced, not added to.
    let (masked, read_only): (&[&str], &[&str]) = if settings.privileged {
        (&[], &[])
    } else {
        (MASKED, READ_ONLY)
    };
    builder = builder
        .masked_paths(masked.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(read_only.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    if !settings.privileged && !seccomp_unconfined(&settings.security_opt) {
        builder = builder.seccomp(seccomp::docker_default_profile());
    }
    builder.build().map_err(internal)
}

fn namespaces(network: &Network) -> Vec<LinuxNamespace> {
    let ns = |typ: LinuxNamespaceType, path: Option<&str>| {
        let mut namespace = LinuxNamespace::default();
        namespace.set_typ(typ);
        namespace.set_path(path.map(Into::into));
        namespace
    };
    let mut all = vec![
        ns(LinuxNamespaceType::Mount, None),
        ns(LinuxNamespaceType::Uts, None),
        ns(LinuxNamespaceType::Pid, None),
        ns(LinuxNamespaceType::Ipc, None),
    ];
    match network {
        Network::Host => {}
        Network::None => all.push(ns(LinuxNamespaceType::Network, None)),
        Network::Path(path) => all.push(ns(LinuxNamespaceType::Network, Some(path))),
    }
    all
}

fn resources(settings: &Settings) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    let internal = |e: oci_spec::OciSpecError| SpecError::Internal(e.to_string());
    let r = &settings.resources;
    let devices: Vec<LinuxDeviceCgroup> = if settings.privileged {
        vec![device(true, None, None, None, "rwm")]
    } else {
        std::iter::once(device(false, None, None, None, "rwm"))
            .chain(
                ALLOWED_DEVICES
                    .iter()
                    .map(|(t, major, minor, access)| device(true, Some(t), *major, *minor, access)),
            )
            .collect()
    };
    let mut builder = LinuxResourcesBuilder::default().devices(devices);
    if r.memory > 0 || r.memory_swap != 0 {
        let mut memory = LinuxMemoryBuilder::default();
        if r.memory > 0 {
            memory = memory.limit(r.memory);
            // Docker: swap defaults to twice the memory when only memory is given.
            memory = memory.swap(if r.memory_swap == 0 {
                r.memory * 2
            } else {
                r.memory_swap
            });
        } else {
            memory = memory.swap(r.memory_swap);
        }
        builder = builder.memory(memory.build().map_err(internal)?);
    }
    let (quota, period) = cpu_quota(r);
    if quota > 0 || r.cpu_shares > 0 || !r.cpuset_cpus.is_empty() {
        let mut cpu = LinuxCpuBuilder::default();
        if quota > 0 {
            cpu = cpu.quota(quota).period(period);
        }
        if r.cpu_shares > 0 {
            cpu = cpu.shares(r.cpu_shares);
        }
        if !r.cpuset_cpus.is_empty() {
            cpu = cpu.cpus(r.cpuset_cpus.clone());
        }
        builder = builder.cpu(cpu.build().map_err(internal)?);
    }
    if let Some(limit) = r.pids_limit.filter(|l| *l != 0) {
        let pids = LinuxPidsBuilder::default()
            .limit(limit)
            .build()
            .map_err(internal)?;
        builder = builder.pids(pids);
    }
    builder.build().map_err(internal)
}

/// `--cpus N` is a quota of N periods of 100 ms; an explicit quota wins.
fn cpu_quota(r: &Resources) -> (i64, u64) {
    const PERIOD: u64 = 100_000;
    if r.nano_cpus > 0 {
        (r.nano_cpus * PERIOD as i64 / 1_000_000_000, PERIOD)
    } else {
        let period = if r.cpu_period > 0 {
            r.cpu_period
        } else {
            PERIOD
        };
        (r.cpu_quota, period)
    }
}

fn device(
    allow: bool,
    typ: Option<&str>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(typ.and_then(|t| serde_json::from_value(serde_json::Value::String(t.into())).ok()));
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_string()));
    d
}

/// `--security-opt no-new-privileges[:true|false]` (or `=`).
fn no_new_privileges(options: &[String]) -> Result<bool, SpecError> {
    let mut value = false;
    for option in options {
        let (key, v) = option
            .split_once([':', '='])
            .map_or((option.as_str(), "true"), |(k, v)| (k, v));
        if key == "no-new-privileges" {
            value = v.parse().map_err(|_| {
                SpecError::InvalidParameter(format!("invalid --security-opt 2: {option:?}"))
            })?;
        }
    }
    Ok(value)
}

fn seccomp_unconfined(options: &[String]) -> bool {
    options
        .iter()
        .any(|o| o == "seccomp=unconfined" || o == "seccomp:unconfined")
}

#[cfg(test)]
mod tests;

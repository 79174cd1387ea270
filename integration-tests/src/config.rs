//! `Config`: an OCI `config.json` ([`Spec`]) built in Rust, starting from a default like
//! `runc spec`, with one chainable method per field the tests set.
//!
//! [`Config::new`] is `runc spec` without its policy parts (masked and read-only paths, the
//! device deny-all rule, the cgroup mount) and with a writable root and no terminal, so a test
//! of one feature fails only for that feature; [`Config::runc_default`] has all of them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::runtime::{
    BoxBuilder, Capabilities, Capability, Hooks, Linux, LinuxCapabilities, LinuxDevice,
    LinuxDeviceCgroup, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, LinuxSeccomp, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process,
    Spec,
};
use serde_json::{json, Value};

/// The capabilities `runc spec` grants.
pub const DEFAULT_CAPS: [Capability; 3] = [
    Capability::AuditWrite,
    Capability::Kill,
    Capability::NetBindService,
];

/// The `PATH` of the default process environment.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname of the default config.
pub const DEFAULT_HOSTNAME: &str = "keel";

/// A container configuration under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    spec: Spec,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// `runc spec` minus its policy parts, with a writable root and `terminal: false`.
    pub fn new() -> Self {
        let spec = serde_json::from_value(base_json())
            .expect("the built-in config template is a valid Spec");
        Self { spec }
    }

    /// Everything `runc spec` has (masked and read-only paths, device deny-all, cgroup mount),
    /// except the read-only root and the terminal.
    pub fn runc_default() -> Self {
        let mut config = Self::new()
            .masked_paths(&MASKED_PATHS)
            .readonly_paths(&READONLY_PATHS)
            .mount(mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &CGROUP_MOUNT_OPTS,
            ));
        config.linux().set_resources(Some(deny_all_devices()));
        config
    }

    /// Wraps an existing spec.
    pub fn from_spec(spec: Spec) -> Self {
        Self { spec }
    }

    /// The spec as built so far.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The spec, for fields without a method here.
    pub fn spec_mut(&mut self) -> &mut Spec {
        &mut self.spec
    }

    /// The finished spec.
    pub fn into_spec(self) -> Spec {
        self.spec
    }

    /// Applies a JSON merge patch (RFC 7396: objects merge, `null` removes, anything else
    /// replaces) to the spec, for fields that are shorter to write as JSON.
    pub fn merge(self, patch: Value) -> Result<Self> {
        let mut doc = serde_json::to_value(&self.spec).context("serializing the spec")?;
        merge_json(&mut doc, patch);
        let spec =
            serde_json::from_value(doc).context("the merged config is not a valid OCI spec")?;
        Ok(Self { spec })
    }

    /// `process.args`.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        let args = args.iter().map(|a| a.as_ref().to_string()).collect();
        self.process().set_args(Some(args));
        self
    }

    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(self, script: &str) -> Self {
        self.args(&["sh", "-c", script])
    }

    /// Appends `KEY=VALUE` to `process.env`.
    pub fn env(mut self, var: &str) -> Self {
        self.process()
            .env_mut()
            .get_or_insert_with(Vec::new)
            .push(var.to_string());
        self
    }

    /// `process.cwd`.
    pub fn cwd(mut self, cwd: &str) -> Self {
        self.process().set_cwd(cwd.into());
        self
    }

    /// `process.user.uid` and `gid`.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        let user = self.process().user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
        self
    }

    /// `process.user.additionalGids`.
    pub fn additional_gids(mut self, gids: &[u32]) -> Self {
        self.process()
            .user_mut()
            .set_additional_gids(Some(gids.to_vec()));
        self
    }

    /// `process.user.umask`.
    pub fn umask(mut self, umask: u32) -> Self {
        self.process().user_mut().set_umask(Some(umask));
        self
    }

    /// Sets (or replaces) one entry of `process.rlimits`.
    pub fn rlimit(mut self, typ: PosixRlimitType, soft: u64, hard: u64) -> Self {
        let limits = self.process().rlimits().clone().unwrap_or_default();
        let mut limits: Vec<PosixRlimit> = limits.into_iter().filter(|l| l.typ() != typ).collect();
        // The builder cannot fail: every field has a value.
        let limit = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build();
        limits.push(limit.unwrap_or_default());
        self.process().set_rlimits(Some(limits));
        self
    }

    /// The same capabilities in all five sets (bounding, effective, permitted, inheritable, ambient).
    pub fn capabilities(self, caps: &[Capability]) -> Self {
        let set: Capabilities = caps.iter().copied().collect();
        let mut all = LinuxCapabilities::default();
        all.set_bounding(Some(set.clone()));
        all.set_effective(Some(set.clone()));
        all.set_permitted(Some(set.clone()));
        all.set_inheritable(Some(set.clone()));
        all.set_ambient(Some(set));
        self.capability_sets(all)
    }

    /// `process.capabilities`, set by set.
    pub fn capability_sets(mut self, caps: LinuxCapabilities) -> Self {
        self.process().set_capabilities(Some(caps));
        self
    }

    /// `process.noNewPrivileges`.
    pub fn no_new_privileges(mut self, on: bool) -> Self {
        self.process().set_no_new_privileges(Some(on));
        self
    }

    /// `process.oomScoreAdj`.
    pub fn oom_score_adj(mut self, adj: i32) -> Self {
        self.process().set_oom_score_adj(Some(adj));
        self
    }

    /// `process.terminal`.
    pub fn terminal(mut self, on: bool) -> Self {
        self.process().set_terminal(Some(on));
        self
    }

    /// `process.consoleSize`.
    pub fn console_size(mut self, height: u64, width: u64) -> Self {
        let size = BoxBuilder::default().height(height).width(width).build();
        self.process()
            .set_console_size(Some(size.unwrap_or_default()));
        self
    }

    /// `root.readonly`.
    pub fn readonly_root(mut self, on: bool) -> Self {
        if let Some(root) = self.spec.root_mut() {
            root.set_readonly(Some(on));
        }
        self
    }

    /// `hostname`.
    pub fn hostname(mut self, name: &str) -> Self {
        self.spec.set_hostname(Some(name.to_string()));
        self
    }

    /// `domainname`.
    pub fn domainname(mut self, name: &str) -> Self {
        self.spec.set_domainname(Some(name.to_string()));
        self
    }

    /// Appends a `mounts[]` entry.
    pub fn mount(mut self, m: Mount) -> Self {
        self.spec.mounts_mut().get_or_insert_with(Vec::new).push(m);
        self
    }

    /// Appends a bind mount of host `source` at `destination` (`bind` plus `options`).
    pub fn bind(self, source: &Path, destination: &str, options: &[&str]) -> Self {
        let mut opts = vec!["bind"];
        opts.extend_from_slice(options);
        let src = source.to_string_lossy();
        self.mount(mount(destination, "bind", &src, &opts))
    }

    /// Removes the `mounts[]` entries at `destination`.
    pub fn without_mount(mut self, destination: &str) -> Self {
        if let Some(mounts) = self.spec.mounts_mut() {
            mounts.retain(|m| m.destination() != Path::new(destination));
        }
        self
    }

    /// Adds a namespace of `typ` (replacing one of the same type), joined at `path` if given.
    pub fn namespace(mut self, typ: LinuxNamespaceType, path: Option<&Path>) -> Self {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns.set_path(path.map(Path::to_path_buf));
        let list = self.linux().namespaces_mut().get_or_insert_with(Vec::new);
        list.retain(|n| n.typ() != typ);
        list.push(ns);
        self
    }

    /// Removes the namespace of `typ`: the container shares the runtime's.
    pub fn without_namespace(mut self, typ: LinuxNamespaceType) -> Self {
        if let Some(list) = self.linux().namespaces_mut() {
            list.retain(|n| n.typ() != typ);
        }
        self
    }

    /// A user namespace mapping container ids `0..size` to host ids `host..host+size`.
    pub fn user_namespace(mut self, host_uid: u32, host_gid: u32, size: u32) -> Self {
        let linux = self.linux();
        linux.set_uid_mappings(Some(vec![id_mapping(0, host_uid, size)]));
        linux.set_gid_mappings(Some(vec![id_mapping(0, host_gid, size)]));
        self.namespace(LinuxNamespaceType::User, None)
    }

    /// `linux.resources`.
    pub fn resources(mut self, resources: LinuxResources) -> Self {
        self.linux().set_resources(Some(resources));
        self
    }

    /// `linux.cgroupsPath`.
    pub fn cgroups_path(mut self, path: &str) -> Self {
        self.linux().set_cgroups_path(Some(path.into()));
        self
    }

    /// Appends a `linux.devices` entry.
    pub fn device(mut self, device: LinuxDevice) -> Self {
        self.linux()
            .devices_mut()
            .get_or_insert_with(Vec::new)
            .push(device);
        self
    }

    /// `hooks`.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.spec.set_hooks(Some(hooks));
        self
    }

    /// `linux.seccomp`.
    pub fn seccomp(mut self, seccomp: LinuxSeccomp) -> Self {
        self.linux().set_seccomp(Some(seccomp));
        self
    }

    /// `linux.maskedPaths`.
    pub fn masked_paths(mut self, paths: &[&str]) -> Self {
        self.linux().set_masked_paths(Some(strings(paths)));
        self
    }

    /// `linux.readonlyPaths`.
    pub fn readonly_paths(mut self, paths: &[&str]) -> Self {
        self.linux().set_readonly_paths(Some(strings(paths)));
        self
    }

    /// Sets one `linux.sysctl` entry.
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        let map = self.linux().sysctl_mut().get_or_insert_with(HashMap::new);
        map.insert(key.to_string(), value.to_string());
        self
    }

    /// `linux.rootfsPropagation`.
    pub fn rootfs_propagation(mut self, propagation: &str) -> Self {
        self.linux()
            .set_rootfs_propagation(Some(propagation.to_string()));
        self
    }

    fn process(&mut self) -> &mut Process {
        self.spec.process_mut().get_or_insert_with(Process::default)
    }

    fn linux(&mut self) -> &mut Linux {
        self.spec.linux_mut().get_or_insert_with(Linux::default)
    }
}

/// A `mounts[]` entry.
pub fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(strings(options)));
    m
}

/// One `uidMappings`/`gidMappings` entry.
pub fn id_mapping(container_id: u32, host_id: u32, size: u32) -> LinuxIdMapping {
    let mapping = LinuxIdMappingBuilder::default()
        .container_id(container_id)
        .host_id(host_id)
        .size(size)
        .build();
    mapping.unwrap_or_default()
}

/// Parses a fragment of the spec (resources, hooks, seccomp, a device...) written as JSON.
pub fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).context("the JSON fragment does not match the OCI type")
}

/// `runc spec`'s masked paths.
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// `runc spec`'s read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const CGROUP_MOUNT_OPTS: [&str; 5] = ["nosuid", "noexec", "nodev", "relatime", "ro"];

fn deny_all_devices() -> LinuxResources {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false);
    rule.set_access(Some("rwm".to_string()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![rule]));
    resources
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn merge_json(doc: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *doc = patch;
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(serde_json::Map::new());
    }
    let Value::Object(map) = doc else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(&key);
        } else {
            merge_json(map.entry(key).or_insert(Value::Null), value);
        }
    }
}

fn base_json() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": DEFAULT_CAP_NAMES,
                "effective": DEFAULT_CAP_NAMES,
                "permitted": DEFAULT_CAP_NAMES,
                "ambient": DEFAULT_CAP_NAMES
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": DEFAULT_HOSTNAME,
        "mounts": base_mounts(),
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ]
        }
    })
}

const DEFAULT_CAP_NAMES: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn base_mounts() -> Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]}
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_runc_spec_shape() {
        let spec = Config::new().into_spec();
        let process = spec.process().as_ref().expect("process");
        assert_eq!(process.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(spec.mounts().as_ref().map(Vec::len), Some(6));
        assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(false));
    }

    #[test]
    fn merge_patches_nested_fields() {
        let config = Config::new()
            .merge(json!({"linux": {"resources": {"pids": {"limit": 10}}}, "hostname": null}))
            .expect("merge");
        let doc = serde_json::to_value(config.spec()).expect("json");
        assert_eq!(doc["linux"]["resources"]["pids"]["limit"], 10);
        assert!(doc.get("hostname").is_none());
        assert_eq!(doc["linux"]["namespaces"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn namespace_replaces_same_type() {
        let config = Config::new().namespace(LinuxNamespaceType::Network, Some(Path::new("/x")));
        let doc = serde_json::to_value(config.spec()).expect("json");
        let nets: Vec<_> = doc["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0]["path"], "/x");
    }
}

//! The `config.json` that `keel-runtime spec` writes: runc's, field for field, but for the hostname.
//!
//! Built from oci-spec's `Spec::default()`, which is close to runc's; each difference is set here
//! with a comment. The unit tests hold the JSON that `runc spec` (1.1) writes and compare.

use std::path::PathBuf;

use nix::unistd::{getegid, geteuid};
use oci_spec::runtime::{
    Linux, LinuxCapabilities, LinuxDeviceCgroup, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, Mount, Spec,
};

/// The hostname of the example container (runc's is `runc`).
const HOSTNAME: &str = "keel";

/// The spec `runc spec` writes: `sh` on a terminal in a read-only `rootfs`.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some(HOSTNAME.to_string()));
    // oci-spec writes `"annotations": {}`; runc writes none.
    spec.set_annotations(None);
    if let Some(process) = spec.process_mut() {
        // runc's example runs an interactive shell.
        process.set_terminal(Some(true));
        process.set_capabilities(Some(default_capabilities()));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(deny_all_devices()));
        linux.set_namespaces(Some(namespaces(&[
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ])));
    }
    spec
}

/// The spec `runc spec --rootless` writes, mapping root in the container to the caller's euid/egid.
pub fn rootless_spec() -> Spec {
    let mut spec = default_spec();
    if let Some(mounts) = spec.mounts_mut() {
        mounts.iter_mut().for_each(make_rootless_mount);
    }
    if let Some(linux) = spec.linux_mut() {
        // An unprivileged user cannot write cgroups (without delegation) nor device rules.
        linux.set_resources(None);
        // oci-spec's rootless template maps container root to one host id, as runc does.
        let ids = Linux::rootless(geteuid().as_raw(), getegid().as_raw());
        linux.set_uid_mappings(ids.uid_mappings().clone());
        linux.set_gid_mappings(ids.gid_mappings().clone());
        // No network namespace: an unprivileged user could not configure one anyway.
        linux.set_namespaces(Some(namespaces(&[
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::User,
        ])));
    }
    spec
}

/// runc's capability sets: no inheritable set (oci-spec's default has one).
fn default_capabilities() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    caps.set_inheritable(None);
    caps
}

/// `linux.resources` with only runc's deny-all device rule (`{"allow": false, "access": "rwm"}`).
fn deny_all_devices() -> LinuxResources {
    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false);
    deny.set_access(Some("rwm".to_string()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![deny]));
    resources
}

/// New namespaces of the given types, in that order.
fn namespaces(types: &[LinuxNamespaceType]) -> Vec<LinuxNamespace> {
    types
        .iter()
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(*typ);
            ns
        })
        .collect()
}

/// What runc changes in its mounts for rootless: devpts without `gid=5` (group 5 is not mapped)
/// and `/sys` bind-mounted from the host (a user namespace cannot mount sysfs without a netns).
fn make_rootless_mount(mount: &mut Mount) {
    let destination = mount.destination().to_string_lossy().into_owned();
    match destination.as_str() {
        "/dev/pts" => {
            if let Some(options) = mount.options_mut() {
                options.retain(|o| o != "gid=5");
            }
        }
        "/sys" => {
            mount.set_typ(Some("none".to_string()));
            mount.set_source(Some(PathBuf::from("/sys")));
            if let Some(options) = mount.options_mut() {
                options.insert(0, "rbind".to_string());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runc spec` (runc 1.1.5) output, hostname changed to `keel`.
    const RUNC_SPEC: &str = r#"{
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "keel",
        "mounts": [
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
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    }"#;

    fn to_value(spec: &Spec) -> serde_json::Value {
        serde_json::to_value(spec).unwrap()
    }

    fn runc_spec() -> Spec {
        serde_json::from_str(RUNC_SPEC).unwrap()
    }

    #[test]
    fn default_equals_runc_spec() {
        assert_eq!(default_spec(), runc_spec());
    }

    #[test]
    fn default_round_trips_through_json() {
        let spec = default_spec();
        let json = serde_json::to_string_pretty(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn default_key_fields() {
        let json = to_value(&default_spec());
        assert_eq!(json["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(json["process"]["terminal"], true);
        assert_eq!(json["hostname"], "keel");
        assert_eq!(json["root"]["readonly"], true);
        assert!(json.get("annotations").is_none());
        assert!(json["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(json["linux"]["namespaces"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn rootless_matches_runc_rootless() {
        let mut expected = serde_json::from_str::<serde_json::Value>(RUNC_SPEC).unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        expected["mounts"][2]["options"] = serde_json::json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ]);
        expected["mounts"][5] = serde_json::json!({
            "destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
        });
        let linux = expected["linux"].as_object_mut().unwrap();
        linux.remove("resources");
        linux.insert(
            "uidMappings".into(),
            serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]),
        );
        linux.insert(
            "gidMappings".into(),
            serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]),
        );
        linux.insert(
            "namespaces".into(),
            serde_json::json!([
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "user"}
            ]),
        );
        let expected: Spec = serde_json::from_value(expected).unwrap();
        assert_eq!(rootless_spec(), expected);
    }

    #[test]
    fn rootless_round_trips_through_json() {
        let spec = rootless_spec();
        let back: Spec = serde_json::from_value(to_value(&spec)).unwrap();
        assert_eq!(back, spec);
    }
}

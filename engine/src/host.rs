//! Facts about the host that /info and /version report, read from `/proc`, `/etc/os-release`
//! and `/sys/fs/cgroup` (the places dockerd reads them from), so the numbers are the machine's,
//! not made up. Each reader takes its source text as an argument so it is unit-tested on
//! fixed inputs; a source that cannot be read gives an empty or zero value, never an error,
//! because a missing fact must not fail `docker info`.

use std::path::Path;

/// What the engine reports about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`, e.g. `Debian GNU/Linux 13 (trixie)`.
    pub operating_system: String,
    /// `VERSION_ID` of `/etc/os-release`.
    pub os_version: String,
    /// `uname -m`.
    pub architecture: String,
    /// CPUs this process may run on (dockerd's `runtime.NumCPU`, affinity included).
    pub ncpu: i64,
    /// Physical memory in bytes.
    pub mem_total: i64,
    /// The host name.
    pub hostname: String,
    /// `"2"` on the unified hierarchy, `"1"` otherwise.
    pub cgroup_version: &'static str,
}

impl HostFacts {
    /// Reads the facts now.
    pub fn read() -> Self {
        let os_release = read_text("/etc/os-release");
        Self {
            kernel_version: read_text("/proc/sys/kernel/osrelease").trim().to_string(),
            operating_system: os_release_field(&os_release, "PRETTY_NAME")
                .unwrap_or_else(|| "Linux".to_string()),
            os_version: os_release_field(&os_release, "VERSION_ID").unwrap_or_default(),
            architecture: architecture(std::env::consts::ARCH).to_string(),
            ncpu: std::thread::available_parallelism()
                .map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX))
                .unwrap_or(1),
            mem_total: mem_total(&read_text("/proc/meminfo")).unwrap_or(0),
            hostname: read_text("/proc/sys/kernel/hostname").trim().to_string(),
            cgroup_version: cgroup_version(Path::new("/sys/fs/cgroup")),
        }
    }
}

fn read_text(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A field of os-release(5), its quotes removed.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?;
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(unquoted.to_string())
    })
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Rust's architecture names as `uname -m` spells them (what dockerd reports).
pub fn architecture(rust_arch: &str) -> &str {
    match rust_arch {
        "x86" => "i686",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `"2"` when `root` is a cgroup2 mount (it has `cgroup.controllers`), else `"1"`.
pub fn cgroup_version(root: &Path) -> &'static str {
    if root.join("cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// Whether the sysctl at `/proc/sys/<name>` exists and is `1`.
pub fn sysctl_enabled(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc/sys").join(name)).is_ok_and(|v| v.trim() == "1")
}

/// Which resource limits the host's cgroups can enforce (what /info's `MemoryLimit`,
/// `CpuCfsQuota`, `CPUSet`, `PidsLimit` report, and warns about when missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupFeatures {
    /// The memory controller.
    pub memory: bool,
    /// The cpu controller (CFS period, quota, shares/weight).
    pub cpu: bool,
    /// The cpuset controller.
    pub cpuset: bool,
    /// The pids controller.
    pub pids: bool,
    /// cgroup v1's TCP kernel memory accounting (`memory.kmem.tcp.limit_in_bytes`).
    pub kernel_memory_tcp: bool,
}

impl CgroupFeatures {
    /// Reads `/sys/fs/cgroup`: the root's `cgroup.controllers` on cgroup v2, the controllers'
    /// hierarchies on v1.
    pub fn read() -> Self {
        let root = Path::new("/sys/fs/cgroup");
        match std::fs::read_to_string(root.join("cgroup.controllers")) {
            Ok(list) => Self::from_controllers(&list),
            Err(_) => Self {
                memory: root.join("memory").is_dir(),
                cpu: root.join("cpu").is_dir(),
                cpuset: root.join("cpuset").is_dir(),
                pids: root.join("pids").is_dir(),
                kernel_memory_tcp: root.join("memory/memory.kmem.tcp.limit_in_bytes").exists(),
            },
        }
    }

    /// From cgroup v2's space-separated controller list.
    pub fn from_controllers(list: &str) -> Self {
        let has = |name: &str| list.split_whitespace().any(|c| c == name);
        Self {
            memory: has("memory"),
            cpu: has("cpu"),
            cpuset: has("cpuset"),
            pids: has("pids"),
            kernel_memory_tcp: false,
        }
    }

    /// dockerd's warnings for the limits that cannot be enforced.
    pub fn warnings(&self) -> Vec<String> {
        [
            (self.memory, "WARNING: No memory limit support"),
            (self.cpu, "WARNING: No cpu cfs quota support"),
            (self.cpuset, "WARNING: No cpuset support"),
            (self.pids, "WARNING: No pids limit support"),
        ]
        .into_iter()
        .filter(|(supported, _)| !supported)
        .map(|(_, warning)| warning.to_string())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_lose_their_quotes() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID='13'\nID=debian\n";
        assert_eq!(
            os_release_field(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(os_release_field(text, "VERSION_ID").as_deref(), Some("13"));
        assert_eq!(os_release_field(text, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_field(text, "NAM"), None);
        assert_eq!(os_release_field("", "ID"), None);
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       16318412 kB\nMemFree:         1 kB\n";
        assert_eq!(mem_total(text), Some(16318412 * 1024));
        assert_eq!(mem_total("MemTotal: lots kB"), None);
        assert_eq!(mem_total(""), None);
        assert_eq!(mem_total("MemTotal: 99999999999999999 kB"), None);
    }

    #[test]
    fn this_host_has_sane_facts() {
        let facts = HostFacts::read();
        assert!(facts.ncpu >= 1);
        assert!(facts.mem_total > 0);
        assert!(!facts.kernel_version.is_empty());
    }

    #[test]
    fn cgroup_controllers_are_parsed_and_missing_ones_warned() {
        let all = CgroupFeatures::from_controllers("cpuset cpu io memory hugetlb pids rdma\n");
        assert!(all.memory && all.cpu && all.cpuset && all.pids);
        assert!(all.warnings().is_empty());
        let some = CgroupFeatures::from_controllers("cpu io");
        assert!(!some.memory && some.cpu && !some.cpuset && !some.pids);
        assert_eq!(some.warnings().len(), 3);
        assert!(some.warnings()[0].contains("memory"));
    }

    #[test]
    fn cgroup_version_follows_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_version(dir.path()), "1");
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu\n").unwrap();
        assert_eq!(cgroup_version(dir.path()), "2");
    }
}

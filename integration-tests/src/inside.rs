//! Reading what a checker run inside the container printed: `/proc/self/status` fields,
//! capability masks, `/proc/self/mountinfo` entries.

use oci_spec::runtime::Capability;

/// The value of `Field:` in `/proc/<pid>/status` text, trimmed.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        (name == field).then(|| value.trim())
    })
}

/// A `CapXxx:` hex mask from status text.
pub fn cap_mask(status: &str, field: &str) -> Option<u64> {
    u64::from_str_radix(status_field(status, field)?, 16).ok()
}

/// The bit mask of a set of capabilities.
pub fn mask_of(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | (1u64 << cap_number(*c)))
}

/// The kernel's number for a capability (`CAP_CHOWN` is 0).
pub fn cap_number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// One `/proc/self/mountinfo` line, split into the fields the tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Path of the mount inside the container.
    pub mount_point: String,
    /// Per-mount options (`ro,nosuid,nodev,...`).
    pub options: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`).
    pub propagation: Vec<String>,
    /// Filesystem type.
    pub fs_type: String,
    /// Per-superblock options (`size=1024k,mode=710`).
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether the per-mount options include `opt`.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }

    /// Whether the superblock options include `opt`.
    pub fn has_super_option(&self, opt: &str) -> bool {
        self.super_options.iter().any(|o| o == opt)
    }
}

/// Parses mountinfo text.
pub fn mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// The last (topmost) mount at `mount_point` in mountinfo text.
pub fn mount_at(text: &str, mount_point: &str) -> Option<MountEntry> {
    mountinfo(text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let rest: Vec<&str> = after.split(' ').collect();
    let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
    Some(MountEntry {
        mount_point: fields.get(4)?.replace("\\040", " "),
        options: list(fields.get(5)?),
        propagation: fields.iter().skip(6).map(|s| s.to_string()).collect(),
        fs_type: rest.first()?.to_string(),
        super_options: list(rest.get(2).copied().unwrap_or("")),
    })
}

/// Splits output into whitespace-separated words (for `ls`, `id -G`, maps).
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// `(fd, target)` from `ls -l /proc/self/fd`, without the directory fd `ls` itself opened (the
/// highest: it takes the lowest free number after every inherited fd).
pub fn inherited_fds(listing: &str) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = listing
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ").unwrap_or((l, ""));
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect();
    fds.sort();
    fds.pop();
    fds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mountinfo_line() {
        let line = "68 67 0:42 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620";
        let m = mount_at(line, "/dev/pts").expect("entry");
        assert!(m.has_option("noexec"));
        assert_eq!(m.propagation, vec!["shared:3"]);
        assert_eq!(m.fs_type, "devpts");
        assert!(m.has_super_option("gid=5"));
    }

    #[test]
    fn reads_cap_masks() {
        let status = "Name:\tsh\nCapEff:\t0000000020000420\n";
        assert_eq!(
            cap_mask(status, "CapEff"),
            Some(mask_of(&crate::config::DEFAULT_CAPS))
        );
    }
}

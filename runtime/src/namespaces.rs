//! `linux.namespaces`: which to make, which to join by path, and the user namespace's id maps.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use std::collections::HashMap;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, LinuxTimeOffset};

/// Errors with namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("namespace {kind}: duplicate entry in linux.namespaces")]
    Duplicate { kind: String },
    #[error("join {kind} namespace {path}: {source}")]
    Join {
        kind: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("open {kind} namespace {path}: {source}")]
    Open {
        kind: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("new {kinds} namespaces: {source}")]
    Unshare { kinds: String, source: nix::Error },
    #[error("write {file} of pid {pid}: {source}")]
    IdMap {
        file: &'static str,
        pid: i32,
        source: std::io::Error,
    },
    #[error("linux.uidMappings/gidMappings need a user namespace in linux.namespaces")]
    MappingsWithoutUserns,
    #[error("a new user namespace needs linux.uidMappings and linux.gidMappings")]
    UsernsWithoutMappings,
}

pub type Result<T> = std::result::Result<T, NamespaceError>;

/// CLONE_NEWTIME, which nix does not name.
const CLONE_NEWTIME: i32 = 0x80;

/// What to do with namespaces, worked out from the config before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Namespaces to make, user excluded.
    pub new: CloneFlags,
    /// Whether to make a new user namespace (first, before the others).
    pub new_user: bool,
    /// Namespaces to join: (type flag, path).
    pub join: Vec<(CloneFlags, PathBuf)>,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            new: CloneFlags::empty(),
            new_user: false,
            join: Vec::new(),
        }
    }
}

impl Plan {
    /// Whether the container gets (or joins) a namespace of this type.
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag)
            || (flag == CloneFlags::CLONE_NEWUSER && self.new_user)
            || self.join.iter().any(|(f, _)| *f == flag)
    }

    /// Whether the container's init needs a fork after unshare (pid and time namespaces apply to
    /// children only).
    pub fn needs_fork(&self) -> bool {
        self.has(CloneFlags::CLONE_NEWPID) || self.has(CloneFlags::from_bits_retain(CLONE_NEWTIME))
    }
}

/// The clone flag of a namespace type.
pub fn flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(CLONE_NEWTIME),
    }
}

/// Works out the plan for `namespaces`, refusing duplicates.
pub fn plan(namespaces: &[LinuxNamespace]) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut seen = CloneFlags::empty();
    for ns in namespaces {
        let f = flag(ns.typ());
        if seen.contains(f) {
            return Err(NamespaceError::Duplicate {
                kind: ns.typ().to_string(),
            });
        }
        seen |= f;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => plan.join.push((f, p.clone())),
            _ if f == CloneFlags::CLONE_NEWUSER => plan.new_user = true,
            _ => plan.new |= f,
        }
    }
    Ok(plan)
}

/// Joins the namespaces of `plan.join`. Every path is opened first (they name host paths);
/// those owned by a user namespace being joined can only be entered after it, so whatever fails
/// with EPERM is retried once the user namespace is joined.
pub fn join(plan: &Plan) -> Result<()> {
    let mut files = Vec::new();
    for (f, path) in &plan.join {
        let file = File::open(path).map_err(|source| NamespaceError::Open {
            kind: kind_name(*f),
            path: path.clone(),
            source,
        })?;
        files.push((*f, path, file));
    }
    let (user, others): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(f, _, _)| *f == CloneFlags::CLONE_NEWUSER);
    let mut retry = Vec::new();
    for entry in others {
        match setns(entry.2.as_fd(), entry.0) {
            Err(nix::Error::EPERM) if !user.is_empty() => retry.push(entry),
            r => r.map_err(|e| join_error(&entry, e))?,
        }
    }
    for entry in user.iter().chain(retry.iter()) {
        setns(entry.2.as_fd(), entry.0).map_err(|e| join_error(entry, e))?;
    }
    Ok(())
}

fn join_error(entry: &(CloneFlags, &PathBuf, File), source: nix::Error) -> NamespaceError {
    NamespaceError::Join {
        kind: kind_name(entry.0),
        path: entry.1.clone(),
        source,
    }
}

/// Makes the namespaces in `flags`.
pub fn unshare_new(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare_raw(flags).map_err(|source| NamespaceError::Unshare {
        kinds: kind_name(flags),
        source,
    })
}

/// unshare(2) with the flags zero-extended to the kernel's `unsigned long`: glibc's wrapper
/// takes an `int` and passes the register on as is, so an optimized caller may leave garbage in
/// the upper half, which the kernel rejects with EINVAL (seen with an LTO static build).
#[allow(unsafe_code)]
fn unshare_raw(flags: CloneFlags) -> nix::Result<()> {
    let bits = flags.bits() as u32 as libc::c_ulong;
    // SAFETY: unshare takes one integer argument and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_unshare, bits) };
    nix::Error::result(r).map(drop)
}

/// Writes `/proc/<pid>/uid_map` and `gid_map` (done by the parent, which holds the privilege).
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        // An unprivileged writer may only map its own gid, and only once setgroups is denied.
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny").map_err(|source| {
            NamespaceError::IdMap {
                file: "setgroups",
                pid,
                source,
            }
        })?;
    }
    write_map(pid, "uid_map", uids)?;
    write_map(pid, "gid_map", gids)
}

fn write_map(pid: i32, file: &'static str, maps: &[LinuxIdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|source| NamespaceError::IdMap {
        file,
        pid,
        source,
    })
}

/// Writes `linux.timeOffsets` for the time namespace just made: only possible before any
/// process has entered it, so between unshare and fork.
pub fn write_time_offsets(offsets: &HashMap<String, LinuxTimeOffset>) -> Result<()> {
    let text: String = offsets
        .iter()
        .map(|(clock, o)| {
            format!(
                "{clock} {} {}\n",
                o.secs().unwrap_or(0),
                o.nanosecs().unwrap_or(0)
            )
        })
        .collect();
    std::fs::write("/proc/self/timens_offsets", text).map_err(|source| NamespaceError::IdMap {
        file: "timens_offsets",
        pid: std::process::id() as i32,
        source,
    })
}

/// Checks that mappings and a user namespace come together.
pub fn check_mappings(plan: &Plan, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let has_maps = !uids.is_empty() || !gids.is_empty();
    if has_maps && !plan.has(CloneFlags::CLONE_NEWUSER) {
        return Err(NamespaceError::MappingsWithoutUserns);
    }
    if plan.new_user && (uids.is_empty() || gids.is_empty()) {
        return Err(NamespaceError::UsernsWithoutMappings);
    }
    Ok(())
}

fn kind_name(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::from_bits_retain(CLONE_NEWTIME), "time"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    v.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().expect("namespace")
    }

    #[test]
    fn plans() {
        let p = plan(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::User, None),
            ns(LinuxNamespaceType::Mount, None),
        ])
        .expect("plan");
        assert!(p.new_user);
        assert_eq!(p.new, CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS);
        assert_eq!(p.join.len(), 1);
        assert!(p.needs_fork());
        assert!(p.has(CloneFlags::CLONE_NEWNET));
        let dup = plan(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ]);
        assert!(matches!(dup, Err(NamespaceError::Duplicate { .. })));
    }

    #[test]
    fn mappings_need_userns() {
        let p = plan(&[ns(LinuxNamespaceType::Pid, None)]).expect("plan");
        let m = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(1000u32)
            .size(1u32)
            .build()
            .expect("map");
        assert!(check_mappings(&p, &[m], &[]).is_err());
        assert!(check_mappings(&p, &[], &[]).is_ok());
    }
}

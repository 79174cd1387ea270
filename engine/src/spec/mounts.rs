//! A container's mounts as dockerd writes them: the kernel filesystems every container gets,
//! the engine's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, and the user's binds
//! (`-v SRC:DST[:OPTS]`) and tmpfs mounts (`--tmpfs DST[:OPTS]`), checked as dockerd checks them.

use std::path::{Component, Path};

use oci_spec::runtime::{Mount, MountBuilder};

use super::SpecError;

/// `/dev/shm`'s size when none is asked for (Docker's 64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// The engine-written files a container sees under `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: String,
    pub hostname: String,
    pub resolv_conf: String,
}

/// A bind mount asked for with `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// `rprivate` unless a propagation option is given.
    pub propagation: String,
}

/// Parses `SRC:DST[:OPTS]` with an absolute host path as `SRC` (named volumes are the next
/// issue's); OPTS are `ro`, `rw` and a propagation (`[r]private`, `[r]shared`, `[r]slave`).
pub fn parse_bind(spec: &str) -> Result<Bind, SpecError> {
    let invalid = || SpecError::InvalidParameter(format!("invalid volume specification: '{spec}'"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, options) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(invalid()),
    };
    if !source.starts_with('/') {
        return Err(SpecError::InvalidParameter(format!(
            "invalid volume specification: '{spec}': named volumes are not supported yet, give an absolute host path"
        )));
    }
    check_destination(destination).map_err(|_| invalid())?;
    let mut bind = Bind {
        source: source.to_string(),
        destination: destination.to_string(),
        read_only: false,
        propagation: "rprivate".into(),
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => bind.read_only = true,
            "rw" => bind.read_only = false,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                bind.propagation = option.to_string()
            }
            // SELinux relabelling and consistency hints have no effect here, as on dockerd
            // without SELinux.
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            _ => return Err(invalid()),
        }
    }
    Ok(bind)
}

/// A mount destination must be absolute, not `/`, and without `..`.
pub fn check_destination(destination: &str) -> Result<(), SpecError> {
    let path = Path::new(destination);
    let bad = !path.is_absolute()
        || path.components().count() < 2
        || path.components().any(|c| c == Component::ParentDir);
    if bad {
        return Err(SpecError::InvalidParameter(format!(
            "invalid mount config: destination {destination:?} must be an absolute path other than /"
        )));
    }
    Ok(())
}

/// Every mount of the container: the defaults, `/etc` files, then tmpfs and binds (a user
/// mount replaces a default at the same destination, as dockerd does).
pub fn mounts(
    etc: &EtcFiles,
    binds: &[Bind],
    tmpfs: &[(String, String)],
    shm_size: u64,
    privileged: bool,
) -> Result<Vec<Mount>, SpecError> {
    let mut all = defaults(shm_size, privileged)?;
    for (destination, source) in [
        ("/etc/resolv.conf", &etc.resolv_conf),
        ("/etc/hostname", &etc.hostname),
        ("/etc/hosts", &etc.hosts),
    ] {
        all.push(mount(destination, "bind", source, &["rbind", "rprivate"])?);
    }
    for (destination, options) in tmpfs {
        check_destination(destination)?;
        let mut opts = vec!["nosuid", "nodev", "noexec"];
        opts.extend(options.split(',').filter(|o| !o.is_empty()));
        replace(&mut all, mount(destination, "tmpfs", "tmpfs", &opts)?);
    }
    for bind in binds {
        let access = if bind.read_only { "ro" } else { "rw" };
        let options = ["rbind", bind.propagation.as_str(), access];
        replace(
            &mut all,
            mount(&bind.destination, "bind", &bind.source, &options)?,
        );
    }
    Ok(all)
}

/// Docker's kernel filesystems; `/sys` and the cgroup tree read-write only when privileged.
fn defaults(shm_size: u64, privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let sys_access = if privileged { "rw" } else { "ro" };
    let shm = format!("size={}k", shm_size / 1024);
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_access],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_access],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        )?,
    ])
}

fn replace(all: &mut Vec<Mount>, new: Mount) {
    all.retain(|m| m.destination() != new.destination());
    all.push(new);
}

fn mount(
    destination: &str,
    kind: &str,
    source: &str,
    options: &[&str],
) -> Result<Mount, SpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ(kind)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| SpecError::Internal(format!("mount {destination}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_as_dockerd_reads_them() {
        let b = parse_bind("/host/data:/data:ro,rshared").unwrap();
        assert_eq!(
            b,
            Bind {
                source: "/host/data".into(),
                destination: "/data".into(),
                read_only: true,
                propagation: "rshared".into()
            }
        );
        assert!(!parse_bind("/h:/d").unwrap().read_only);
        for bad in [
            "/h",
            "/h:/d:bogus",
            "/h:relative",
            "/h:/",
            "/h:/a/../b",
            "a:b:c:d",
        ] {
            let e = parse_bind(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid volume specification"),
                "{bad}: {e}"
            );
        }
        assert!(parse_bind("named:/data")
            .unwrap_err()
            .to_string()
            .contains("named volumes"));
    }

    #[test]
    fn user_mounts_replace_defaults_and_come_last() {
        let etc = EtcFiles {
            hosts: "/e/hosts".into(),
            hostname: "/e/hostname".into(),
            resolv_conf: "/e/resolv.conf".into(),
        };
        let binds = [parse_bind("/h:/data:ro").unwrap()];
        let tmpfs = [("/dev/shm".to_string(), "size=1m".to_string())];
        let all = mounts(&etc, &binds, &tmpfs, DEFAULT_SHM_SIZE, false).unwrap();
        let shm: Vec<&Mount> = all
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert!(shm[0]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1m".to_string()));
        let last = all.last().unwrap();
        assert_eq!(last.destination(), Path::new("/data"));
        assert_eq!(
            last.options().as_ref().unwrap(),
            &["rbind", "rprivate", "ro"].map(String::from).to_vec()
        );
        let sys = all
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    }
}

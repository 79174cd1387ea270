//! `linux.sysctl`: only the kernel parameters that belong to one of the container's own
//! namespaces (runc's list), so a config cannot change the host's; and their paths under
//! /proc/sys.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// Errors in `linux.sysctl`.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0:?}: invalid name")]
    InvalidName(String),
    #[error("sysctl {key:?} needs the container to have its own {namespace} namespace")]
    NeedsNamespace {
        key: String,
        namespace: &'static str,
    },
    #[error("sysctl {0:?} is not namespaced: it would change the host")]
    NotNamespaced(String),
}

pub type Result<T> = std::result::Result<T, SysctlError>;

/// IPC sysctls (the ipc namespace has its own).
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks every key of `sysctls` against the container's namespaces.
pub fn check<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    namespaces: &[LinuxNamespace],
) -> Result<()> {
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    for key in keys {
        let dotted = key.replace('/', ".");
        if key.is_empty()
            || key.starts_with(['/', '.'])
            || key.split(['.', '/']).any(|c| c.is_empty() || c == "..")
        {
            return Err(SysctlError::InvalidName(key.clone()));
        }
        let (ok, namespace) =
            if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
                (has(LinuxNamespaceType::Ipc), "ipc")
            } else if dotted.starts_with("net.") {
                (has(LinuxNamespaceType::Network), "network")
            } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
                (has(LinuxNamespaceType::Uts), "uts")
            } else {
                return Err(SysctlError::NotNamespaced(key.clone()));
            };
        if !ok {
            return Err(SysctlError::NeedsNamespace {
                key: key.clone(),
                namespace,
            });
        }
    }
    Ok(())
}

/// The file of a (checked) key: dots are separators unless the key uses slashes (then a dot
/// may be part of a name, as in `net/ipv4/conf/eth0.100/forwarding`).
pub fn path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    PathBuf::from("/proc/sys").join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(types: &[LinuxNamespaceType]) -> Vec<LinuxNamespace> {
        types
            .iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect()
    }

    #[test]
    fn only_namespaced_keys_pass() {
        let all = ns(&[
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
        ]);
        let ok = [
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
            "net/ipv4/conf/eth0.100/forwarding",
            "kernel.domainname",
        ];
        assert!(check(
            ok.iter().map(|s| s.to_string()).collect::<Vec<_>>().iter(),
            &all
        )
        .is_ok());
        for bad in [
            "kernel.core_pattern",
            "/tmp/x",
            "/proc/sysrq-trigger",
            "net..x",
            "vm.swappiness",
            "",
        ] {
            let key = bad.to_string();
            assert!(check([&key], &all).is_err(), "{bad}");
        }
        let key = "net.ipv4.ip_forward".to_string();
        assert!(matches!(
            check([&key], &ns(&[])),
            Err(SysctlError::NeedsNamespace { .. })
        ));
    }

    #[test]
    fn paths() {
        assert_eq!(
            path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path("net/ipv4/conf/eth0.100/forwarding"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }
}

//! The capabilities of a container's process: Docker's default set, changed by `--cap-add`
//! and `--cap-drop` (names with or without `CAP_`, any case, `ALL`), or every capability the
//! engine holds when privileged.

use std::str::FromStr;

use caps::Capability;

use super::SpecError;

/// Docker's default capabilities.
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capability set, in Docker's order: the defaults kept, then the added ones.
pub fn effective(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, SpecError> {
    // "Every" capability is every one this engine holds in its bounding set (containerd's
    // WithAllCurrentCapabilities): asking for more fails the container's capset.
    let all: Vec<String> = caps::read(None, caps::CapSet::Bounding)
        .map_err(|e| SpecError::Internal(format!("reading the engine's capabilities: {e}")))?
        .iter()
        .map(|c| c.to_string())
        .collect();
    if privileged {
        let mut all = all;
        all.sort();
        return Ok(all);
    }
    let add = normalise(add, "CapAdd")?;
    let drop = normalise(drop, "CapDrop")?;
    let mut set: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    let added: Vec<String> = if add.iter().any(|c| c == "ALL") {
        let mut all = all;
        all.sort();
        all
    } else {
        add
    };
    for cap in added {
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    Ok(set)
}

/// `net_admin`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; unknown names fail as dockerd words it.
fn normalise(names: &[String], field: &str) -> Result<Vec<String>, SpecError> {
    names
        .iter()
        .map(|name| {
            let upper = name.to_ascii_uppercase();
            if upper == "ALL" {
                return Ok(upper);
            }
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            Capability::from_str(&full)
                .map(|c| c.to_string())
                .map_err(|_| {
                    SpecError::InvalidParameter(format!(
                        "invalid {field}: unknown capability: {full:?}"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_dockers_fourteen() {
        assert_eq!(effective(&[], &[], false).unwrap(), v(DEFAULT));
    }

    #[test]
    fn add_and_drop_take_any_spelling() {
        let set = effective(
            &v(&["net_admin", "CAP_SYS_TIME"]),
            &v(&["chown", "Cap_Kill"]),
            false,
        )
        .unwrap();
        assert!(set.contains(&"CAP_NET_ADMIN".into()) && set.contains(&"CAP_SYS_TIME".into()));
        assert!(!set.contains(&"CAP_CHOWN".into()) && !set.contains(&"CAP_KILL".into()));
        assert_eq!(
            effective(&v(&["NET_RAW"]), &v(&["ALL"]), false).unwrap(),
            v(&["CAP_NET_RAW"])
        );
    }

    #[test]
    fn all_and_privileged_give_every_capability() {
        let every = effective(&[], &[], true).unwrap();
        let held = caps::read(None, caps::CapSet::Bounding).unwrap();
        assert_eq!(every.len(), held.len());
        assert_eq!(
            effective(&v(&["ALL"]), &[], false).unwrap().len(),
            every.len()
        );
    }

    #[test]
    fn unknown_capabilities_are_refused() {
        let e = effective(&v(&["CAP_BOGUS"]), &[], false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapAdd: unknown capability: \"CAP_BOGUS\""
        );
    }
}

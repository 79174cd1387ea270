//! `linux.resources` as applied to the cgroup: the config's own, plus, as runc adds them, device
//! rules that let the container use its default devices and the devices of `linux.devices`,
//! so a config that starts with deny-all (as Docker's does) still has /dev/null and a pty.

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources};

/// (type, major, minor) of the devices every container may use: null, zero, full, tty, random,
/// urandom, /dev/pts/*, /dev/ptmx.
const DEFAULT_ALLOWED: [(LinuxDeviceType, i64, Option<i64>); 8] = [
    (LinuxDeviceType::C, 1, Some(3)),
    (LinuxDeviceType::C, 1, Some(5)),
    (LinuxDeviceType::C, 1, Some(7)),
    (LinuxDeviceType::C, 5, Some(0)),
    (LinuxDeviceType::C, 1, Some(8)),
    (LinuxDeviceType::C, 1, Some(9)),
    (LinuxDeviceType::C, 136, None),
    (LinuxDeviceType::C, 5, Some(2)),
];

/// The resources to apply: the config's, with device rules appended for the default devices
/// and `devices` (only when the config restricts devices at all).
pub fn effective(
    resources: Option<&LinuxResources>,
    devices: &[LinuxDevice],
) -> Option<LinuxResources> {
    let mut res = resources.cloned()?;
    let Some(mut rules) = res.devices().clone() else {
        return Some(res);
    };
    let allow = |typ, major, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(major)
            .access("rwm");
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().ok()
    };
    rules.extend(
        DEFAULT_ALLOWED
            .iter()
            .filter_map(|(t, maj, min)| allow(*t, *maj, *min)),
    );
    rules.extend(
        devices
            .iter()
            .filter_map(|d| allow(d.typ(), d.major(), Some(d.minor()))),
    );
    res.set_devices(Some(rules));
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxResourcesBuilder};

    #[test]
    fn appends_defaults_after_deny_all() {
        let deny = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default()
            .devices(vec![deny])
            .build()
            .unwrap();
        let dev = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let out = effective(Some(&res), &[dev]).unwrap();
        let rules = out.devices().as_ref().unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules.len(), 1 + DEFAULT_ALLOWED.len() + 1);
        assert_eq!(rules.last().unwrap().major(), Some(10));
    }

    #[test]
    fn leaves_unrestricted_configs_alone() {
        let res = LinuxResourcesBuilder::default().build().unwrap();
        assert!(effective(Some(&res), &[]).unwrap().devices().is_none());
        assert!(effective(None, &[]).is_none());
    }
}

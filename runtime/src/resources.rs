//! `linux.resources` as applied to the cgroup: the config's own, plus, as runc and youki add
//! them, device rules that let the container use its default devices, so a config that starts
//! with deny-all (as Docker's does) still has /dev/null and a pty. Devices of `linux.devices` get
//! no rule: the config's own rules decide, so a config can create a node and still deny it.

use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources,
};

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

/// The config's resources in the two steps they are applied in, as runc does: everything but
/// device rules when the cgroup is made; device rules (with the defaults appended) once init has
/// made the container's device nodes, which a deny rule would otherwise forbid it to mknod.
pub fn split(
    resources: Option<&LinuxResources>,
) -> (Option<LinuxResources>, Option<LinuxResources>) {
    let Some(res) = resources else {
        return (None, None);
    };
    let mut first = res.clone();
    first.set_devices(None);
    let devices = res.devices().clone().map(|rules| {
        let mut only = LinuxResources::default();
        only.set_devices(Some(with_default_devices(rules)));
        only
    });
    (Some(first), devices)
}

/// `rules` with allow rules for the default devices appended.
fn with_default_devices(mut rules: Vec<LinuxDeviceCgroup>) -> Vec<LinuxDeviceCgroup> {
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
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResourcesBuilder;

    #[test]
    fn devices_come_second_with_defaults_after_deny_all() {
        let deny = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let res = LinuxResourcesBuilder::default()
            .devices(vec![deny])
            .build()
            .unwrap();
        let (first, devices) = split(Some(&res));
        assert!(first.unwrap().devices().is_none());
        let devices = devices.unwrap();
        let rules = devices.devices().as_ref().unwrap();
        assert!(!rules[0].allow());
        assert_eq!(rules.len(), 1 + DEFAULT_ALLOWED.len());
        assert!(rules[1..].iter().all(|r| r.allow()));
    }

    #[test]
    fn leaves_unrestricted_configs_alone() {
        let res = LinuxResourcesBuilder::default().build().unwrap();
        assert!(split(Some(&res)).1.is_none());
        assert_eq!(split(None), (None, None));
    }
}

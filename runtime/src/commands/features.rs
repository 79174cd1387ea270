//! `features`: the runtime-spec features document (runtime-spec `features.md`, modelled on
//! runc 1.2's output), built with oci-spec's types. It lists only what this runtime implements:
//! seccomp actions, flags and architectures are checked against the real seccomp code and the
//! installed libseccomp; fields we know nothing about are left out ("unknown").

use std::collections::HashMap;
use std::io::Write;

use caps::Capability;
use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext};
use oci_spec::runtime::{
    ApparmorBuilder, Arch, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder, IntelRdtBuilder,
    LinuxFeature, LinuxFeatureBuilder, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompBuilder, LinuxSeccompFilterFlag, MountExtensionsBuilder, Seccomp, SeccompBuilder,
    SelinuxBuilder,
};
use serde_json::Value;

use crate::state::OCI_VERSION;
use crate::{Error, Result};

/// The oldest runtime-spec version whose configs we take.
const OCI_VERSION_MIN: &str = "1.0.0";

/// Annotation carrying this runtime's version.
const VERSION_ANNOTATION: &str = "io.github.keel.runtime.version";

/// Annotation carrying the libseccomp version (as runc reports it).
const LIBSECCOMP_ANNOTATION: &str = "io.github.seccomp.libseccomp.version";

/// Every hook the runtime runs (create, start and delete run them all).
const HOOKS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The mount options `mounts::options` recognizes as flags, propagation or recursive
/// attributes; anything else is passed to the filesystem. `tmpcopyup` is refused, so it is not
/// listed; nor are `idmap` and `ridmap`, which runc does not list either (they are announced by
/// `mountExtensions.idmap`).
const MOUNT_OPTIONS: [&str; 61] = [
    // mount(2) flags, set and cleared.
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rw",
    "silent",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    // Propagation.
    "private",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "shared",
    "slave",
    "unbindable",
    // Recursive mount_setattr(2) attributes.
    "ratime",
    "rdev",
    "rdiratime",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "rrelatime",
    "rro",
    "rrw",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
];

/// Every namespace `namespaces::flag` creates or joins.
const NAMESPACES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The seccomp actions `seccomp::compile` translates (NOTIFY as a rule's action, with an agent
/// at `listenerPath`; never as the default action).
const SECCOMP_ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// The argument comparisons `seccomp::compile` translates: all of the spec's.
const SECCOMP_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The filter flags `seccomp::compile` knows (WAIT_KILLABLE_RECV only matters with notify).
const SECCOMP_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// The architectures a profile may name, as the spec spells them.
const ARCHS: [Arch; 23] = [
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

/// Prints the features JSON, indented as runc prints it.
pub fn features() -> Result<()> {
    let doc = document()?;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| Error::sys("features", e))?;
    writeln!(std::io::stdout().lock(), "{text}")
        .map_err(|e| Error::sys("features: writing the output", e))
}

/// The features document as JSON, with unknown (`None`) fields left out rather than `null`.
pub fn document() -> Result<Value> {
    let mut doc = serde_json::to_value(build()?).map_err(|e| Error::sys("features", e))?;
    strip_nulls(&mut doc);
    Ok(doc)
}

fn build() -> Result<Features> {
    FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(OCI_VERSION)
        .hooks(strings(&HOOKS))
        .mount_options(mount_options())
        .linux(linux()?)
        .annotations(annotations())
        .build()
        .map_err(spec_err)
}

fn linux() -> Result<LinuxFeature> {
    LinuxFeatureBuilder::default()
        .namespaces(NAMESPACES.to_vec())
        .capabilities(capabilities())
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .rdma(false)
                .build()
                .map_err(spec_err)?,
        )
        .seccomp(seccomp()?)
        .apparmor(
            ApparmorBuilder::default()
                .enabled(false)
                .build()
                .map_err(spec_err)?,
        )
        .selinux(
            SelinuxBuilder::default()
                .enabled(false)
                .build()
                .map_err(spec_err)?,
        )
        .intel_rdt(
            IntelRdtBuilder::default()
                .enabled(false)
                .build()
                .map_err(spec_err)?,
        )
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(
                    IDMapBuilder::default()
                        .enabled(true)
                        .build()
                        .map_err(spec_err)?,
                )
                .build()
                .map_err(spec_err)?,
        )
        .build()
        .map_err(spec_err)
}

/// Mount options, sorted and without repeats.
fn mount_options() -> Vec<String> {
    let mut options = strings(&MOUNT_OPTIONS);
    options.sort();
    options.dedup();
    options
}

/// Every capability the caps crate knows, in kernel order.
fn capabilities() -> Vec<String> {
    let mut all: Vec<Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(ToString::to_string).collect()
}

fn seccomp() -> Result<Seccomp> {
    let known: Vec<String> = SECCOMP_FLAGS.iter().map(ToString::to_string).collect();
    let supported: Vec<String> = SECCOMP_FLAGS
        .iter()
        .filter(|f| flag_supported(**f))
        .map(ToString::to_string)
        .collect();
    SeccompBuilder::default()
        .enabled(true)
        .actions(SECCOMP_ACTIONS.to_vec())
        .operators(strings(&SECCOMP_OPERATORS))
        .archs(
            ARCHS
                .iter()
                .copied()
                .filter(|a| arch_known(*a))
                .collect::<Vec<_>>(),
        )
        .known_flags(known)
        .supported_flags(supported)
        .build()
        .map_err(spec_err)
}

/// Whether a profile with `flag` compiles: the seccomp code refuses flags the kernel lacks.
fn flag_supported(flag: LinuxSeccompFilterFlag) -> bool {
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .flags(vec![flag])
        .build();
    profile.is_ok_and(|p: LinuxSeccomp| crate::seccomp::compile(&p, None).is_ok())
}

/// Whether a filter for this host can include `arch`, as `seccomp::compile` builds one: known to
/// the installed libseccomp and of the native byte order (libseccomp mixes no endiannesses).
fn arch_known(arch: Arch) -> bool {
    let Some(name) = serde_json::to_value(arch)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
    else {
        return false;
    };
    let Ok(scmp) = name.parse::<ScmpArch>() else {
        return false;
    };
    ScmpFilterContext::new(ScmpAction::Allow).is_ok_and(|mut ctx| ctx.add_arch(scmp).is_ok())
}

fn annotations() -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert(
        VERSION_ANNOTATION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        let version = format!("{}.{}.{}", v.major, v.minor, v.micro);
        map.insert(LIBSECCOMP_ANNOTATION.to_string(), version);
    }
    map
}

/// Removes `null` members from every object (oci-spec serializes `None` as `null`).
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn spec_err(e: oci_spec::OciSpecError) -> Error {
    Error::sys("features", std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_has_the_spec_shape() {
        let doc = document().expect("features");
        assert_eq!(doc["ociVersionMin"], "1.0.0");
        assert_eq!(doc["ociVersionMax"], OCI_VERSION);
        assert_eq!(doc["hooks"].as_array().map(Vec::len), Some(6));
        assert_eq!(doc["linux"]["namespaces"][0], "cgroup");
        assert_eq!(doc["linux"]["cgroup"]["systemd"], false);
        assert_eq!(doc["linux"]["mountExtensions"]["idmap"]["enabled"], true);
        assert!(doc["linux"].get("memoryPolicy").is_none());
        let caps = doc["linux"]["capabilities"].as_array().expect("caps");
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        assert_eq!(
            doc["annotations"][VERSION_ANNOTATION],
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn every_listed_mount_option_is_parsed_as_an_option() {
        for option in mount_options() {
            let parsed = crate::mounts::parse_options(&[option.as_str()]);
            assert!(
                parsed.is_ok_and(|o| o.data.is_empty()),
                "{option} is not a known mount option"
            );
        }
        assert_eq!(
            mount_options().len(),
            MOUNT_OPTIONS.len(),
            "repeated option"
        );
        assert!(crate::mounts::parse_options(&["tmpcopyup"]).is_err());
    }

    #[test]
    fn every_listed_seccomp_action_compiles() {
        for action in SECCOMP_ACTIONS {
            let rule = oci_spec::runtime::LinuxSyscallBuilder::default()
                .names(vec!["getpid".to_string()])
                .action(action)
                .build()
                .expect("rule");
            let profile = LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActAllow)
                .syscalls(vec![rule])
                .listener_path("/run/agent.sock")
                .build()
                .expect("profile");
            let compiled = crate::seccomp::compile(&profile, None);
            assert!(compiled.is_ok(), "{action}: {compiled:?}");
        }
        let doc = document().expect("features");
        let archs = doc["linux"]["seccomp"]["archs"].as_array().expect("archs");
        assert!(archs.iter().any(|a| a == "SCMP_ARCH_X86_64"));
    }
}

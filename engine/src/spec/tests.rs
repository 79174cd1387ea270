//! The spec's Docker defaults and what each setting changes.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::*;

fn settings() -> Settings {
    Settings {
        hostname: "c0ffee".into(),
        args: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        etc: Some(EtcFiles {
            hosts: "/e/hosts".into(),
            hostname: "/e/hostname".into(),
            resolv_conf: "/e/resolv.conf".into(),
        }),
        cgroups_path: "/keel/c0ffee".into(),
        ..Default::default()
    }
}

fn json(spec: &Spec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap()
}

#[test]
fn a_default_container_is_confined_as_dockers() {
    let spec = build(&settings()).unwrap();
    let j = json(&spec);
    let caps = j["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert_eq!(caps.len(), 14);
    assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        j["linux"]["maskedPaths"].as_array().unwrap().len(),
        MASKED.len()
    );
    assert!(j["linux"]["readonlyPaths"]
        .as_array()
        .unwrap()
        .contains(&"/proc/sys".into()));
    let devices = j["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(devices[0]["allow"], false);
    assert!(devices
        .iter()
        .any(|d| d["major"] == 1 && d["minor"] == 3 && d["allow"] == true));
    let namespaces = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap();
    assert!(namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network));
    let destinations: Vec<_> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    for d in [
        "/proc",
        "/dev/shm",
        "/dev/mqueue",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(
            destinations.iter().any(|m| m == Path::new(d)),
            "{d} missing: {destinations:?}"
        );
    }
    assert_eq!(j["hostname"], "c0ffee");
    assert_eq!(j["root"]["path"], "rootfs");
    assert_eq!(j["linux"]["cgroupsPath"], "/keel/c0ffee");
    // Nothing but what Docker sets: no defaults of oci-spec's own slip in.
    let mut keys: Vec<&String> = j["linux"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cgroupsPath",
            "maskedPaths",
            "namespaces",
            "readonlyPaths",
            "resources",
            "seccomp"
        ]
    );
    let mut keys: Vec<&String> = j["process"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "args",
            "capabilities",
            "cwd",
            "env",
            "noNewPrivileges",
            "oomScoreAdj",
            "terminal",
            "user"
        ]
    );
}

#[test]
fn privileged_lifts_the_confinement() {
    let spec = build(&Settings {
        privileged: true,
        ..settings()
    })
    .unwrap();
    let j = json(&spec);
    assert!(j["linux"]["seccomp"].is_null());
    assert_eq!(j["linux"]["maskedPaths"], serde_json::json!([]));
    assert_eq!(j["linux"]["readonlyPaths"], serde_json::json!([]));
    assert!(
        j["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len()
            > 30
    );
    assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], true);
}

#[test]
fn settings_reach_the_spec() {
    let spec = build(&Settings {
        tty: true,
        read_only_rootfs: true,
        user: User {
            uid: 1000,
            gid: 100,
            additional_gids: vec![10],
        },
        cwd: "/work".into(),
        network: Network::Host,
        security_opt: vec!["no-new-privileges".into(), "seccomp=unconfined".into()],
        cap_drop: vec!["ALL".into()],
        resources: Resources {
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            pids_limit: Some(50),
            ..Default::default()
        },
        ..settings()
    })
    .unwrap();
    let j = json(&spec);
    assert_eq!(j["process"]["terminal"], true);
    assert_eq!(j["process"]["noNewPrivileges"], true);
    assert_eq!(j["process"]["user"]["uid"], 1000);
    assert_eq!(j["process"]["user"]["additionalGids"][0], 10);
    assert_eq!(j["process"]["cwd"], "/work");
    assert_eq!(j["root"]["readonly"], true);
    assert!(j["linux"]["seccomp"].is_null());
    assert!(j["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(j["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(j["linux"]["resources"]["memory"]["swap"], 128 << 20);
    assert_eq!(j["linux"]["resources"]["cpu"]["quota"], 150_000);
    assert_eq!(j["linux"]["resources"]["cpu"]["period"], 100_000);
    assert_eq!(j["linux"]["resources"]["pids"]["limit"], 50);
    let namespaces = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap();
    assert!(!namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network));
}

#[test]
fn bad_security_options_are_the_requests_fault() {
    let e = build(&Settings {
        security_opt: vec!["no-new-privileges:maybe".into()],
        ..settings()
    })
    .unwrap_err();
    assert!(matches!(e, SpecError::InvalidParameter(_)), "{e}");
}

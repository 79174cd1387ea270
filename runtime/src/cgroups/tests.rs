//! Tests of cgroup management; those that create cgroups need root and are skipped without it.

use super::resources::{available_controllers, device_rules};
use super::*;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

/// Removes the test cgroup whatever happens to the test.
struct Guard(Cgroup);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(err) = self.0.destroy() {
            eprintln!("cleanup of {}: {err}", self.0.path());
        }
    }
}

/// Kills and reaps a child whatever happens to the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh `/keel-test-<pid>-<n>` cgroup, or None (with the reason) when not root.
fn test_cgroup() -> Option<Guard> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating cgroups needs root");
        return None;
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = N.fetch_add(1, Ordering::SeqCst);
    let path = format!("/keel-test-{}-{n}{nanos}", std::process::id());
    Some(Guard(Cgroup::load(&path).unwrap()))
}

fn v1() -> bool {
    !hierarchies::is_cgroup2_unified_mode()
}

/// The cgroup's file `name` (in whichever hierarchy has it), trimmed.
fn read_file(cg: &Cgroup, name: &str) -> String {
    let dir = cg
        .dirs()
        .into_iter()
        .find(|d| d.join(name).exists())
        .unwrap();
    fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn sleeper() -> Reaped {
    Reaped(Command::new("sleep").arg("100").spawn().unwrap())
}

#[test]
fn paths_for_containers() {
    let path = |p: Option<&str>| Cgroup::for_container(p, "c1").map(|c| c.path().to_string());
    assert_eq!(path(None).unwrap(), "/keel/c1");
    assert_eq!(path(Some("")).unwrap(), "/keel/c1");
    assert_eq!(path(Some("/docker/abc")).unwrap(), "/docker/abc");
    assert_eq!(path(Some("pod1/c1")).unwrap(), "/keel/pod1/c1");
    assert_eq!(path(Some("//a/./b/")).unwrap(), "/a/b");
    for bad in ["/a/../../etc", "../x", "/", "."] {
        let err = path(Some(bad)).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "{bad}: {err}"
        );
    }
    assert!(Cgroup::for_container(None, "..").is_err());
    assert!(Cgroup::for_container(None, "").is_err());
    assert_eq!(Cgroup::load("/keel/x").unwrap().path(), "/keel/x");
}

#[test]
fn device_rules_make_wildcards_explicit() {
    let rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(136)
        .build()
        .unwrap();
    let rules = device_rules(&[rule]);
    assert_eq!(rules[0].major(), Some(136));
    assert_eq!(rules[0].minor(), Some(-1));
    assert_eq!(rules[0].access().as_deref(), Some("rwm"));
}

#[test]
fn limits_are_written_at_the_hierarchy_root() {
    let Some(mut guard) = test_cgroup() else {
        return;
    };
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    guard.0.apply(Some(&resources)).unwrap();
    let cg = &guard.0;
    if v1() {
        // Absolute in each hierarchy, not below this process's own cgroup.
        let dir = Path::new("/sys/fs/cgroup/memory").join(cg.relative());
        assert!(dir.is_dir(), "{} missing", dir.display());
        assert_eq!(
            read_file(cg, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read_file(cg, "cpu.shares"), "512");
        assert_eq!(read_file(cg, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_file(cg, "cpu.cfs_period_us"), "100000");
    } else {
        assert!(Path::new("/sys/fs/cgroup").join(cg.relative()).is_dir());
        assert_eq!(read_file(cg, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read_file(cg, "cpu.max"), "50000 100000");
    }
    assert_eq!(read_file(cg, "pids.max"), "32");
}

#[test]
fn process_lifecycle_pids_freeze_destroy() {
    let Some(mut guard) = test_cgroup() else {
        return;
    };
    guard.0.apply(None).unwrap();
    let mut child = sleeper();
    let pid = i32::try_from(child.0.id()).unwrap();
    guard.0.add_process(pid).unwrap();
    assert_eq!(guard.0.pids().unwrap(), [pid]);

    guard.0.set_frozen(true).unwrap();
    assert!(guard.0.is_frozen().unwrap());
    guard.0.set_frozen(false).unwrap();
    assert!(!guard.0.is_frozen().unwrap());

    // A live process keeps the cgroup: destroy fails rather than move it out.
    let err = guard.0.destroy().unwrap_err();
    assert!(err.to_string().contains("processes still in it"), "{err}");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    guard.0.destroy().unwrap();
    assert!(guard.0.dirs().iter().all(|d| !d.exists()));
    assert!(guard.0.pids().unwrap().is_empty());
    // Destroying what is gone is fine.
    guard.0.destroy().unwrap();
}

#[test]
fn pids_include_child_cgroups() {
    let Some(mut guard) = test_cgroup() else {
        return;
    };
    guard.0.apply(None).unwrap();
    let mut nested = Cgroup::load(&format!("{}/inner", guard.0.path())).unwrap();
    nested.apply(None).unwrap();
    let child = sleeper();
    let pid = i32::try_from(child.0.id()).unwrap();
    nested.add_process(pid).unwrap();
    assert_eq!(guard.0.pids().unwrap(), [pid]);
    drop(child);
    // The outer destroy removes the inner cgroup too (after the guard's retry on EBUSY).
    guard.0.destroy().unwrap();
    assert!(nested.dirs().iter().all(|d| !d.exists()));
}

#[test]
fn device_rules_are_written_in_order() {
    let Some(mut guard) = test_cgroup() else {
        return;
    };
    if !v1() {
        eprintln!("skipped: device rules need cgroup v1 here");
        return;
    }
    let rule = |allow, typ, major, minor: Option<i64>| {
        let b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access("rwm");
        let b = if let Some(m) = major { b.major(m) } else { b };
        let b = if let Some(m) = minor { b.minor(m) } else { b };
        b.build().unwrap()
    };
    let devices = vec![
        rule(false, LinuxDeviceType::A, None, None),
        rule(true, LinuxDeviceType::C, Some(1), Some(3)),
        rule(true, LinuxDeviceType::C, Some(136), None),
    ];
    let resources = LinuxResourcesBuilder::default()
        .devices(devices)
        .build()
        .unwrap();
    guard.0.apply(Some(&resources)).unwrap();
    let list = read_file(&guard.0, "devices.list");
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["c 1:3 rwm", "c 136:* rwm"]
    );
}

#[test]
fn missing_controller_is_named() {
    let Some(mut guard) = test_cgroup() else {
        return;
    };
    let limit = LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(1 << 21)
        .build();
    let resources = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![limit.unwrap()])
        .build()
        .unwrap();
    let result = guard.0.apply(Some(&resources));
    if available_controllers(&guard.0).contains("hugetlb") {
        eprintln!("hugetlb is mounted here: checking it applies instead");
        result.unwrap();
        return;
    }
    let err = result.unwrap_err();
    assert!(matches!(
        err,
        CgroupError::Unsupported {
            resource: "hugepageLimits",
            ..
        }
    ));
    assert!(err.to_string().contains("hugetlb"), "{err}");
    // apply created the cgroup, so its failure removed it.
    assert!(guard.0.dirs().iter().all(|d| !d.exists()));
}

/// Run by `rootless_apply_is_not_writable` as an unprivileged user; does nothing otherwise.
#[test]
fn unprivileged_child() {
    let Ok(path) = std::env::var("KEEL_CGROUP_TEST_CHILD") else {
        return;
    };
    let err = Cgroup::load(&path).unwrap().apply(None).unwrap_err();
    assert!(matches!(err, CgroupError::NotWritable { .. }), "{err}");
}

#[test]
fn rootless_apply_is_not_writable() {
    let Some(guard) = test_cgroup() else { return };
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args([
            "--exact",
            "cgroups::tests::unprivileged_child",
            "--test-threads=1",
        ])
        .env("KEEL_CGROUP_TEST_CHILD", guard.0.path())
        .status();
    match status {
        Ok(status) => assert!(status.success(), "unprivileged child failed: {status}"),
        Err(err) => eprintln!("skipped: cannot run setpriv: {err}"),
    }
}

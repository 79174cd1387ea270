//! Containers with a user namespace (container ids 0..65536 mapped to host 100000..165536),
//! checked from inside: ownership seen across a bind mount both ways, the default devices and
//! `linux.devices` (bind-mounted from the host where mknod is not allowed), tmpfs, proc and
//! sysfs mounts, and joining another container's user namespace by path.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use keel_integration_tests::binary::has_runc;
use keel_integration_tests::checks::{expect_one_line_error, expect_success};
use keel_integration_tests::config::{from_json, mount};
use keel_integration_tests::inside::{mount_at, words};
use keel_integration_tests::{
    host, require, require_root, run_and_capture, unique_id, Bundle, Config, Runtime,
};
use oci_spec::runtime::{Capability, LinuxDevice, LinuxNamespaceType};
use serde_json::json;
use tempfile::TempDir;

const HOST_ID: u32 = 100_000;
const SIZE: u32 = 65_536;
const WAIT: Duration = Duration::from_secs(10);

/// The default config with a user namespace mapping 0 → 100000 (size 65536).
fn userns() -> Config {
    Config::new().user_namespace(HOST_ID, HOST_ID, SIZE)
}

/// Runs `config` (bundle prepared by `prepare`) with `script` and returns its stdout.
fn run_sh_in(
    config: Config,
    script: &str,
    prepare: impl FnOnce(&Bundle) -> Result<()>,
) -> Result<String> {
    let bundle = Bundle::new(&config.sh(script))?;
    prepare(&bundle)?;
    let rt = Runtime::keel()?;
    let out = rt.run(bundle.path(), &unique_id("userns"))?;
    expect_success(&out, "run")?;
    Ok(String::from_utf8(out.stdout)?)
}

fn run_sh(config: Config, script: &str) -> Result<String> {
    Ok(run_and_capture(&config.sh(script))?.success()?.stdout)
}

/// The rootfs belongs to host root, which is unmapped inside: mount points are made beforehand
/// (as a runc user would: the container's root could not create them).
fn mount_point(bundle: &Bundle, path: &str) -> Result<()> {
    fs::create_dir_all(bundle.rootfs().join(path.trim_start_matches('/')))?;
    Ok(())
}

/// A host directory (mode 0755) owned by host `uid:gid`.
fn host_dir(uid: u32, gid: u32) -> Result<TempDir> {
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    chown(dir.path(), Some(uid), Some(gid))?;
    Ok(dir)
}

#[test]
fn files_created_inside_are_owned_by_the_mapped_host_ids() -> Result<()> {
    require_root!();
    let shared = host_dir(HOST_ID, HOST_ID)?;
    let config = userns()
        .capabilities(&[Capability::Chown, Capability::Kill])
        .bind(shared.path(), "/shared", &[]);
    let script = "id -u; touch /shared/by-root && mkdir /shared/dir && \
                  touch /shared/by-user && chown 1000:1000 /shared/by-user && echo done";
    let out = run_sh_in(config, script, |b| mount_point(b, "/shared"))?;
    assert_eq!(out, "0\ndone\n");
    let owner = |name: &str| -> Result<(u32, u32)> {
        let meta = fs::metadata(shared.path().join(name))?;
        Ok((meta.uid(), meta.gid()))
    };
    assert_eq!(
        owner("by-root")?,
        (HOST_ID, HOST_ID),
        "container root is host 100000"
    );
    assert_eq!(owner("dir")?, (HOST_ID, HOST_ID));
    assert_eq!(
        owner("by-user")?,
        (HOST_ID + 1000, HOST_ID + 1000),
        "container 1000 is host 101000"
    );
    Ok(())
}

#[test]
fn host_ids_outside_the_mapping_show_as_overflow() -> Result<()> {
    require_root!();
    // Host-root-owned files, and one owned by a host id just past the mapping.
    let dir = host_dir(0, 0)?;
    fs::write(dir.path().join("root-file"), "x")?;
    let outside = dir.path().join("outside-file");
    fs::write(&outside, "x")?;
    chown(&outside, Some(HOST_ID + SIZE), Some(HOST_ID + SIZE))?;
    let inside = dir.path().join("mapped-file");
    fs::write(&inside, "x")?;
    chown(&inside, Some(HOST_ID + 7), Some(HOST_ID + 7))?;
    let config = userns().bind(dir.path(), "/host", &["ro"]);
    let out = run_sh_in(
        config,
        "ls -ln /host | tail -n +2 | awk '{print $3, $4, $9}'; stat -c '%u %g' /host",
        |b| mount_point(b, "/host"),
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "7 7 mapped-file",
            "65534 65534 outside-file",
            "65534 65534 root-file",
            "65534 65534"
        ],
        "{out}"
    );
    // And /proc shows the same: host processes are not visible (own pid namespace), the
    // container's own root is 0.
    assert_eq!(run_sh(userns(), "stat -c %u /proc/1")?, "0\n");
    Ok(())
}

/// The runtime-spec's default devices: path, major, minor.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

#[test]
fn default_devices_work_in_a_user_namespace() -> Result<()> {
    require_root!();
    let paths: Vec<&str> = DEFAULT_DEVICES.iter().map(|d| d.0).collect();
    let out = run_sh(
        userns(),
        &format!("stat -c '%n %F %t %T' {}", paths.join(" ")),
    )?;
    for (path, major, minor) in DEFAULT_DEVICES {
        let expected = format!("{path} character special file {major:x} {minor:x}");
        assert!(
            out.lines().any(|l| l == expected),
            "want {expected:?} in:\n{out}"
        );
    }
    let out = run_sh(
        userns(),
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c; \
         echo x > /dev/full 2>/dev/null || echo full",
    )?;
    assert_eq!(words(&out), ["4", "4", "full"], "{out}");
    // /dev/ptmx and a new devpts instance.
    let out = run_sh(userns(), "readlink /dev/ptmx; stat -c %F /dev/pts/ptmx")?;
    assert_eq!(out, "pts/ptmx\ncharacter special file\n");
    Ok(())
}

#[test]
fn linux_devices_entries_work_in_a_user_namespace() -> Result<()> {
    require_root!();
    require!(Path::new("/dev/kmsg").exists(), "the host has no /dev/kmsg");
    // mknod is not allowed in a user namespace: the runtime binds the host's node (runc does
    // the same), so the entry names a device the host has.
    let device: LinuxDevice = from_json(json!({
        "path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644, "uid": 0, "gid": 0
    }))?;
    let out = run_sh(userns().device(device), "stat -c '%F %t %T' /dev/kmsg")?;
    assert_eq!(out, "character special file 1 b\n");
    Ok(())
}

#[test]
fn tmpfs_proc_and_sysfs_mount_in_a_user_namespace() -> Result<()> {
    require_root!();
    let config = userns().mount(mount(
        "/mnt/scratch",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "size=1m", "mode=1777"],
    ));
    let out = run_sh_in(
        config,
        "cat /proc/self/mountinfo; echo ---; echo hi > /mnt/scratch/f && cat /mnt/scratch/f; \
         ls /proc/self/ns | wc -l; ls /sys/kernel > /dev/null && echo sys-ok",
        |b| mount_point(b, "/mnt/scratch"),
    )?;
    let (mountinfo, rest) = out.split_once("---\n").unwrap_or((&out, ""));
    for (point, fs_type) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/shm", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/mqueue", "mqueue"),
        ("/mnt/scratch", "tmpfs"),
    ] {
        let m = mount_at(mountinfo, point);
        assert_eq!(
            m.as_ref().map(|m| m.fs_type.as_str()),
            Some(fs_type),
            "{point}:\n{mountinfo}"
        );
    }
    let scratch = mount_at(mountinfo, "/mnt/scratch").expect("checked above");
    assert!(
        scratch.has_option("nosuid") && scratch.has_option("nodev"),
        "{scratch:?}"
    );
    let sys = mount_at(mountinfo, "/sys").expect("checked above");
    assert!(sys.has_option("ro"), "/sys is not read-only: {sys:?}");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.first().copied(), Some("hi"), "{rest}");
    assert_eq!(lines.last().copied(), Some("sys-ok"), "{rest}");
    Ok(())
}

/// A running container with a user namespace (init sleeps), for others to join.
struct Holder {
    rt: Runtime,
    _bundle: Bundle,
    id: String,
}

impl Holder {
    fn start(config: Config) -> Result<Self> {
        let rt = Runtime::keel()?;
        let bundle = Bundle::new(&config.args(&["sleep", "100000"]))?;
        let id = unique_id("userns-a");
        expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
        ensure!(rt.wait_status(&id, "running", WAIT), "A is not running");
        Ok(Self {
            rt,
            _bundle: bundle,
            id,
        })
    }

    fn pid(&self) -> Result<i32> {
        self.rt.pid(&self.id)
    }

    fn user_ns_path(&self) -> Result<PathBuf> {
        Ok(PathBuf::from(format!("/proc/{}/ns/user", self.pid()?)))
    }

    fn map(&self, file: &str) -> Result<String> {
        Ok(fs::read_to_string(format!("/proc/{}/{file}", self.pid()?))?)
    }
}

/// B joins A's user namespace by path (with `mappings`, or none) and makes the other
/// namespaces new inside it; B's maps and user namespace are A's.
fn join_user_namespace(with_mappings: bool) -> Result<()> {
    let a = Holder::start(userns())?;
    let mut config = Config::new().namespace(LinuxNamespaceType::User, Some(&a.user_ns_path()?));
    if with_mappings {
        config = config.merge(json!({"linux": {
            "uidMappings": [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]
        }}))?;
    }
    let out = run_sh(
        config,
        "cat /proc/self/uid_map; echo -; cat /proc/self/gid_map; echo -; readlink /proc/self/ns/user; \
         readlink /proc/self/ns/net; id -u; echo $$",
    )?;
    let parts: Vec<&str> = out.split("-\n").collect();
    ensure!(parts.len() == 3, "unexpected output:\n{out}");
    assert_eq!(words(parts[0]), words(&a.map("uid_map")?), "uid_map vs A's");
    assert_eq!(words(parts[1]), words(&a.map("gid_map")?), "gid_map vs A's");
    let rest: Vec<&str> = parts[2].lines().collect();
    assert_eq!(
        rest.first().copied(),
        Some(host::namespace_of(a.pid()?, "user")?.as_str())
    );
    assert_ne!(
        rest.get(1).copied(),
        Some(host::namespace_of(a.pid()?, "net")?.as_str()),
        "B shares A's network namespace"
    );
    assert_eq!(rest.get(2..), Some(&["0", "1"][..]), "{out}");
    Ok(())
}

#[test]
fn join_another_containers_user_namespace() -> Result<()> {
    require_root!();
    join_user_namespace(true)
}

#[test]
fn join_a_user_namespace_without_mappings() -> Result<()> {
    require_root!();
    // The joined namespace has its own maps: runc >= 1.2 reads them from it; runc 1.1 refuses
    // ("no uid mappings found"). Either is fine, but a refusal must be one clear line.
    let a = Holder::start(userns())?;
    let config = Config::new()
        .namespace(LinuxNamespaceType::User, Some(&a.user_ns_path()?))
        .args(&["true"]);
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let out = rt.run(bundle.path(), &unique_id("userns-nomap"))?;
    if out.status.success() {
        drop((rt, bundle, a));
        return join_user_namespace(false);
    }
    expect_one_line_error(&out, &["mapping"])
}

#[test]
fn same_view_as_runc() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let shared = host_dir(HOST_ID, HOST_ID)?;
    fs::write(shared.path().join("f"), "x")?;
    chown(
        shared.path().join("f"),
        Some(HOST_ID + 5),
        Some(HOST_ID + 6),
    )?;
    let config = userns().bind(shared.path(), "/shared", &[]).sh(
        "id; cat /proc/self/uid_map /proc/self/gid_map; ls -ln /shared | tail -n +2 | awk '{print $3,$4,$9}'; \
         stat -c '%n %u %g %t %T' /dev/null /dev/zero /dev/tty; touch /shared/new; hostname",
    );
    let mut outputs = Vec::new();
    for rt in [Runtime::keel()?, Runtime::runc()?] {
        let bundle = Bundle::new(&config)?;
        mount_point(&bundle, "/shared")?;
        let out = rt.run(bundle.path(), &unique_id("userns-cmp"))?;
        expect_success(&out, &format!("run under {}", rt.binary().display()))?;
        outputs.push(String::from_utf8(out.stdout)?);
        let new = shared.path().join("new");
        assert_eq!(
            fs::metadata(&new)?.uid(),
            HOST_ID,
            "{}",
            rt.binary().display()
        );
        fs::remove_file(new)?;
    }
    assert_eq!(outputs[0], outputs[1], "keel vs runc");
    Ok(())
}

//! Rootless containers: an unprivileged user (nobody, 65534, through util-linux `setpriv`) runs
//! `keel-runtime --root DIR ...` on a bundle whose config comes from `spec --rootless` run as
//! that user. Checked from inside: root in a user namespace mapping 0 → 65534 (size 1), the
//! hostname and mounts; and the lifecycle (create/start/state/kill/delete, exec) as that user,
//! without cgroups (a warning, not a failure).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::exec::{exit_code, output_with_timeout, DEFAULT_TIMEOUT};
use keel_integration_tests::inside::{mount_at, words};
use keel_integration_tests::{
    host, require, require_root, rootfs, unique_id, Bundle, Config, Runtime,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use tempfile::TempDir;

/// The unprivileged user the runtime runs as.
const NOBODY: u32 = 65_534;
const WAIT: Duration = Duration::from_secs(10);

/// Why unprivileged user namespaces cannot be used here, if they cannot.
fn userns_unavailable() -> Option<String> {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("kernel.unprivileged_userns_clone is 0".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user.max_user_namespaces is 0".into());
    }
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["unshare", "--user", "--map-root-user", "true"])
        .output();
    match probe {
        Err(e) => Some(format!("cannot run setpriv (util-linux): {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "nobody cannot make a user namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Skips the test unless it runs as root (to switch to nobody) with unprivileged user namespaces.
macro_rules! require_rootless {
    () => {
        require_root!();
        if let Some(why) = userns_unavailable() {
            keel_integration_tests::skip::skip(module_path!(), &why);
            return Ok(());
        }
    };
}

/// A runtime driven as nobody, with a state root nobody owns, and a bundle it can read whose
/// config is its own `spec --rootless`. Containers still present on drop are killed.
struct Rootless {
    rt: Runtime,
    bundle: Bundle,
    ids: Vec<String>,
}

impl Rootless {
    fn new() -> Result<Self> {
        let rt = Runtime::keel()?;
        fs::set_permissions(rt.base(), fs::Permissions::from_mode(0o755))?;
        chown(rt.root(), Some(NOBODY), Some(NOBODY))?;
        let bundle = Bundle::empty()?;
        fs::set_permissions(bundle.path(), fs::Permissions::from_mode(0o755))?;
        rootfs::build(&bundle.rootfs())?;
        chown(bundle.path(), Some(NOBODY), Some(NOBODY))?;
        let me = Self {
            rt,
            bundle,
            ids: Vec::new(),
        };
        let bundle = me.bundle.path().as_os_str();
        let out = me.raw(&[
            OsStr::new("spec"),
            OsStr::new("--rootless"),
            OsStr::new("--bundle"),
            bundle,
        ])?;
        expect_success(&out, "spec --rootless as nobody")?;
        Ok(me)
    }

    /// The config `spec --rootless` wrote, as a [`Config`] with no terminal.
    fn config(&self) -> Result<Config> {
        let text = fs::read_to_string(self.bundle.config_path())?;
        let spec: Spec =
            serde_json::from_str(&text).context("spec --rootless wrote no valid config")?;
        Ok(Config::from_spec(spec).terminal(false))
    }

    /// Writes `config` as the bundle's config.json.
    fn use_config(&self, config: &Config) -> Result<()> {
        self.bundle.write_config(config)
    }

    /// `setpriv --reuid=65534 ... <runtime> --root <root> <args>`, from `/`.
    fn raw(&self, args: &[&OsStr]) -> Result<Output> {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(self.rt.binary())
            .arg("--root")
            .arg(self.rt.root())
            .args(args)
            .current_dir("/")
            .env_remove("XDG_RUNTIME_DIR");
        output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)
    }

    /// The runtime as nobody, with string arguments.
    fn run_cmd(&self, args: &[&str]) -> Result<Output> {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        self.raw(&args)
    }

    /// A new container id, remembered for cleanup.
    fn new_id(&mut self, prefix: &str) -> String {
        let id = unique_id(prefix);
        self.ids.push(id.clone());
        self.rt.adopt(&id, self.bundle.path());
        id
    }

    fn bundle_arg(&self) -> String {
        self.bundle.path().to_string_lossy().into_owned()
    }

    /// `run --bundle <bundle> <id>` as nobody, in the foreground.
    fn run(&mut self, config: &Config) -> Result<Output> {
        self.use_config(config)?;
        let id = self.new_id("rootless");
        let bundle = self.bundle_arg();
        self.run_cmd(&["run", "--bundle", &bundle, &id])
    }

    /// The state JSON as nobody.
    fn state(&self, id: &str) -> Result<serde_json::Value> {
        let out = self.run_cmd(&["state", id])?;
        expect_success(&out, "state")?;
        serde_json::from_slice(&out.stdout).context("state printed no JSON")
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for id in &self.ids {
            let pid = self.rt.pid(id).unwrap_or(0);
            // Only a process of nobody's: a wrong pid in the state must not kill anything else.
            let owner = fs::metadata(format!("/proc/{pid}")).map(|m| m.uid()).ok();
            if pid > 1 && owner == Some(NOBODY) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rootless_container_is_root_in_a_user_namespace() -> Result<()> {
    require_rootless!();
    let mut r = Rootless::new()?;
    let config = r.config()?;
    let hostname = config.spec().hostname().clone().unwrap_or_default();
    let config = config.sh(
        "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; hostname; \
         readlink /proc/self/ns/user; exit 3",
    );
    let out = r.run(&config)?;
    assert_eq!(exit_code(&out.status), 3, "run's status: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<String>> = text.lines().map(words).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], ["0"], "uid inside");
    assert_eq!(lines[1], ["0"], "gid inside");
    assert_eq!(lines[2], ["0", "65534", "1"], "uid_map");
    assert_eq!(lines[3], ["0", "65534", "1"], "gid_map");
    assert_eq!(lines[4], [hostname], "hostname");
    let host_userns = host::namespace_of(std::process::id() as i32, "user")?;
    assert_ne!(lines[5], [host_userns], "the host's user namespace");
    Ok(())
}

#[test]
fn rootless_mounts_are_in_place() -> Result<()> {
    require_rootless!();
    let mut r = Rootless::new()?;
    let config = r.config()?.sh(
        "cat /proc/self/mountinfo; echo ---; echo x > /dev/null && echo null-ok; \
         touch /rootfs-write 2>/dev/null && echo root-writable; echo x > /dev/shm/f && echo shm-ok; \
         ls /sys/kernel > /dev/null && echo sys-ok",
    );
    let out = r.run(&config)?;
    expect_success(&out, "run")?;
    let text = stdout(&out);
    let (mountinfo, rest) = text.split_once("---\n").unwrap_or((&text, ""));
    for (point, fs_type) in [
        ("/", ""),
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let m = mount_at(mountinfo, point).with_context(|| format!("no {point}:\n{mountinfo}"))?;
        if !fs_type.is_empty() {
            assert_eq!(m.fs_type, fs_type, "{point}");
        }
    }
    let root = mount_at(mountinfo, "/").context("no /")?;
    assert!(
        root.has_option("ro"),
        "spec --rootless has a read-only root: {root:?}"
    );
    let sys = mount_at(mountinfo, "/sys").context("no /sys")?;
    assert!(sys.has_option("ro"), "/sys is not read-only: {sys:?}");
    assert_eq!(
        words(rest),
        ["null-ok", "shm-ok", "sys-ok"],
        "{rest}\n{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn rootless_files_on_a_bind_mount_belong_to_the_user() -> Result<()> {
    require_rootless!();
    let mut r = Rootless::new()?;
    let shared = TempDir::new()?;
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o755))?;
    chown(shared.path(), Some(NOBODY), Some(NOBODY))?;
    // The root is read-only and not the user's: the mount point is made beforehand.
    fs::create_dir(r.bundle.rootfs().join("shared"))?;
    let config = r
        .config()?
        .bind(shared.path(), "/shared", &["rbind"])
        .sh("touch /shared/made-inside && stat -c %u /shared/made-inside");
    let out = r.run(&config)?;
    expect_success(&out, "run")?;
    assert_eq!(stdout(&out), "0\n");
    let meta = fs::metadata(shared.path().join("made-inside"))?;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (NOBODY, NOBODY),
        "owner on the host"
    );
    Ok(())
}

#[test]
fn rootless_lifecycle_as_the_user() -> Result<()> {
    require_rootless!();
    let mut r = Rootless::new()?;
    r.use_config(&r.config()?.args(&["sleep", "100000"]))?;
    let id = r.new_id("rootless-life");
    let bundle = r.bundle_arg();
    expect_success(&r.run_cmd(&["create", "--bundle", &bundle, &id])?, "create")?;
    let state = r.state(&id)?;
    assert_eq!(state["status"], "created", "{state}");
    let pid = state["pid"].as_i64().context("no pid")? as i32;
    let owner = fs::metadata(format!("/proc/{pid}"))?.uid();
    assert_eq!(owner, NOBODY, "init runs as the user on the host");
    let dir_owner = fs::metadata(r.rt.state_dir(&id))?.uid();
    assert_eq!(dir_owner, NOBODY, "state dir owner");

    expect_success(&r.run_cmd(&["start", &id])?, "start")?;
    assert_eq!(r.state(&id)?["status"], "running");
    let list = stdout(&r.run_cmd(&["list", "--format", "json"])?);
    assert!(list.contains(&id), "list does not show {id}: {list}");

    // exec as the user: the same user namespace, root inside.
    let out = r.run_cmd(&["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"])?;
    expect_success(&out, "exec")?;
    assert_eq!(words(&stdout(&out)), ["0", "0", "65534", "1"]);

    expect_success(&r.run_cmd(&["kill", &id, "KILL"])?, "kill")?;
    let stopped = host::wait_until(WAIT, || {
        r.state(&id).is_ok_and(|s| s["status"] == "stopped")
    });
    assert!(stopped, "not stopped after kill: {}", r.state(&id)?);
    expect_success(&r.run_cmd(&["delete", &id])?, "delete")?;
    assert!(!r.rt.state_dir(&id).exists(), "state left after delete");
    let out = r.run_cmd(&["state", &id])?;
    assert_eq!(exit_code(&out.status), 1, "state of a deleted container");
    assert!(!host::pid_alive(pid), "init still alive");
    Ok(())
}

/// Whether nobody could make a cgroup here (then the warning is not expected).
fn nobody_can_write_cgroups() -> bool {
    let probe = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "sh",
            "-c",
            "test -w /sys/fs/cgroup/pids || test -w /sys/fs/cgroup/cgroup.procs",
        ])
        .output();
    probe.is_ok_and(|o| o.status.success())
}

#[test]
fn rootless_without_cgroups_warns_but_runs() -> Result<()> {
    require_rootless!();
    require!(
        !nobody_can_write_cgroups(),
        "nobody can write cgroups here: no warning to see"
    );
    let mut r = Rootless::new()?;
    let out = r.run(
        &r.config()?
            .sh("cat /proc/self/cgroup > /dev/null && echo ran"),
    )?;
    expect_success(&out, "run")?;
    assert_eq!(stdout(&out), "ran\n");
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(warnings.len(), 1, "expected one warning line:\n{err}");
    let line = warnings[0].to_lowercase();
    assert!(line.contains("warn") && line.contains("cgroup"), "{err}");
    // And no cgroup was made for it.
    let id = r.ids.last().cloned().unwrap_or_default();
    for path in [format!("/keel/{id}"), format!("/{id}")] {
        assert!(
            host::cgroup_present_in(&path).is_empty(),
            "cgroup {path} made"
        );
    }
    Ok(())
}

#[test]
fn rootless_state_root_of_another_user_is_refused() -> Result<()> {
    require_rootless!();
    // A root-owned --root: the user cannot write there; one clear line, nothing made.
    let mut r = Rootless::new()?;
    chown(r.rt.root(), Some(0), Some(0))?;
    fs::set_permissions(r.rt.root(), fs::Permissions::from_mode(0o755))?;
    let out = r.run(&r.config()?.args(&["true"]))?;
    keel_integration_tests::checks::expect_one_line_error(&out, &[])?;
    assert_eq!(fs::read_dir(r.rt.root())?.count(), 0, "state made");
    Ok(())
}

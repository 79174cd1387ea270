//! What a container must not be able to do or see: overwrite the runtime binary through
//! /proc/<pid>/exe (CVE-2019-5736), inherit the runtime's fds, keep capabilities it was not
//! given, or make a mount land outside its rootfs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::exec::{output_with_timeout, DEFAULT_TIMEOUT};
use keel_integration_tests::inside::{cap_mask, inherited_fds, mask_of};
use keel_integration_tests::{
    binary, config, host, require_root, run_and_capture, unique_id, Bundle, Config, Runtime,
};
use oci_spec::runtime::LinuxNamespaceType;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// A private copy of the runtime binary (so an attack that works corrupts only the copy),
/// and a handle that drives it.
struct Victim {
    _dir: TempDir,
    bin: PathBuf,
    rt: Runtime,
    digest: String,
}

impl Victim {
    fn new() -> Result<Self> {
        let original = Runtime::keel()?.binary().to_path_buf();
        let dir = tempfile::tempdir()?;
        let name = original.file_name().context("runtime binary has no name")?;
        let bin = dir.path().join(name);
        fs::copy(&original, &bin)?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        let digest = host::sha256_file(&bin)?;
        let rt = Runtime::with_binary(&bin)?;
        Ok(Self {
            _dir: dir,
            bin,
            rt,
            digest,
        })
    }

    fn assert_unchanged(&self) -> Result<()> {
        assert_eq!(
            host::sha256_file(&self.bin)?,
            self.digest,
            "the container overwrote the runtime binary"
        );
        Ok(())
    }
}

const EVIL: &str = "#!/proc/self/exe\n";

#[test]
fn proc_self_exe_entrypoint_cannot_touch_the_runtime() -> Result<()> {
    require_root!();
    let victim = Victim::new()?;
    let bundle = Bundle::new(&Config::new().args(&["/evil"]))?;
    bundle.write_rootfs_file("/evil", EVIL, 0o755)?;
    let out = victim.rt.run(bundle.path(), &unique_id("selfexe"))?;
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("killed after"),
        "run hung"
    );
    victim.assert_unchanged()
}

/// The attacker: finds a process whose exe is not busybox (the runtime's init joining its pid
/// namespace), keeps it open, and once that process is gone writes through the fd.
const ATTACKER: &str = r#"
touch /shared/ready
while [ ! -e /shared/stop ]; do
  for d in /proc/[0-9]*; do
    t=$(readlink $d/exe 2>/dev/null) || continue
    # Skip our own processes: their executables exist in our rootfs.
    case "$t" in ""|*busybox*) continue;; esac
    [ -e "$t" ] && continue
    command exec 3< $d/exe 2>/dev/null || continue
    echo "opened $d $t" >> /shared/log
    while [ -e $d/exe ] && [ ! -e /shared/stop ]; do sleep 0.01; done
    echo "gone $d: $(cat $d/stat 2>&1)" >> /shared/log
    if (echo pwned > /proc/self/fd/3) 2>> /shared/log; then echo WROTE >> /shared/log; else echo refused >> /shared/log; fi
    exec 3<&-
  done
done
"#;

#[test]
fn a_container_cannot_overwrite_the_runtime_through_proc_pid_exe() -> Result<()> {
    require_root!();
    let victim = Victim::new()?;
    let shared = tempfile::tempdir()?;
    let attacker = Bundle::new(
        &Config::new()
            .bind(shared.path(), "/shared", &[])
            .sh(ATTACKER),
    )?;
    let attacker_id = unique_id("attacker");
    expect_success(
        &victim.rt.run_detached(attacker.path(), &attacker_id)?,
        "run -d attacker",
    )?;
    let ready = host::wait_until(WAIT, || shared.path().join("ready").exists());
    let pidns = PathBuf::from(format!("/proc/{}/ns/pid", victim.rt.pid(&attacker_id)?));
    // The victim joins the attacker's pid namespace: its init is visible there while created,
    // and its entrypoint re-executes the runtime binary.
    let config = Config::new()
        .namespace(LinuxNamespaceType::Pid, Some(&pidns))
        .args(&["/evil"]);
    let target = Bundle::new(&config)?;
    target.write_rootfs_file("/evil", EVIL, 0o755)?;
    let target_id = unique_id("target");
    let created = victim.rt.create(target.path(), &target_id)?;
    std::thread::sleep(Duration::from_millis(1500));
    let started = victim.rt.start(&target_id)?;
    let stopped = victim.rt.wait_status(&target_id, "stopped", WAIT);
    std::thread::sleep(Duration::from_millis(1000));
    fs::write(shared.path().join("stop"), "")?;
    let log = fs::read_to_string(shared.path().join("log")).unwrap_or_default();
    eprintln!("attacker log:\n{log}");
    assert!(ready, "the attacker never started");
    expect_success(&created, "create of the victim container")?;
    expect_success(&started, "start of the victim container")?;
    victim.assert_unchanged()?;
    assert!(
        stopped,
        "the victim never stopped: {}",
        victim.rt.status(&target_id)?
    );
    Ok(())
}

/// The container process is `ls -l /proc/self/fd` itself (a shell would hold fds of its own).
fn fd_lister() -> Config {
    Config::new().args(&["ls", "-l", "/proc/self/fd"])
}

fn numbers(fds: &[(u32, String)]) -> Vec<u32> {
    fds.iter().map(|f| f.0).collect()
}

#[test]
fn no_fds_leak_into_the_container() -> Result<()> {
    require_root!();
    let out = run_and_capture(&fd_lister())?.success()?;
    assert_eq!(
        numbers(&inherited_fds(&out.stdout)),
        vec![0, 1, 2],
        "fds leaked:\n{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn preserve_fds_passes_exactly_the_extra_fds() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&fd_lister())?;
    let rt = Runtime::keel()?;
    let id = unique_id("preserve");
    rt.adopt(&id, bundle.path());
    // A shell opens fds 3 and 4 and execs the runtime with them.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec \"$@\" 3</etc/hostname 4</etc/passwd", "sh"])
        .arg(rt.binary())
        .arg("--root")
        .arg(rt.root())
        .args(["run", "--preserve-fds", "2", "--bundle"])
        .arg(bundle.path())
        .arg(&id);
    let out = output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)?;
    expect_success(&out, "run --preserve-fds 2")?;
    let stdout = String::from_utf8(out.stdout)?;
    let fds = inherited_fds(&stdout);
    assert_eq!(numbers(&fds), vec![0, 1, 2, 3, 4], "{stdout}");
    assert_eq!(fds[3].1, "/etc/hostname", "{stdout}");
    assert_eq!(fds[4].1, "/etc/passwd", "{stdout}");
    Ok(())
}

#[test]
fn cwd_and_root_are_inside_the_rootfs() -> Result<()> {
    require_root!();
    let out = run_and_capture(
        &Config::new()
            .cwd("/tmp")
            .sh("readlink /proc/self/cwd; readlink /proc/self/root; ls /"),
    )?
    .success()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("/tmp"));
    assert_eq!(lines.get(1).copied(), Some("/"));
    assert!(
        lines.contains(&"bin") && !lines.contains(&"work"),
        "not the container's root: {lines:?}"
    );
    Ok(())
}

#[test]
fn default_capabilities_are_exactly_runcs_and_none_inheritable() -> Result<()> {
    require_root!();
    let out = run_and_capture(&Config::new().args(&["cat", "/proc/self/status"]))?.success()?;
    let default = mask_of(&config::DEFAULT_CAPS);
    assert_eq!(
        cap_mask(&out.stdout, "CapInh"),
        Some(0),
        "inheritable not asked for"
    );
    // Ambient needs the inheritable set too: runc's default asks for it, the kernel keeps none.
    assert_eq!(
        cap_mask(&out.stdout, "CapAmb"),
        Some(0),
        "ambient without inheritable"
    );
    for field in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(
            cap_mask(&out.stdout, field),
            Some(default),
            "{field}:\n{}",
            out.stdout
        );
    }
    Ok(())
}

#[test]
fn no_capabilities_means_none_in_any_set() -> Result<()> {
    require_root!();
    let out = run_and_capture(
        &Config::new()
            .capabilities(&[])
            .args(&["cat", "/proc/self/status"]),
    )?
    .success()?;
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            cap_mask(&out.stdout, field),
            Some(0),
            "{field}:\n{}",
            out.stdout
        );
    }
    Ok(())
}

#[test]
fn capabilities_not_granted_are_refused() -> Result<()> {
    require_root!();
    // Without CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_MKNOD, CAP_SYS_CHROOT.
    let script = "mount -t tmpfs t /mnt 2>/dev/null && echo mounted; ip link set lo mtu 1280 2>/dev/null && echo netadmin; \
                  mknod /tmp/n c 1 3 2>/dev/null && echo mknod; chroot / true 2>/dev/null && echo chroot; echo end";
    let out = run_and_capture(&Config::new().sh(script))?.success()?;
    assert_eq!(out.stdout, "end\n");
    Ok(())
}

/// A config binding `source` (holding a marker) at `/evil`, whose rootfs `/evil` is a
/// symlink to `link_target`.
fn symlinked_mount(link_target: &Path, destination: &str) -> Result<(TempDir, Bundle)> {
    let source = tempfile::tempdir()?;
    fs::write(source.path().join("marker"), "inside\n")?;
    let config = Config::new()
        .bind(source.path(), destination, &[])
        .sh("cat /evil/marker");
    let bundle = Bundle::new(&config)?;
    symlink(link_target, bundle.rootfs().join("evil"))?;
    Ok((source, bundle))
}

fn expect_contained(host_path: &Path, bundle: &Bundle) -> Result<()> {
    let before = host::mount_points()?;
    let out = Runtime::keel()?.run(bundle.path(), &unique_id("escape"))?;
    let escaped = host_path.exists();
    let _ = fs::remove_dir_all(host_path);
    assert!(
        !escaped,
        "the mount followed a symlink out of the rootfs to {}",
        host_path.display()
    );
    let after = host::mount_points()?;
    assert_eq!(before, after, "host mounts changed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inside\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn absolute_symlink_destination_stays_in_the_rootfs() -> Result<()> {
    require_root!();
    let host_path = std::env::temp_dir().join(unique_id("keel-abs-escape"));
    let (_source, bundle) = symlinked_mount(&host_path, "/evil")?;
    expect_contained(&host_path, &bundle)
}

#[test]
fn relative_symlink_destination_stays_in_the_rootfs() -> Result<()> {
    require_root!();
    let name = unique_id("keel-rel-escape");
    let host_path = std::env::temp_dir().join(&name);
    let (_source, bundle) = symlinked_mount(
        Path::new(&format!("../../../../../../../../tmp/{name}")),
        "/evil",
    )?;
    expect_contained(&host_path, &bundle)
}

#[test]
fn dotdot_destination_stays_in_the_rootfs() -> Result<()> {
    require_root!();
    let name = unique_id("keel-dotdot-escape");
    let host_path = std::env::temp_dir().join(&name);
    let source = tempfile::tempdir()?;
    fs::write(source.path().join("marker"), "inside\n")?;
    let destination = format!("/../../../../../../../tmp/{name}");
    let config = Config::new()
        .bind(source.path(), &destination, &[])
        .sh(&format!("cat /tmp/{name}/marker"));
    let bundle = Bundle::new(&config)?;
    let before = host::mount_points()?;
    let out = Runtime::keel()?.run(bundle.path(), &unique_id("dotdot"))?;
    let escaped = host_path.exists();
    let _ = fs::remove_dir_all(&host_path);
    assert!(!escaped, "a .. destination created {}", host_path.display());
    assert_eq!(host::mount_points()?, before, "host mounts changed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inside\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_tests_use_a_runtime_that_exists() -> Result<()> {
    let bin = binary::keel_runtime()?;
    assert!(bin.exists(), "{} does not exist", bin.display());
    Ok(())
}

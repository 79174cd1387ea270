//! The root filesystem and `mounts[]`: root.readonly, bind/rbind and their flags, propagation,
//! proc, sysfs, tmpfs, devpts, mqueue, cgroup; maskedPaths, readonlyPaths; pivot_root and
//! `--no-pivot`; a destination that is a symlink out of the rootfs.

use std::fs;
use std::os::unix::fs::symlink;

use anyhow::{Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::config::mount;
use keel_integration_tests::host::{self, TmpfsMount};
use keel_integration_tests::inside::{mount_at, MountEntry};
use keel_integration_tests::{require_root, run_and_capture, unique_id, Bundle, Config, Runtime};

/// Runs `script` in `config` and returns its stdout, failing on a non-zero exit.
fn run_sh(config: Config, script: &str) -> Result<String> {
    Ok(run_and_capture(&config.sh(script))?.success()?.stdout)
}

/// The container's mountinfo entry at `point`.
fn mount_inside(config: Config, point: &str) -> Result<MountEntry> {
    let info = run_sh(config, "cat /proc/self/mountinfo")?;
    mount_at(&info, point).with_context(|| format!("nothing mounted at {point}:\n{info}"))
}

#[test]
fn readonly_root_refuses_writes() -> Result<()> {
    require_root!();
    let out = run_and_capture(&Config::new().readonly_root(true).sh("touch /x"))?;
    assert_ne!(out.status, 0, "touch / succeeded on a read-only root");
    let root = mount_inside(Config::new().readonly_root(true), "/")?;
    assert!(root.has_option("ro"), "{root:?}");
    // The mounts on top of the root stay writable.
    run_sh(Config::new().readonly_root(true), "touch /dev/shm/x")?;
    Ok(())
}

#[test]
fn writable_root_accepts_writes() -> Result<()> {
    require_root!();
    run_sh(Config::new().readonly_root(false), "touch /x && rm /x")?;
    Ok(())
}

#[test]
fn bind_mount_with_ro_nosuid_nodev_noexec() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("hello"), "hi\n")?;
    let opts = ["ro", "nosuid", "nodev", "noexec"];
    let config = || Config::new().bind(dir.path(), "/data", &opts);
    assert_eq!(run_sh(config(), "cat /data/hello")?, "hi\n");
    let out = run_and_capture(&config().sh("touch /data/new"))?;
    assert_ne!(out.status, 0, "wrote to a ro bind mount");
    assert!(!dir.path().join("new").exists());
    let entry = mount_inside(config(), "/data")?;
    for opt in opts {
        assert!(entry.has_option(opt), "{opt} missing: {entry:?}");
    }
    Ok(())
}

#[test]
fn bind_mount_is_writable_by_default_and_shared_with_the_host() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    run_sh(
        Config::new().bind(dir.path(), "/data", &[]),
        "echo from-container > /data/out",
    )?;
    assert_eq!(
        fs::read_to_string(dir.path().join("out"))?,
        "from-container\n"
    );
    Ok(())
}

#[test]
fn noexec_bind_refuses_exec() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let config = Config::new().bind(dir.path(), "/data", &["noexec"]);
    let out = run_and_capture(&config.sh("cp /bin/busybox /data/bb && /data/bb true"))?;
    assert_ne!(out.status, 0, "executed from a noexec mount");
    Ok(())
}

#[test]
fn bind_of_a_file() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("motd");
    fs::write(&file, "file bind\n")?;
    let out = run_sh(
        Config::new().bind(&file, "/etc/motd", &["ro"]),
        "cat /etc/motd",
    )?;
    assert_eq!(out, "file bind\n");
    Ok(())
}

#[test]
fn rbind_carries_submounts_and_bind_does_not() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let sub = dir.path().join("sub");
    fs::create_dir(&sub)?;
    let _tmpfs = TmpfsMount::mount(&sub)?;
    fs::write(sub.join("inner"), "inner\n")?;
    let rbind = Config::new().bind(dir.path(), "/data", &["rbind"]);
    assert_eq!(run_sh(rbind, "cat /data/sub/inner")?, "inner\n");
    let bind = Config::new().bind(dir.path(), "/data", &[]);
    assert_eq!(
        run_sh(bind, "ls -A /data/sub")?,
        "",
        "plain bind carried a submount"
    );
    Ok(())
}

#[test]
fn bind_propagation_flags() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let shared = mount_inside(
        Config::new().bind(dir.path(), "/data", &["rshared"]),
        "/data",
    )?;
    assert!(
        shared.propagation.iter().any(|p| p.starts_with("shared:")),
        "rshared: {shared:?}"
    );
    let private = mount_inside(
        Config::new().bind(dir.path(), "/data", &["rprivate"]),
        "/data",
    )?;
    assert!(private.propagation.is_empty(), "rprivate: {private:?}");
    Ok(())
}

#[test]
fn rootfs_propagation_private() -> Result<()> {
    require_root!();
    let root = mount_inside(Config::new().rootfs_propagation("private"), "/")?;
    assert!(root.propagation.is_empty(), "{root:?}");
    Ok(())
}

#[test]
fn container_mounts_do_not_appear_on_the_host() -> Result<()> {
    require_root!();
    let before = host::mount_points()?;
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    expect_success(&rt.run(bundle.path(), &unique_id("nomnt"))?, "run")?;
    let after = host::mount_points()?;
    let root = bundle.path().to_string_lossy().into_owned();
    let leaked: Vec<_> = after
        .iter()
        .filter(|p| p.starts_with(&root) && !before.contains(p))
        .collect();
    assert!(leaked.is_empty(), "mounts leaked to the host: {leaked:?}");
    Ok(())
}

#[test]
fn proc_is_the_containers() -> Result<()> {
    require_root!();
    let entry = mount_inside(Config::new(), "/proc")?;
    assert_eq!(entry.fs_type, "proc");
    // sh, ls and wc: nothing of the host's.
    let pids = run_sh(Config::new(), "ls -d /proc/[0-9]* | wc -l")?;
    assert!(
        pids.trim().parse::<u32>().is_ok_and(|n| n <= 3),
        "host pids visible: {pids}"
    );
    Ok(())
}

#[test]
fn sysfs_is_mounted_read_only() -> Result<()> {
    require_root!();
    let entry = mount_inside(Config::new(), "/sys")?;
    assert_eq!(entry.fs_type, "sysfs");
    assert!(
        entry.has_option("ro") && entry.has_option("nosuid") && entry.has_option("noexec"),
        "{entry:?}"
    );
    Ok(())
}

#[test]
fn tmpfs_size_and_mode() -> Result<()> {
    require_root!();
    let config = || {
        Config::new().mount(mount(
            "/scratch",
            "tmpfs",
            "tmpfs",
            &["size=1m", "mode=0710", "nodev"],
        ))
    };
    assert_eq!(run_sh(config(), "stat -c %a /scratch")?, "710\n");
    let entry = mount_inside(config(), "/scratch")?;
    assert_eq!(entry.fs_type, "tmpfs");
    assert!(entry.has_super_option("size=1024k"), "{entry:?}");
    assert!(entry.has_option("nodev"), "{entry:?}");
    let out = run_and_capture(&config().sh("dd if=/dev/zero of=/scratch/big bs=1k count=2048"))?;
    assert_ne!(out.status, 0, "wrote 2 MiB to a 1 MiB tmpfs");
    Ok(())
}

#[test]
fn dev_is_a_tmpfs_and_shm_is_sticky() -> Result<()> {
    require_root!();
    let dev = mount_inside(Config::new(), "/dev")?;
    assert_eq!(dev.fs_type, "tmpfs");
    assert!(dev.has_option("nosuid"), "{dev:?}");
    let shm = mount_inside(Config::new(), "/dev/shm")?;
    assert_eq!(shm.fs_type, "tmpfs");
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(shm.has_option(opt), "{opt}: {shm:?}");
    }
    assert_eq!(run_sh(Config::new(), "stat -c %a /dev/shm")?, "1777\n");
    Ok(())
}

#[test]
fn devpts_is_a_new_instance() -> Result<()> {
    require_root!();
    let entry = mount_inside(Config::new(), "/dev/pts")?;
    assert_eq!(entry.fs_type, "devpts");
    for opt in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(entry.has_super_option(opt), "{opt}: {entry:?}");
    }
    // A new instance has no ptys but the container's own.
    assert_eq!(run_sh(Config::new(), "ls /dev/pts")?, "ptmx\n");
    Ok(())
}

#[test]
fn mqueue_is_mounted() -> Result<()> {
    require_root!();
    let entry = mount_inside(Config::new(), "/dev/mqueue")?;
    assert_eq!(entry.fs_type, "mqueue");
    Ok(())
}

#[test]
fn cgroup_mount_shows_the_containers_limits() -> Result<()> {
    require_root!();
    let limit = 64 * 1024 * 1024;
    let config = || {
        Config::new()
            .mount(mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "ro"],
            ))
            .merge(serde_json::json!({"linux": {"resources": {"memory": {"limit": limit}}}}))
    };
    let out = run_sh(
        config()?,
        "ls /sys/fs/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"memory") && lines.contains(&"cpu"), "{out}");
    assert_eq!(
        lines.last().copied(),
        Some(limit.to_string().as_str()),
        "{out}"
    );
    let entry = mount_inside(config()?, "/sys/fs/cgroup/memory")?;
    assert!(entry.has_option("ro"), "{entry:?}");
    let out = run_and_capture(&config()?.sh("mkdir /sys/fs/cgroup/memory/escape"))?;
    assert_ne!(
        out.status, 0,
        "made a cgroup through a read-only cgroup mount"
    );
    Ok(())
}

#[test]
fn masked_paths_hide_files_and_directories() -> Result<()> {
    require_root!();
    let config =
        || Config::new().masked_paths(&["/proc/keys", "/sys/firmware", "/proc/nonexistent"]);
    assert_eq!(run_sh(config(), "wc -c < /proc/keys")?.trim(), "0");
    assert_eq!(run_sh(config(), "ls -A /sys/firmware | wc -l")?.trim(), "0");
    let out = run_and_capture(&config().sh("touch /sys/firmware/x"))?;
    assert_ne!(out.status, 0, "a masked directory is writable");
    // Unmasked, they are there.
    assert_ne!(
        run_sh(Config::new(), "ls -A /sys/firmware | wc -l")?.trim(),
        "0"
    );
    assert_ne!(run_sh(Config::new(), "wc -c < /proc/keys")?.trim(), "0");
    Ok(())
}

#[test]
fn readonly_paths_refuse_writes() -> Result<()> {
    require_root!();
    let config =
        || Config::new().readonly_paths(&["/proc/sys", "/proc/sysrq-trigger", "/proc/nonexistent"]);
    let entry = mount_inside(config(), "/proc/sys")?;
    assert!(entry.has_option("ro"), "{entry:?}");
    let out = run_and_capture(&config().sh("echo 1 > /proc/sys/net/ipv4/ip_forward"))?;
    assert_ne!(out.status, 0, "wrote to a read-only path");
    assert_eq!(
        run_sh(config(), "cat /proc/sys/kernel/ostype")?,
        "Linux\n",
        "still readable"
    );
    Ok(())
}

#[test]
fn pivot_root_is_the_default() -> Result<()> {
    require_root!();
    let out = run_sh(Config::new(), "cat /proc/self/mountinfo")?;
    let root = mount_at(&out, "/").context("no root mount")?;
    // After pivot_root the old root is gone: every mount is under the container's root.
    assert_eq!(
        out.lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .count(),
        1,
        "{out}"
    );
    assert_ne!(root.fs_type, "rootfs");
    Ok(())
}

#[test]
fn no_pivot_runs_too() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().sh("echo $$; ls /"))?;
    let rt = Runtime::keel()?;
    let out = rt.run_with(bundle.path(), &unique_id("nopivot"), &["--no-pivot"])?;
    expect_success(&out, "run --no-pivot")?;
    let stdout = String::from_utf8(out.stdout)?;
    assert_eq!(stdout.lines().next(), Some("1"));
    assert!(stdout.lines().any(|l| l == "bin"), "{stdout}");
    Ok(())
}

#[test]
fn mount_destination_symlink_stays_inside_the_rootfs() -> Result<()> {
    require_root!();
    let target = std::env::temp_dir().join(unique_id("keel-escape"));
    let source = tempfile::tempdir()?;
    fs::write(source.path().join("marker"), "inside\n")?;
    let config = Config::new().bind(source.path(), "/evil", &[]);
    let bundle = Bundle::new(&config)?;
    symlink(&target, bundle.rootfs().join("evil"))?;
    let before = host::mount_points()?;
    let rt = Runtime::keel()?;
    let script = format!("cat /evil/marker; cat {}/marker", target.display());
    bundle.write_config(&config.sh(&script))?;
    let out = rt.run(bundle.path(), &unique_id("symlink"))?;
    let escaped = target.exists();
    let _ = fs::remove_dir_all(&target);
    expect_success(&out, "run")?;
    assert!(
        !escaped,
        "the mount followed the symlink to the host path {}",
        target.display()
    );
    assert_eq!(
        String::from_utf8(out.stdout)?,
        "inside\ninside\n",
        "mount is not at the in-rootfs target"
    );
    let after = host::mount_points()?;
    assert!(
        after
            .iter()
            .all(|p| before.contains(p) || !p.contains("keel-escape")),
        "host mount appeared"
    );
    Ok(())
}

//! A busybox root filesystem made from the host's static `/bin/busybox` (Debian `busybox-static`).
//!
//! The applet list is read once per process; each rootfs then gets its own copy of the binary,
//! with every applet a hard link to that copy, so a container that writes to its `/bin/sh` can
//! neither touch the host's busybox nor another test's rootfs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// Where the static busybox is taken from.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The `/etc/passwd` of the rootfs: root, a regular user 1000, and nobody.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

/// The `/etc/group` of the rootfs.
pub const GROUP: &str = "root:x:0:\ntty:x:5:\nuser:x:1000:\nnogroup:x:65534:\n";

/// The `/etc/hostname` of the rootfs.
pub const HOSTNAME: &str = "keel-rootfs\n";

/// Applet paths relative to `/` (`bin/sh`, `usr/bin/env`, ...), from `busybox --list-full`.
pub fn applets() -> Result<&'static [PathBuf]> {
    static APPLETS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    if let Some(list) = APPLETS.get() {
        return Ok(list);
    }
    let list = list_applets()?;
    Ok(APPLETS.get_or_init(|| list))
}

fn list_applets() -> Result<Vec<PathBuf>> {
    let out = Command::new(HOST_BUSYBOX)
        .arg("--list-full")
        .output()
        .with_context(|| format!("running {HOST_BUSYBOX} --list-full (install busybox-static)"))?;
    if !out.status.success() {
        bail!("{HOST_BUSYBOX} --list-full failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout).context("busybox applet list is not UTF-8")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
        .map(PathBuf::from)
        .collect())
}

/// Builds a busybox rootfs in `dir` (created if missing).
pub fn build(dir: &Path) -> Result<()> {
    make_dirs(dir)?;
    install_busybox(dir)?;
    write_etc(dir)?;
    Ok(())
}

fn make_dirs(dir: &Path) -> Result<()> {
    let dirs = [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "etc",
        "root",
        "home/user",
        "var",
        "run",
        "mnt",
    ];
    for d in dirs {
        fs::create_dir_all(dir.join(d))
            .with_context(|| format!("mkdir {}", dir.join(d).display()))?;
    }
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).with_context(|| format!("mkdir {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .with_context(|| format!("chmod 1777 {}", tmp.display()))?;
    Ok(())
}

fn install_busybox(dir: &Path) -> Result<()> {
    let busybox = dir.join("bin/busybox");
    // Rebuilding over an old rootfs: never write through a hard link shared with its applets.
    let _ = fs::remove_file(&busybox);
    fs::copy(HOST_BUSYBOX, &busybox)
        .with_context(|| format!("copying {HOST_BUSYBOX} to {}", busybox.display()))?;
    for applet in applets()? {
        let link = dir.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
        }
        let _ = fs::remove_file(&link);
        fs::hard_link(&busybox, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn write_etc(dir: &Path) -> Result<()> {
    let etc = dir.join("etc");
    let files = [
        ("passwd", PASSWD),
        ("group", GROUP),
        ("hostname", HOSTNAME),
        ("hosts", "127.0.0.1 localhost\n"),
    ];
    for (name, text) in files {
        fs::write(etc.join(name), text).with_context(|| format!("writing /etc/{name}"))?;
    }
    // Some tools look for /etc/mtab; a symlink into /proc is what distributions ship.
    let mtab = etc.join("mtab");
    let _ = fs::remove_file(&mtab);
    symlink("/proc/self/mounts", mtab).context("linking /etc/mtab")?;
    Ok(())
}

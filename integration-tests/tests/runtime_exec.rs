//! `exec`: a new process in a running container, seen from inside: the container's namespaces,
//! cgroup, capabilities, seccomp filter, rlimits and env; runc's exec flags (`-e`, `--cwd`,
//! `-u`, `-g`, `--cap`, `--no-new-privs`, `-d`, `--pid-file`, `-t`, `--console-socket`,
//! `--preserve-fds`, `-p`, `--ignore-paused`); exit status passthrough; no runtime fd or
//! binary reachable from the exec'ed process. Refusals are in `runtime_exec_bad_input.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::checks::{expect_one_line_error, expect_success};
use keel_integration_tests::config::{from_json, DEFAULT_CAPS};
use keel_integration_tests::console::{read_until_closed, ConsoleSocket};
use keel_integration_tests::exec::{output_with_timeout, DEFAULT_TIMEOUT};
use keel_integration_tests::inside::{
    cap_mask, cap_number, inherited_fds, mask_of, status_field, words,
};
use keel_integration_tests::running::{captured, Container, EXIT_CASES};
use keel_integration_tests::{host, require_root, Config, Runtime};
use oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxSeccomp, PosixRlimitType};
use serde_json::json;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// Namespaces compared between init and an exec'ed process (`/proc/self/ns/<name>`).
const NAMESPACES: [&str; 7] = ["mnt", "net", "pid", "ipc", "uts", "cgroup", "user"];

/// A shell loop printing `readlink /proc/self/ns/<n>` for each of [`NAMESPACES`].
fn ns_script() -> String {
    format!(
        "for n in {}; do readlink /proc/self/ns/$n; done",
        NAMESPACES.join(" ")
    )
}

/// `/proc/self/status` of `exec cat`.
fn exec_status(c: &Container, flags: &[&str]) -> Result<String> {
    Ok(captured(c.exec(flags, &["cat", "/proc/self/status"])?)
        .success()?
        .stdout)
}

/// Each of the containers namespaces seen by init (written at start) equals exec's.
fn expect_same_namespaces(config: Config) -> Result<()> {
    let c = Container::start(config, &format!("({}) > /tmp/ns", ns_script()))?;
    let from_init = c.file("/tmp/ns")?;
    let from_exec = c.sh_ok(&[], &ns_script())?;
    assert_eq!(
        from_exec, from_init,
        "exec'ed process vs the container's init"
    );
    let pid = c.init_pid()?;
    for (ns, line) in NAMESPACES.iter().zip(from_exec.lines()) {
        assert_eq!(
            line,
            host::namespace_of(pid, ns)?,
            "{ns} of init seen from the host"
        );
    }
    Ok(())
}

#[test]
fn exec_joins_every_namespace_of_the_container() -> Result<()> {
    require_root!();
    expect_same_namespaces(Config::new().namespace(LinuxNamespaceType::Cgroup, None))
}

#[test]
fn exec_joins_the_user_namespace_too() -> Result<()> {
    require_root!();
    let config = Config::new()
        .user_namespace(100_000, 100_000, 65_536)
        .namespace(LinuxNamespaceType::Cgroup, None);
    expect_same_namespaces(config)?;
    let c = Container::sleeping(Config::new().user_namespace(100_000, 100_000, 65_536))?;
    let out = c.sh_ok(&[], "cat /proc/self/uid_map /proc/self/gid_map; id -u")?;
    let lines: Vec<Vec<String>> = out.lines().map(words).collect();
    let mapping = ["0", "100000", "65536"].map(String::from).to_vec();
    assert_eq!(
        lines,
        vec![mapping.clone(), mapping, vec!["0".to_string()]],
        "{out}"
    );
    Ok(())
}

#[test]
fn exec_runs_in_the_containers_cgroup() -> Result<()> {
    require_root!();
    let c = Container::start(Config::new(), "cat /proc/self/cgroup > /tmp/cgroup")?;
    let from_exec = c.sh_ok(&[], "cat /proc/self/cgroup")?;
    assert_eq!(from_exec, c.file("/tmp/cgroup")?, "exec'ed process vs init");
    assert!(
        from_exec.contains(&c.id),
        "not in a cgroup of the container:\n{from_exec}"
    );
    Ok(())
}

#[test]
fn exec_has_the_containers_capabilities() -> Result<()> {
    require_root!();
    // All five sets, inheritable and ambient included, so each set is checked.
    let caps = [
        Capability::Chown,
        Capability::Kill,
        Capability::NetBindService,
        Capability::SysChroot,
    ];
    let c = Container::start(
        Config::new().capabilities(&caps),
        "cat /proc/self/status > /tmp/status",
    )?;
    let init = c.file("/tmp/status")?;
    let exec = exec_status(&c, &[])?;
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            cap_mask(&exec, field),
            Some(mask_of(&caps)),
            "{field}:\n{exec}"
        );
        assert_eq!(
            cap_mask(&exec, field),
            cap_mask(&init, field),
            "{field} vs init"
        );
    }
    // The default config: runc's three capabilities, none inheritable.
    let c = Container::sleeping(Config::new())?;
    let exec = exec_status(&c, &[])?;
    for field in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(
            cap_mask(&exec, field),
            Some(mask_of(&DEFAULT_CAPS)),
            "{field}:\n{exec}"
        );
    }
    assert_eq!(cap_mask(&exec, "CapInh"), Some(0), "{exec}");
    Ok(())
}

fn deny_mkdir() -> Result<LinuxSeccomp> {
    from_json(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }))
}

#[test]
fn exec_has_the_containers_seccomp_filter() -> Result<()> {
    require_root!();
    for no_new_privs in [true, false] {
        let c = Container::sleeping(
            Config::new()
                .seccomp(deny_mkdir()?)
                .no_new_privileges(no_new_privs),
        )?;
        let out = c.sh(&[], "mkdir /tmp/d")?;
        assert_ne!(
            out.status, 0,
            "mkdir was allowed (noNewPrivileges {no_new_privs})"
        );
        assert!(
            out.stderr.contains("Operation not permitted"),
            "{}",
            out.stderr
        );
        assert!(!c.bundle.rootfs().join("tmp/d").exists());
        let status = exec_status(&c, &[])?;
        assert_eq!(status_field(&status, "Seccomp"), Some("2"), "{status}");
        // Other syscalls still work.
        assert_eq!(c.sh_ok(&[], "touch /tmp/f && echo ok")?, "ok\n");
    }
    let plain = Container::sleeping(Config::new())?;
    assert_eq!(
        status_field(&exec_status(&plain, &[])?, "Seccomp"),
        Some("0")
    );
    Ok(())
}

#[test]
fn exec_has_the_containers_rlimits() -> Result<()> {
    require_root!();
    let config = Config::new()
        .rlimit(PosixRlimitType::RlimitNofile, 512, 768)
        .rlimit(PosixRlimitType::RlimitNproc, 300, 400);
    let c = Container::start(config, "cat /proc/self/limits > /tmp/limits")?;
    let exec = c.sh_ok(&[], "cat /proc/self/limits")?;
    let row = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(|l| words(&l[name.len()..]))
            .unwrap_or_default()
    };
    assert_eq!(
        row(&exec, "Max open files"),
        ["512", "768", "files"],
        "{exec}"
    );
    assert_eq!(
        row(&exec, "Max processes"),
        ["300", "400", "processes"],
        "{exec}"
    );
    assert_eq!(exec, c.file("/tmp/limits")?, "exec'ed process vs init");
    Ok(())
}

#[test]
fn exec_env_is_the_containers_plus_dash_e() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new().env("FOO=from-config").env("KEEP=1"))?;
    let out = captured(c.exec(&["-e", "NEW=added", "-e", "FOO=overridden"], &["env"])?)
        .success()?
        .stdout;
    let vars: BTreeSet<&str> = out.lines().collect();
    for expected in [
        "NEW=added",
        "FOO=overridden",
        "KEEP=1",
        "TERM=xterm",
        keel_integration_tests::config::DEFAULT_PATH,
    ] {
        assert!(vars.contains(expected), "{expected} missing from:\n{out}");
    }
    assert!(
        !vars.contains("FOO=from-config"),
        "-e did not replace FOO:\n{out}"
    );
    let plain = captured(c.exec(&[], &["env"])?).success()?.stdout;
    assert!(plain.lines().any(|l| l == "FOO=from-config"), "{plain}");
    Ok(())
}

#[test]
fn exec_cwd() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new().cwd("/tmp"))?;
    assert_eq!(c.sh_ok(&[], "pwd")?, "/tmp\n", "the container's cwd");
    assert_eq!(c.sh_ok(&["--cwd", "/etc"], "pwd")?, "/etc\n");
    Ok(())
}

#[test]
fn exec_user_and_additional_gids() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let status = exec_status(&c, &["-u", "1000:1000", "-g", "5", "-g", "100"])?;
    assert_eq!(
        status_field(&status, "Uid").map(words),
        Some(vec!["1000".to_string(); 4])
    );
    assert_eq!(
        status_field(&status, "Gid").map(words),
        Some(vec!["1000".to_string(); 4])
    );
    let groups: BTreeSet<String> = status_field(&status, "Groups")
        .map(words)
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from(["5", "100"].map(String::from)),
        "{status}"
    );
    // A uid alone: gid 0, like runc.
    assert_eq!(c.sh_ok(&["-u", "1000"], "id -u; id -g")?, "1000\n0\n");
    Ok(())
}

#[test]
fn exec_cap_adds_a_capability() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let net_admin = 1u64 << cap_number(Capability::NetAdmin);
    let without = exec_status(&c, &[])?;
    assert_eq!(cap_mask(&without, "CapEff").map(|m| m & net_admin), Some(0));
    let with = exec_status(&c, &["--cap", "CAP_NET_ADMIN"])?;
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            cap_mask(&with, field),
            Some(mask_of(&DEFAULT_CAPS) | net_admin),
            "{field}:\n{with}"
        );
    }
    // And it works: only CAP_NET_ADMIN may change an interface.
    let script = "ip link set lo mtu 1280 && echo changed";
    assert_ne!(
        c.sh(&[], script)?.status,
        0,
        "changed lo without CAP_NET_ADMIN"
    );
    assert_eq!(c.sh_ok(&["--cap", "CAP_NET_ADMIN"], script)?, "changed\n");
    Ok(())
}

#[test]
fn exec_no_new_privs() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new().no_new_privileges(false))?;
    let status = exec_status(&c, &[])?;
    assert_eq!(status_field(&status, "NoNewPrivs"), Some("0"), "{status}");
    let status = exec_status(&c, &["--no-new-privs"])?;
    assert_eq!(status_field(&status, "NoNewPrivs"), Some("1"), "{status}");
    // The container's own setting applies to exec too.
    let c = Container::sleeping(Config::new().no_new_privileges(true))?;
    let status = exec_status(&c, &[])?;
    assert_eq!(status_field(&status, "NoNewPrivs"), Some("1"), "{status}");
    Ok(())
}

#[test]
fn exec_passes_the_exit_status_through() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    for (script, expected) in EXIT_CASES {
        let out = c.sh(&[], script)?;
        assert_eq!(out.status, expected, "{script}: {out:?}");
    }
    // The container is not affected.
    assert_eq!(c.rt.status(&c.id)?, "running");
    Ok(())
}

#[test]
fn exec_detach_with_pid_file() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("exec.pid");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let out = c.exec(&["-d", "--pid-file", &pid_arg], &["sleep", "100000"])?;
    expect_success(&out, "exec -d")?;
    let text = fs::read_to_string(&pid_file).context("no pid file")?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file {text:?}"))?;
    assert!(
        host::pid_alive(pid),
        "the exec'ed process {pid} is not running"
    );
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))?;
    assert_eq!(comm.trim(), "sleep", "the pid file names another process");
    let init = c.init_pid()?;
    assert_eq!(
        host::cgroups_of(pid),
        host::cgroups_of(init),
        "cgroups vs init"
    );
    for ns in NAMESPACES {
        assert_eq!(
            host::namespace_of(pid, ns)?,
            host::namespace_of(init, ns)?,
            "{ns}"
        );
    }
    // It runs on after exec returned, and a kill of the container reaches it.
    expect_success(&c.rt.kill_all(&c.id, "KILL")?, "kill --all")?;
    assert!(
        host::wait_until(WAIT, || !host::pid_alive(pid)),
        "the exec'ed process survived"
    );
    Ok(())
}

#[test]
fn exec_tty_with_console_socket() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let socket = ConsoleSocket::bind()?;
    let path = socket.path().to_string_lossy().into_owned();
    let (out, text) = thread::scope(|s| -> Result<(Output, String)> {
        let exec = s.spawn(|| {
            c.exec(
                &["-t", "--console-socket", &path],
                &[
                    "sh",
                    "-c",
                    "tty; echo hello > /dev/tty; readlink /proc/self/fd/0",
                ],
            )
        });
        let master = socket.receive_master(WAIT);
        let text = match &master {
            Ok(m) => read_until_closed(m, WAIT)?,
            Err(_) => String::new(),
        };
        let out = exec
            .join()
            .map_err(|_| anyhow::anyhow!("exec thread panicked"))??;
        master
            .with_context(|| format!("no pty master: {}", String::from_utf8_lossy(&out.stderr)))?;
        Ok((out, text))
    })?;
    expect_success(&out, "exec -t --console-socket")?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "{text:?}");
    assert_eq!(lines[1], "hello");
    assert_eq!(lines[2], lines[0], "stdin is not the pty");
    Ok(())
}

#[test]
fn exec_tty_in_the_foreground_copies_the_output() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let out = captured(c.exec(&["-t"], &["sh", "-c", "tty; echo hello"])?).success()?;
    let text = out.stdout.replace('\r', "");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("/dev/pts/")),
        "{out:?}"
    );
    assert_eq!(lines.get(1).copied(), Some("hello"), "{out:?}");
    // The pty is all the process gets: stdio on it, no other fd of the runtime.
    let out = captured(c.exec(&["-t"], &["ls", "-l", "/proc/self/fd"])?).success()?;
    let listing = out.stdout.replace('\r', "");
    let fds = inherited_fds(&listing);
    let numbers: Vec<u32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(numbers, [0, 1, 2], "{listing}");
    assert!(
        fds.iter().all(|f| f.1.starts_with("/dev/pts/")),
        "{listing}"
    );
    Ok(())
}

/// `exec <flags> <id> ls -l /proc/self/fd` with the runtime given an open fd 3 (`/etc/hostname`).
fn exec_with_fd3(c: &Container, flags: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec \"$@\" 3</etc/hostname", "sh"])
        .arg(c.rt.binary())
        .arg("--root")
        .arg(c.rt.root())
        .arg("exec")
        .args(flags)
        .args([c.id.as_str(), "ls", "-l", "/proc/self/fd"]);
    output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)
}

#[test]
fn exec_preserve_fds() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let out = exec_with_fd3(&c, &["--preserve-fds", "1"])?;
    expect_success(&out, "exec --preserve-fds 1")?;
    let listing = String::from_utf8(out.stdout)?;
    let fds = inherited_fds(&listing);
    let numbers: Vec<u32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(numbers, [0, 1, 2, 3], "{listing}");
    assert_eq!(fds[3].1, "/etc/hostname", "{listing}");
    Ok(())
}

#[test]
fn no_fd_of_the_runtime_leaks_into_exec() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    // fd 3 open in the runtime, but not passed on: only stdio arrives.
    let out = exec_with_fd3(&c, &[])?;
    expect_success(&out, "exec")?;
    let listing = String::from_utf8(out.stdout)?;
    let numbers: Vec<u32> = inherited_fds(&listing).iter().map(|f| f.0).collect();
    assert_eq!(numbers, [0, 1, 2], "fds leaked:\n{listing}");
    // The same detached with --pid-file (more fds in the runtime).
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("pid").to_string_lossy().into_owned();
    let out = c.exec(
        &["-d", "--pid-file", &pid_file],
        &[
            "sh",
            "-c",
            "ls -l /proc/self/fd > /tmp/fds.part; mv /tmp/fds.part /tmp/fds",
        ],
    )?;
    expect_success(&out, "exec -d")?;
    let written = c.bundle.rootfs().join("tmp/fds");
    ensure!(
        host::wait_until(WAIT, || written.exists()),
        "the detached process wrote nothing"
    );
    let listing = c.file("/tmp/fds")?;
    let numbers: Vec<u32> = inherited_fds(&listing).iter().map(|f| f.0).collect();
    assert_eq!(
        numbers,
        [0, 1, 2],
        "fds leaked into a detached exec:\n{listing}"
    );
    Ok(())
}

#[test]
fn exec_process_json() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new().env("FROM_CONFIG=1"))?;
    let dir = tempfile::tempdir()?;
    let process = dir.path().join("process.json");
    fs::write(
        &process,
        serde_json::to_string(&json!({
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
            "args": ["sh", "-c", "id -u; id -g; pwd; echo \"$X/${FROM_CONFIG:-unset}\"; exit 3"],
            "env": ["PATH=/bin:/usr/bin", "X=from-json"],
            "cwd": "/tmp",
            "noNewPrivileges": true
        }))?,
    )?;
    let out = captured(c.exec(&["-p", &process.to_string_lossy()], &[])?);
    assert_eq!(out.status, 3, "{out:?}");
    // Only the file's process: not the container's env.
    assert_eq!(out.stdout, "1000\n1000\n/tmp\nfrom-json/unset\n", "{out:?}");
    Ok(())
}

/// A copy of the runtime binary (an attack that works corrupts only the copy) and its digest.
struct Victim {
    _dir: TempDir,
    bin: PathBuf,
    digest: String,
}

impl Victim {
    fn new() -> Result<Self> {
        let original = Runtime::keel()?.binary().to_path_buf();
        let dir = tempfile::tempdir()?;
        let bin = dir.path().join("keel-runtime");
        fs::copy(&original, &bin)?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        let digest = host::sha256_file(&bin)?;
        Ok(Self {
            _dir: dir,
            bin,
            digest,
        })
    }
}

impl Victim {
    fn expect_unchanged(&self) -> Result<()> {
        ensure!(
            host::sha256_file(&self.bin)? == self.digest,
            "an exec'ed process overwrote the runtime binary"
        );
        Ok(())
    }
}

/// Copies the shared libraries and loader `bin` needs (from `ldd`) into `rootfs`.
fn install_libraries_of(bin: &std::path::Path, rootfs: &std::path::Path) -> Result<()> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let libs = text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(std::path::Path::new);
    for lib in libs {
        let dest = rootfs.join(lib.strip_prefix("/")?);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
    }
    Ok(())
}

/// Opens `/proc/$1/exe`, lets that process go (it blocks opening the FIFO `/tmp/fifo`), waits
/// until it is gone and writes through the fd: CVE-2019-5736 made deterministic.
const OVERWRITE: &str = r#"
command exec 3< /proc/$1/exe || { echo "open refused"; cat /tmp/fifo > /dev/null; exit 0; }
echo "opened $(readlink /proc/$1/exe)"
cat /tmp/fifo > /dev/null
while [ -e /proc/$1/exe ]; do sleep 0.01; done
if (echo pwned > /proc/self/fd/3) 2>/dev/null; then echo WROTE; else echo "write refused"; fi
"#;

#[test]
fn exec_of_proc_self_exe_cannot_overwrite_the_runtime_binary() -> Result<()> {
    require_root!();
    let victim = Victim::new()?;
    let c = Container::start_on(
        Runtime::with_binary(&victim.bin)?,
        Config::new(),
        "mkfifo /tmp/fifo",
    )?;
    // The runtime is dynamically linked: give the rootfs its loader and libraries.
    install_libraries_of(&victim.bin, &c.bundle.rootfs())?;
    // The command `/proc/self/exe` is the runtime itself, run inside the container (as runc's
    // `#!/proc/self/exe` entrypoint was); `--log` on a FIFO keeps it there until we read.
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("victim.pid");
    let out = c.exec(
        &["-d", "--pid-file", &pid_file.to_string_lossy()],
        &["/proc/self/exe", "--log", "/tmp/fifo", "state", "x"],
    )?;
    expect_success(&out, "exec -d /proc/self/exe")?;
    let host_pid: i32 = fs::read_to_string(&pid_file)?.trim().parse()?;
    let status = fs::read_to_string(format!("/proc/{host_pid}/status"))?;
    // NSpid: the host pid, then the pid in the container's namespace.
    let inner = status_field(&status, "NSpid")
        .and_then(|f| words(f).last().cloned())
        .context("no NSpid")?;
    let log = captured(c.exec(&[], &["sh", "-c", OVERWRITE, "sh", &inner])?);
    eprintln!("attacker: {log:?}");
    victim.expect_unchanged()?;
    assert!(!log.stdout.contains("WROTE"), "{log:?}");
    assert!(
        log.stdout.contains("refused"),
        "the attack did not run: {log:?}"
    );
    Ok(())
}

/// Opens `/proc/<pid>/exe` of every process whose executable is not in the rootfs (the
/// runtime's exec stages joining the container) and writes through it once that is gone.
const WATCHER: &str = r#"
while [ ! -e /tmp/stop ]; do
  for d in /proc/[0-9]*; do
    t=$(readlink $d/exe 2>/dev/null) || continue
    case "$t" in ""|*busybox*) continue;; esac
    [ -e "$t" ] && continue
    command exec 3< $d/exe 2>/dev/null || continue
    echo "opened $d $t" >> /tmp/log
    while [ -e $d/exe ] && [ ! -e /tmp/stop ]; do sleep 0.01; done
    if (echo pwned > /proc/self/fd/3) 2>> /tmp/log; then echo WROTE >> /tmp/log; else echo refused >> /tmp/log; fi
    exec 3<&-
  done
done
"#;

#[test]
fn exec_stages_cannot_be_opened_to_overwrite_the_runtime() -> Result<()> {
    require_root!();
    let victim = Victim::new()?;
    let c = Container::start_on(Runtime::with_binary(&victim.bin)?, Config::new(), ":")?;
    expect_success(&c.exec(&["-d"], &["sh", "-c", WATCHER])?, "exec -d watcher")?;
    for _ in 0..10 {
        let _ = c.exec(&[], &["true"])?;
        let _ = c.exec(&["-d"], &["true"])?;
    }
    thread::sleep(Duration::from_millis(500));
    fs::write(c.bundle.rootfs().join("tmp/stop"), "")?;
    let log = c.file("/tmp/log").unwrap_or_default();
    victim.expect_unchanged()?;
    assert!(
        !log.contains("WROTE"),
        "a write through /proc/<pid>/exe succeeded:\n{log}"
    );
    Ok(())
}

#[test]
fn exec_into_a_paused_container() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    expect_success(&c.rt.exec(&["pause", &c.id])?, "pause")?;
    assert_eq!(c.rt.status(&c.id)?, "paused");
    let before = c.snapshot()?;
    expect_one_line_error(&c.exec(&[], &["true"])?, &["paused"])?;
    c.expect_unchanged(&before)?;
    // --ignore-paused: accepted; the process runs once the container is thawed.
    let out = thread::scope(|s| -> Result<Output> {
        let exec = s.spawn(|| {
            c.exec(
                &["--ignore-paused"],
                &["sh", "-c", "echo ran > /tmp/ignored"],
            )
        });
        thread::sleep(Duration::from_millis(500));
        let resumed = c.rt.exec(&["resume", &c.id]);
        let out = exec
            .join()
            .map_err(|_| anyhow::anyhow!("exec thread panicked"))??;
        expect_success(&resumed?, "resume")?;
        Ok(out)
    })?;
    expect_success(&out, "exec --ignore-paused")?;
    assert_eq!(c.file("/tmp/ignored")?, "ran\n");
    assert_eq!(c.rt.status(&c.id)?, "running");
    Ok(())
}

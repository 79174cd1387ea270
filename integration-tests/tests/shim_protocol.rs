//! `containerd-shim-keel-v2` driven directly over containerd's runtime v2 shim protocol (ttrpc
//! task API, events forwarded to a fake containerd, the `start` and `delete` bootstrap), the
//! way containerd 1.6 drives it: lifecycle, exit statuses, execs, bootstrap and reconnection.
//! Runs as root; each test has its own shim, state dir and bundle.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use containerd_shim_protos::api::{ExecProcessRequest, PidsRequest, Status as TaskStatus};
use containerd_shim_protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskStart};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use keel_integration_tests::shim::{self, expect_code, FifoReader, Rootfs, ShimUnderTest, WAIT};
use keel_integration_tests::{binary, host, require, require_root, Config};
use ttrpc::Code;

const SIGKILL: u32 = 9;

/// Create (stdout and stderr FIFOs) → Start → Wait → State → Delete → Shutdown, on `shim`,
/// with `options` naming `runtime` (None: the shim's default, keel-runtime).
fn lifecycle(shim: &ShimUnderTest, runtime: &Path, options: Option<Any>) -> Result<()> {
    let stdout = shim.fifo("stdout")?;
    let stderr = shim.fifo("stderr")?;
    let (out, err) = (FifoReader::spawn(&stdout), FifoReader::spawn(&stderr));
    let mut req = shim.create_request();
    req.stdout = stdout;
    req.stderr = stderr;
    req.options = options.into();
    let created = shim.client().create(shim.ctx(), &req);
    let created = created.with_context(|| format!("Create\n{}", shim.log()))?;
    ensure!(created.pid > 1, "Create returned pid {}", created.pid);
    let state = shim.state("")?;
    ensure!(
        state.status.enum_value_or_default() == TaskStatus::CREATED,
        "State after Create: {state:?}"
    );
    // The container is the runtime's: it reads its own state.
    let queried = Command::new(runtime)
        .arg("--root")
        .arg(shim.runtime_root())
        .args(["state", &shim.id])
        .output()?;
    let runtime_state: serde_json::Value =
        serde_json::from_slice(&queried.stdout).with_context(|| {
            format!(
                "{} state: {}",
                runtime.display(),
                String::from_utf8_lossy(&queried.stderr)
            )
        })?;
    ensure!(
        runtime_state["status"] == "created" && runtime_state["pid"] == created.pid,
        "{} state after Create: {runtime_state}",
        runtime.display()
    );
    let started = shim.start_process("").with_context(|| shim.log())?;
    ensure!(
        started.pid == created.pid,
        "Start pid {} != Create pid {}",
        started.pid,
        created.pid
    );
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 3,
        "Wait: exit status {}, want 3\n{}",
        waited.exit_status,
        shim.log()
    );
    let state = shim.state("")?;
    ensure!(
        state.status.enum_value_or_default() == TaskStatus::STOPPED && state.exit_status == 3,
        "State after exit: {state:?}"
    );
    ensure!(
        state.bundle == shim.bundle().display().to_string(),
        "State bundle: {state:?}"
    );
    let expected_out: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let got = out.text(WAIT)?;
    ensure!(
        got == expected_out,
        "stdout incomplete: {} of {} bytes",
        got.len(),
        expected_out.len()
    );
    ensure!(
        err.text(WAIT)? == "to stderr\n",
        "stderr: {:?}",
        err.so_far()
    );
    let deleted = shim.delete("").with_context(|| shim.log())?;
    ensure!(
        deleted.exit_status == 3 && deleted.pid == created.pid,
        "Delete: {deleted:?}"
    );
    expect_code(shim.state(""), Code::NOT_FOUND, "State after Delete")?;
    let want = [
        ("/tasks/create", "containerd.events.TaskCreate"),
        ("/tasks/start", "containerd.events.TaskStart"),
        ("/tasks/exit", "containerd.events.TaskExit"),
        ("/tasks/delete", "containerd.events.TaskDelete"),
    ];
    shim.wait_event("/tasks/delete", |_| true)?;
    let events = shim.events();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.topic.as_str(), e.type_url.as_str()))
        .collect();
    ensure!(got == want, "events {got:?}, want {want:?}");
    ensure!(
        events.iter().all(|e| e.namespace == shim::NAMESPACE),
        "events outside {}: {events:?}",
        shim::NAMESPACE
    );
    let create: TaskCreate = events[0].decode()?;
    ensure!(
        create.container_id == shim.id
            && create.pid == created.pid
            && create.bundle == shim.bundle().display().to_string()
            && create.io.stdout == req.stdout
            && create.io.stderr == req.stderr,
        "TaskCreate: {create:?}"
    );
    let start: TaskStart = events[1].decode()?;
    ensure!(start.pid == created.pid, "TaskStart: {start:?}");
    let exit: TaskExit = events[2].decode()?;
    ensure!(
        exit.exit_status == 3 && exit.pid == created.pid && exit.container_id == shim.id,
        "TaskExit: {exit:?}"
    );
    let delete: TaskDelete = events[3].decode()?;
    ensure!(delete.exit_status == 3, "TaskDelete: {delete:?}");
    let shim_pid = shim.shim_pid()?;
    shim.shutdown().with_context(|| shim.log())?;
    let gone = host::wait_until(WAIT, || {
        !host::pid_alive(shim_pid) && !shim.socket_path().exists()
    });
    ensure!(
        gone,
        "after Shutdown: shim alive {}, socket exists {}\n{}",
        host::pid_alive(shim_pid),
        shim.socket_path().exists(),
        shim.log()
    );
    Ok(())
}

fn lifecycle_config() -> Config {
    Config::new().sh(
        "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo to stderr >&2; exit 3",
    )
}

#[test]
fn lifecycle_create_start_wait_delete_shutdown() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&lifecycle_config())?;
    lifecycle(&shim, shim.runtime_bin(), None)
}

#[test]
fn lifecycle_on_real_runc() -> Result<()> {
    require_root!();
    require!(binary::has_runc(), "runc is not installed");
    let shim = ShimUnderTest::start(&lifecycle_config())?;
    let runc = binary::runc()?;
    lifecycle(&shim, &runc, Some(shim::runc_options(&runc, None)))
}

/// A sleeping container, created and started; returns its pid.
fn run_sleeper(shim: &ShimUnderTest) -> Result<u32> {
    let created = shim.client().create(shim.ctx(), &shim.create_request());
    let pid = created
        .with_context(|| format!("Create\n{}", shim.log()))?
        .pid;
    shim.start_process("").with_context(|| shim.log())?;
    Ok(pid)
}

fn sleeper() -> Config {
    Config::new().args(&["sleep", "100000"])
}

#[test]
fn killed_by_a_signal_exits_128_plus_the_signal() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&sleeper())?;
    let pid = run_sleeper(&shim)?;
    shim.kill("", SIGKILL).with_context(|| shim.log())?;
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 137,
        "Wait after SIGKILL: {waited:?}\n{}",
        shim.log()
    );
    let state = shim.state("")?;
    ensure!(
        state.status.enum_value_or_default() == TaskStatus::STOPPED && state.exit_status == 137,
        "State after SIGKILL: {state:?}"
    );
    let exit: TaskExit = shim.wait_event("/tasks/exit", |_| true)?.decode()?;
    ensure!(
        exit.exit_status == 137 && exit.pid == pid,
        "TaskExit: {exit:?}"
    );
    let again = expect_code(
        shim.kill("", SIGKILL),
        Code::NOT_FOUND,
        "Kill of an exited init",
    )?;
    ensure!(
        again.contains("finished"),
        "Kill of an exited init said {again:?}"
    );
    let deleted = shim.delete("")?;
    ensure!(deleted.exit_status == 137, "Delete: {deleted:?}");
    Ok(())
}

/// `ProcessDetails { exec_id = 1 }`, as the runc shim encodes it in a Pids answer.
fn process_details(exec_id: &str) -> Vec<u8> {
    let mut v = vec![0x0a, exec_id.len() as u8];
    v.extend_from_slice(exec_id.as_bytes());
    v
}

#[test]
fn exec_runs_with_its_own_stdio_and_is_listed_and_deleted() -> Result<()> {
    require_root!();
    let config = sleeper();
    let shim = ShimUnderTest::start(&config)?;
    let init_pid = run_sleeper(&shim)?;
    let (stdout, stderr) = (shim.fifo("exec-out")?, shim.fifo("exec-err")?);
    let (out, err) = (FifoReader::spawn(&stdout), FifoReader::spawn(&stderr));
    let script =
        "echo exec-out; echo exec-err >&2; while [ ! -e /tmp/exec-go ]; do sleep 0.1; done; exit 4";
    let exec = |exec_id: &str| -> Result<ExecProcessRequest> {
        Ok(ExecProcessRequest {
            id: shim.id.clone(),
            exec_id: exec_id.into(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            spec: Some(shim::process_spec(&config, &["sh", "-c", script])?).into(),
            ..Default::default()
        })
    };
    shim.client()
        .exec(shim.ctx(), &exec("e1")?)
        .with_context(|| shim.log())?;
    expect_code(
        shim.client().exec(shim.ctx(), &exec("e1")?),
        Code::ALREADY_EXISTS,
        "Exec e1 twice",
    )?;
    expect_code(
        shim.client().exec(shim.ctx(), &exec("../x")?),
        Code::INVALID_ARGUMENT,
        "Exec ../x",
    )?;
    ensure!(
        !shim.bundle().join("../exec-x.json").exists() && !shim.bundle().join("exec-..").exists(),
        "exec id ../x wrote outside the bundle"
    );
    let pid = shim.start_process("e1").with_context(|| shim.log())?.pid;
    ensure!(
        pid > 1 && pid != init_pid,
        "exec pid {pid}, init {init_pid}"
    );
    let state = shim.state("e1")?;
    ensure!(
        state.pid == pid && state.status.enum_value_or_default() == TaskStatus::RUNNING,
        "State of e1: {state:?}"
    );
    let pids = shim.client().pids(
        shim.ctx(),
        &PidsRequest {
            id: shim.id.clone(),
            ..Default::default()
        },
    );
    let pids = pids.with_context(|| shim.log())?.processes;
    let listed = pids
        .iter()
        .find(|p| p.pid == pid)
        .with_context(|| format!("exec pid {pid} not in Pids: {pids:?}"))?;
    ensure!(
        listed.info.type_url == "containerd.runc.v1.ProcessDetails"
            && listed.info.value == process_details("e1"),
        "exec's Pids entry: {listed:?}"
    );
    ensure!(
        pids.iter().any(|p| p.pid == init_pid && p.info.is_none()),
        "init not in Pids: {pids:?}"
    );
    expect_code(
        shim.state("nope"),
        Code::NOT_FOUND,
        "State of an unknown exec",
    )?;
    expect_code(
        shim.start_process("nope"),
        Code::NOT_FOUND,
        "Start of an unknown exec",
    )?;
    expect_code(
        shim.kill("nope", SIGKILL),
        Code::NOT_FOUND,
        "Kill of an unknown exec",
    )?;
    fs::write(shim.bundle().join("rootfs/tmp/exec-go"), "").context("touching /tmp/exec-go")?;
    let waited = shim.wait("e1").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 4,
        "Wait e1: {waited:?}\n{}",
        shim.log()
    );
    ensure!(
        out.text(WAIT)? == "exec-out\n",
        "exec stdout {:?}",
        out.so_far()
    );
    ensure!(
        err.text(WAIT)? == "exec-err\n",
        "exec stderr {:?}",
        err.so_far()
    );
    let exit: TaskExit = shim.wait_event("/tasks/exit", |_| true)?.decode()?;
    ensure!(
        exit.id == "e1" && exit.pid == pid && exit.exit_status == 4,
        "TaskExit: {exit:?}"
    );
    let deleted = shim.delete("e1")?;
    ensure!(
        deleted.pid == pid && deleted.exit_status == 4,
        "Delete e1: {deleted:?}"
    );
    expect_code(shim.state("e1"), Code::NOT_FOUND, "State of a deleted exec")?;
    let topics = shim.topics();
    let want = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
    ];
    ensure!(topics == want, "events {topics:?}, want {want:?}");
    let state = shim.state("")?;
    ensure!(
        state.status.enum_value_or_default() == TaskStatus::RUNNING,
        "init after the exec: {state:?}"
    );
    Ok(())
}

#[test]
fn second_start_finds_the_same_daemon_and_connect_names_it() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&sleeper())?;
    let shim_pid = shim.shim_pid()?;
    let before = shim.connect().with_context(|| shim.log())?;
    ensure!(
        before.shim_pid == shim_pid as u32 && before.task_pid == 0,
        "Connect before Create: {before:?}"
    );
    let task_pid = run_sleeper(&shim)?;
    let again = shim.bootstrap_start()?;
    ensure!(
        again == shim.address(),
        "second start printed {again:?}, first {:?}",
        shim.address()
    );
    ensure!(
        shim.shim_pid()? == shim_pid,
        "shim.pid changed to {}",
        shim.shim_pid()?
    );
    let daemons = shim::daemons_of(&shim.id);
    ensure!(
        daemons == [shim_pid],
        "shim daemons for {}: {daemons:?}, want [{shim_pid}]",
        shim.id
    );
    let connected = shim.connect()?;
    ensure!(
        connected.shim_pid == shim_pid as u32 && connected.task_pid == task_pid,
        "Connect: {connected:?}, want shim {shim_pid} task {task_pid}"
    );
    Ok(())
}

/// containerd 1.6 may run `start` for a task while another `start` for it is still running
/// (two clients starting one container): the second must find the first's daemon.
#[test]
fn concurrent_starts_make_one_daemon() -> Result<()> {
    require_root!();
    for attempt in 0..20 {
        let mut shim = ShimUnderTest::unstarted(&sleeper(), Rootfs::InBundle)?;
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| shim.bootstrap_start());
            let b = s.spawn(|| shim.bootstrap_start());
            (a.join(), b.join())
        });
        let (Ok(a), Ok(b)) = (a, b) else {
            anyhow::bail!("a start panicked");
        };
        let (a, b) = (a?, b?);
        ensure!(a == b, "attempt {attempt}: two addresses {a:?} and {b:?}");
        let daemons = shim::daemons_of(&shim.id);
        ensure!(
            daemons.len() == 1,
            "attempt {attempt}: two concurrent starts left daemons {daemons:?} (one on an \
             unlinked socket, never to be shut down)"
        );
        shim.reconnect()?;
        shim.connect().with_context(|| shim.log())?;
    }
    Ok(())
}

#[test]
fn the_daemon_outlives_its_client_in_a_session_of_its_own() -> Result<()> {
    require_root!();
    let mut shim = ShimUnderTest::start(&sleeper())?;
    let pid = run_sleeper(&shim)?;
    let shim_pid = nix::unistd::Pid::from_raw(shim.shim_pid()?);
    let theirs = nix::unistd::getsid(Some(shim_pid)).context("getsid of the shim")?;
    let ours = nix::unistd::getsid(None).context("getsid")?;
    ensure!(theirs != ours, "the shim is in the test's session {ours}");
    ensure!(
        theirs == shim_pid,
        "the shim does not lead its session ({theirs})"
    );
    shim.reconnect()?;
    let state = shim.state("").with_context(|| shim.log())?;
    ensure!(
        state.pid == pid && state.status.enum_value_or_default() == TaskStatus::RUNNING,
        "State through a new client: {state:?}"
    );
    shim.kill("", SIGKILL)?;
    let waited = shim.wait("")?;
    ensure!(
        waited.exit_status == 137,
        "Wait through a new client: {waited:?}"
    );
    Ok(())
}

#[test]
fn delete_bootstrap_cleans_up_after_a_killed_daemon() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start_with(&sleeper(), Rootfs::Mounted)?;
    let mut req = shim.create_request();
    req.rootfs = shim.rootfs_mounts();
    let pid = shim
        .client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?
        .pid;
    shim.start_process("")?;
    let rootfs = shim.bundle().join("rootfs");
    ensure!(
        !shim::mounts_under(&rootfs)?.is_empty(),
        "the rootfs is not mounted"
    );
    let shim_pid = shim.shim_pid()?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    ensure!(
        host::wait_until(WAIT, || !host::pid_alive(shim_pid)),
        "the shim survived SIGKILL"
    );
    ensure!(
        host::pid_alive(pid as i32),
        "the container died with its shim"
    );
    let out = shim.bootstrap_delete()?;
    ensure!(
        out.status.success(),
        "delete failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = containerd_shim_protos::api::DeleteResponse::parse_from_bytes(&out.stdout)
        .context("delete printed no DeleteResponse")?;
    ensure!(
        resp.exit_status == 137 && resp.exited_at.is_some(),
        "DeleteResponse: {resp:?}"
    );
    ensure!(
        host::wait_until(WAIT, || !host::pid_alive(pid as i32)),
        "the container survived delete"
    );
    let state = Command::new(shim.runtime_bin())
        .arg("--root")
        .arg(shim.runtime_root())
        .args(["state", &shim.id])
        .output()?;
    ensure!(
        !state.status.success(),
        "the runtime still knows the container: {}",
        String::from_utf8_lossy(&state.stdout)
    );
    let left = shim::mounts_under(&rootfs)?;
    ensure!(left.is_empty(), "still mounted after delete: {left:?}");
    ensure!(
        !shim.socket_path().exists(),
        "the dead shim's socket is left"
    );
    Ok(())
}

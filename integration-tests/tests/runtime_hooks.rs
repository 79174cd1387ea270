//! `hooks`: prestart, createRuntime, createContainer, startContainer, poststart, poststop run
//! at their point of the lifecycle, in the right namespaces, with the state on stdin; a hook
//! that fails or times out fails create and leaves nothing behind.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_integration_tests::checks::{expect_nothing_left, expect_one_line_error, expect_success};
use keel_integration_tests::config::{from_json, DEFAULT_PATH};
use keel_integration_tests::host;
use keel_integration_tests::{require_root, unique_id, Bundle, Config, Runtime};
use oci_spec::runtime::Hooks;
use serde_json::{json, Value};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// The hook kinds in lifecycle order.
const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that runs `script` with `sh` (the host's, or for startContainer the container's).
fn sh_hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": [DEFAULT_PATH]})
}

/// A hook that saves its stdin (the state) as `<dir>/<kind>.json` and appends `kind` to
/// `<dir>/order`, plus its mount and net namespaces to `<dir>/<kind>.ns`.
fn recording_hook(dir: &str, kind: &str) -> Value {
    sh_hook(&format!(
        "cat > {dir}/{kind}.json; echo {kind} >> {dir}/order; \
         (readlink /proc/self/ns/mnt; readlink /proc/self/ns/net) > {dir}/{kind}.ns"
    ))
}

/// Every hook kind recording into `host_dir`; startContainer, which runs inside the
/// container, writes through the bind mount `/shared`.
fn recording_hooks(host_dir: &Path) -> Result<Hooks> {
    let dir = host_dir.to_string_lossy();
    let mut hooks = serde_json::Map::new();
    for kind in KINDS {
        let target = if kind == "startContainer" {
            "/shared"
        } else {
            &dir
        };
        hooks.insert(kind.to_string(), json!([recording_hook(target, kind)]));
    }
    from_json(Value::Object(hooks))
}

struct Recorded {
    dir: TempDir,
}

impl Recorded {
    fn new() -> Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ran(&self, kind: &str) -> bool {
        self.path().join(format!("{kind}.json")).exists()
    }

    fn state(&self, kind: &str) -> Result<Value> {
        let text = fs::read_to_string(self.path().join(format!("{kind}.json")))
            .with_context(|| format!("{kind} did not run"))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{kind} got no state JSON on stdin: {text:?}"))
    }

    fn order(&self) -> Vec<String> {
        let text = fs::read_to_string(self.path().join("order")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    fn namespaces(&self, kind: &str) -> Result<String> {
        Ok(fs::read_to_string(self.path().join(format!("{kind}.ns")))?)
    }
}

/// Creates a container with every hook recording; returns it created (not started).
fn create_with_hooks(rt: &Runtime, rec: &Recorded, process: &[&str]) -> Result<(Bundle, String)> {
    let config = Config::new()
        .bind(rec.path(), "/shared", &[])
        .args(process)
        .hooks(recording_hooks(rec.path())?);
    let bundle = Bundle::new(&config)?;
    let id = unique_id("hooks");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    Ok((bundle, id))
}

#[test]
fn each_hook_runs_at_its_point_of_the_lifecycle() -> Result<()> {
    require_root!();
    let rec = Recorded::new()?;
    let rt = Runtime::keel()?;
    let (_bundle, id) = create_with_hooks(&rt, &rec, &["true"])?;
    for kind in ["prestart", "createRuntime", "createContainer"] {
        assert!(rec.ran(kind), "{kind} did not run during create");
    }
    for kind in ["startContainer", "poststart", "poststop"] {
        assert!(!rec.ran(kind), "{kind} ran during create");
    }
    expect_success(&rt.start(&id)?, "start")?;
    assert!(
        rec.ran("startContainer") && rec.ran("poststart"),
        "start hooks: {:?}",
        rec.order()
    );
    assert!(rt.wait_status(&id, "stopped", WAIT));
    assert!(!rec.ran("poststop"), "poststop ran before delete");
    expect_success(&rt.delete(&id)?, "delete")?;
    assert!(rec.ran("poststop"), "poststop did not run on delete");
    assert_eq!(rec.order(), KINDS.map(String::from).to_vec());
    Ok(())
}

#[test]
fn hooks_receive_the_state_on_stdin() -> Result<()> {
    require_root!();
    let rec = Recorded::new()?;
    let rt = Runtime::keel()?;
    let (bundle, id) = create_with_hooks(&rt, &rec, &["sleep", "1000"])?;
    let pid = rt.pid(&id)?;
    expect_success(&rt.start(&id)?, "start")?;
    expect_success(&rt.delete_force(&id)?, "delete --force")?;
    let bundle_path = fs::canonicalize(bundle.path())?;
    for kind in KINDS {
        let state = rec.state(kind)?;
        assert_eq!(state["id"], id.as_str(), "{kind}: {state}");
        assert_eq!(
            state["bundle"].as_str().map(Path::new),
            Some(bundle_path.as_path()),
            "{kind}: {state}"
        );
        assert!(state["ociVersion"].is_string(), "{kind}: {state}");
        // The host's view of the pid; hooks run inside the container get 1 from runc: accepted.
        let in_container = kind == "createContainer" || kind == "startContainer";
        let got = state["pid"].as_i64();
        if kind != "poststop" && !(in_container && got == Some(1)) {
            assert_eq!(got, Some(i64::from(pid)), "{kind}: {state}");
        }
    }
    assert_eq!(rec.state("poststart")?["status"], "running");
    assert_eq!(rec.state("poststop")?["status"], "stopped");
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let status = rec.state(kind)?["status"].clone();
        assert!(
            status == "creating" || status == "created",
            "{kind}: status {status}"
        );
    }
    Ok(())
}

#[test]
fn hooks_run_in_the_namespaces_the_spec_says() -> Result<()> {
    require_root!();
    let rec = Recorded::new()?;
    let rt = Runtime::keel()?;
    let (_bundle, id) = create_with_hooks(&rt, &rec, &["sleep", "1000"])?;
    let pid = rt.pid(&id)?;
    let container = format!(
        "{}\n{}\n",
        host::namespace_of(pid, "mnt")?,
        host::namespace_of(pid, "net")?
    );
    let me = std::process::id() as i32;
    let runtime = format!(
        "{}\n{}\n",
        host::namespace_of(me, "mnt")?,
        host::namespace_of(me, "net")?
    );
    expect_success(&rt.start(&id)?, "start")?;
    for kind in ["prestart", "createRuntime", "poststart"] {
        assert_eq!(
            rec.namespaces(kind)?,
            runtime,
            "{kind} must run in the runtime's namespaces"
        );
    }
    for kind in ["createContainer", "startContainer"] {
        assert_eq!(
            rec.namespaces(kind)?,
            container,
            "{kind} must run in the container's namespaces"
        );
    }
    Ok(())
}

#[test]
fn start_container_hook_path_resolves_inside_the_container() -> Result<()> {
    require_root!();
    let rec = Recorded::new()?;
    let hooks = from_json(
        json!({"startContainer": [{"path": "/only-in-rootfs.sh", "env": [DEFAULT_PATH]}]}),
    )?;
    let config = Config::new()
        .bind(rec.path(), "/shared", &[])
        .args(&["true"])
        .hooks(hooks);
    let bundle = Bundle::new(&config)?;
    bundle.write_rootfs_file(
        "/only-in-rootfs.sh",
        "#!/bin/sh\nhostname > /shared/ran\n",
        0o755,
    )?;
    let rt = Runtime::keel()?;
    let id = unique_id("starthook");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    expect_success(&rt.start(&id)?, "start")?;
    assert_eq!(
        fs::read_to_string(rec.path().join("ran"))?,
        "keel\n",
        "ran, but not in the container's UTS namespace"
    );
    Ok(())
}

#[test]
fn hook_args_and_env_are_passed() -> Result<()> {
    require_root!();
    let rec = Recorded::new()?;
    let out = rec.path().join("args");
    let hook = json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo \"$0 $1 $FOO\" > {}", out.display()), "zero", "one"],
        "env": ["FOO=bar", DEFAULT_PATH]
    });
    let config = Config::new()
        .args(&["true"])
        .hooks(from_json(json!({"createRuntime": [hook]}))?);
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    expect_success(&rt.create(bundle.path(), &unique_id("hookargs"))?, "create")?;
    assert_eq!(fs::read_to_string(out)?, "zero one bar\n");
    Ok(())
}

/// Create with `hooks` must fail with one line and leave nothing behind.
fn expect_create_fails(hooks: Value) -> Result<Duration> {
    let config = Config::new().args(&["true"]).hooks(from_json(hooks)?);
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("badhook");
    let started = Instant::now();
    let out = rt.create(bundle.path(), &id)?;
    let took = started.elapsed();
    expect_one_line_error(&out, &[])?;
    expect_nothing_left(&rt, &id, bundle.path())?;
    Ok(took)
}

#[test]
fn hook_timeout_fails_create() -> Result<()> {
    require_root!();
    let hook = json!({"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1});
    let took = expect_create_fails(json!({"prestart": [hook]}))?;
    assert!(
        took < Duration::from_secs(15),
        "create waited {took:?} for a hook with a 1 s timeout"
    );
    Ok(())
}

#[test]
fn failing_create_runtime_hook_fails_create() -> Result<()> {
    require_root!();
    expect_create_fails(json!({"createRuntime": [sh_hook("exit 3")]}))?;
    Ok(())
}

#[test]
fn failing_create_container_hook_fails_create() -> Result<()> {
    require_root!();
    expect_create_fails(json!({"createContainer": [sh_hook("exit 1")]}))?;
    Ok(())
}

#[test]
fn missing_hook_binary_fails_create() -> Result<()> {
    require_root!();
    expect_create_fails(json!({"prestart": [{"path": "/nonexistent/hook"}]}))?;
    Ok(())
}

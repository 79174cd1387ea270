//! The runtime spec the engine writes (`keel_engine::spec`), run by keel-runtime and by runc:
//! from inside, a default container has Docker's capability set, seccomp filter, masked and
//! read-only paths, `/dev/shm`, hostname and `/etc` files; `--privileged` has all capabilities
//! and no filter; both runtimes see the same.

use std::fs;

use anyhow::{ensure, Result};
use keel_engine::spec::{self, EtcFiles, Settings, User};
use keel_integration_tests::binary::has_runc;
use keel_integration_tests::bundle::Bundle;
use keel_integration_tests::config::Config;
use keel_integration_tests::runtime::Runtime;
use keel_integration_tests::{ids, require, require_root};

/// What the probe prints: capability sets, seccomp mode, masks, the `/etc` files, the user.
const PROBE: &str = "grep -E '^(CapBnd|CapEff|Seccomp|NoNewPrivs):' /proc/self/status; \
    [ -c /proc/keys ] && echo keys=masked || echo keys=visible; \
    echo proc-sys-mounts=$(grep -c ' /proc/sys ' /proc/mounts); \
    echo sys=$(grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1); \
    grep -c shm /proc/mounts; hostname; cat /etc/hosts; id -u; id -G";

fn settings(dir: &std::path::Path, privileged: bool) -> Result<Settings> {
    let etc = EtcFiles {
        hosts: dir.join("hosts").display().to_string(),
        hostname: dir.join("hostname").display().to_string(),
        resolv_conf: dir.join("resolv.conf").display().to_string(),
    };
    fs::write(&etc.hosts, "127.0.0.1 localhost\n10.0.0.2 c0ffee\n")?;
    fs::write(&etc.hostname, "c0ffee\n")?;
    fs::write(&etc.resolv_conf, "nameserver 127.0.0.53\n")?;
    Ok(Settings {
        hostname: "c0ffee".into(),
        args: vec!["sh".into(), "-c".into(), PROBE.into()],
        env: spec::process::environment(&[], &[], "c0ffee", false),
        user: User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![20],
        },
        privileged,
        etc: Some(etc),
        cgroups_path: format!("/keel-engine-spec/{}", ids::unique_id("spec")),
        ..Default::default()
    })
}

fn run(runtime: &Runtime, privileged: bool) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let spec = spec::build(&settings(dir.path(), privileged)?)?;
    let bundle = Bundle::new(&Config::from_spec(spec))?;
    let id = ids::unique_id("engine-spec");
    let out = runtime.run(bundle.path(), &id)?;
    let _ = runtime.delete_force(&id);
    ensure!(
        out.status.success(),
        "{:?} failed: {}",
        runtime.binary(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_engines_spec_confines_as_docker_does() -> Result<()> {
    require_root!();
    let keel = Runtime::keel()?;
    let out = run(&keel, false)?;
    // Docker's 14 default capabilities, as the kernel shows them.
    ensure!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");
    // A non-root user keeps none effective, as under Docker.
    ensure!(out.contains("CapEff:\t0000000000000000"), "{out}");
    ensure!(out.contains("Seccomp:\t2"), "{out}");
    ensure!(
        out.contains("keys=masked") && out.contains("proc-sys-mounts=1") && out.contains("sys=ro"),
        "{out}"
    );
    ensure!(
        out.contains("\nc0ffee\n127.0.0.1 localhost\n10.0.0.2 c0ffee\n1000\n1000 20"),
        "{out}"
    );

    let privileged = run(&keel, true)?;
    ensure!(
        privileged.contains("Seccomp:\t0")
            && privileged.contains("sys=rw")
            && privileged.contains("proc-sys-mounts=0")
            && privileged.contains("keys=visible"),
        "{privileged}"
    );
    ensure!(
        !privileged.contains("CapBnd:\t00000000a80425fb"),
        "{privileged}"
    );

    require!(
        has_runc(),
        "runc is not installed (the reference to compare with)"
    );
    let runc = Runtime::runc()?;
    ensure!(
        run(&runc, false)? == out,
        "runc saw otherwise:\n{}\nkeel:\n{out}",
        run(&runc, false)?
    );
    ensure!(
        run(&runc, true)? == privileged,
        "runc saw the privileged container otherwise"
    );
    Ok(())
}

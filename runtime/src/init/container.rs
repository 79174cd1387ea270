//! Second stage of `create`: the container's init. Every step of the config in order, then it
//! waits on the exec fifo for `start`, runs startContainer hooks and execs the user's process.

use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use oci_spec::runtime::{Hook, Spec};

use super::process::{self, ProcessSetup};
use super::{chan, step, Result};
use crate::channel::{Channel, InitConfig, Message};
use crate::namespaces::Plan;
use crate::state::{ContainerState, Status};
use crate::{hooks, network, rootfs, sysctl};

/// The container's init: every step of the config, then wait for start and exec.
pub(super) fn run(
    channel: &Channel,
    config: &InitConfig,
    plan: &Plan,
    fifo: OwnedFd,
    idmapped: Vec<(usize, OwnedFd)>,
) -> Result<std::convert::Infallible> {
    let Message::HostPid(pid) = channel.expect("HostPid").map_err(chan("host pid"))? else {
        return Err(step("host pid")("unexpected message"));
    };
    let spec = &config.spec;
    let proc_spec = spec.process().clone().unwrap_or_default();
    let linux = spec.linux().as_ref();
    nix::unistd::setsid().map_err(step("setsid"))?;
    if plan.new.contains(CloneFlags::CLONE_NEWNET) {
        network::loopback_up().map_err(step("loopback"))?;
    }
    prepare_rootfs(config, plan, idmapped)?;
    run_runtime_hooks(channel, config)?;
    let container_hooks = |h: &oci_spec::runtime::Hooks| h.create_container().clone();
    run_container_hooks(
        config,
        pid,
        Status::Creating,
        spec.hooks().as_ref().and_then(container_hooks),
    )?;
    rootfs::enter(&config.rootfs, config.no_pivot).map_err(step("enter rootfs"))?;
    set_hostname(spec, plan)?;
    apply_sysctls(spec)?;
    rootfs::finish(spec).map_err(step("rootfs"))?;
    let setup = ProcessSetup {
        process: &proc_spec,
        seccomp: config.seccomp.as_ref(),
        preserve_fds: config.preserve_fds,
        keyring: (!config.no_new_keyring).then_some(config.id.as_str()),
        personality: linux.and_then(|l| l.personality().as_ref()),
        memory_policy: linux.and_then(|l| l.memory_policy().as_ref()),
    };
    let prepared = process::prepare(channel, &setup)?;
    channel.send(&Message::Ready).map_err(chan("ready"))?;
    wait_for_start(&fifo)?;
    let start_hooks = |h: &oci_spec::runtime::Hooks| h.start_container().clone();
    run_container_hooks(
        config,
        pid,
        Status::Running,
        spec.hooks().as_ref().and_then(start_hooks),
    )?;
    // The fifo stays open until exec closes it (close-on-exec): `start` waits for that.
    let result = process::exec(&setup, prepared);
    drop(fifo);
    result
}

fn prepare_rootfs(config: &InitConfig, plan: &Plan, idmapped: Vec<(usize, OwnedFd)>) -> Result<()> {
    if !plan.has(CloneFlags::CLONE_NEWNS) {
        return Err(step("rootfs")(
            "a mount namespace is required in linux.namespaces",
        ));
    }
    rootfs::prepare(&config.spec, &config.rootfs, idmapped).map_err(step("rootfs"))
}

/// prestart and createRuntime hooks run in the runtime's namespaces: the parent runs them.
fn run_runtime_hooks(channel: &Channel, config: &InitConfig) -> Result<()> {
    if !config.runtime_hooks {
        return Ok(());
    }
    channel.send(&Message::RunHooks).map_err(chan("hooks"))?;
    channel.expect("HooksDone").map_err(chan("hooks"))?;
    Ok(())
}

/// createContainer and startContainer hooks run here, in the container's namespaces.
fn run_container_hooks(
    config: &InitConfig,
    pid: i32,
    status: Status,
    list: Option<Vec<Hook>>,
) -> Result<()> {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let state = ContainerState {
        id: config.id.clone(),
        pid,
        pid_start_time: 0,
        bundle: config.bundle.clone(),
        rootfs: config.rootfs.clone(),
        created: String::new(),
        owner: String::new(),
        cgroup_path: String::new(),
        annotations: config.spec.annotations().clone().unwrap_or_default(),
        spec: Spec::default(),
    };
    let json = crate::state::oci_state_json(&state, status).to_string();
    hooks::run_hooks(&list, json.as_bytes()).map_err(step("hook"))
}

fn set_hostname(spec: &Spec, plan: &Plan) -> Result<()> {
    let uts = plan.has(CloneFlags::CLONE_NEWUTS);
    let names = [
        (spec.hostname(), "hostname"),
        (spec.domainname(), "domainname"),
    ];
    for (value, what) in names {
        let Some(name) = value.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        if !uts {
            return Err(step("hostname")(format!("{what} needs a uts namespace")));
        }
        let file = if what == "hostname" {
            "/proc/sys/kernel/hostname"
        } else {
            "/proc/sys/kernel/domainname"
        };
        if what == "hostname" {
            nix::unistd::sethostname(name).map_err(step("hostname"))?;
        } else {
            std::fs::write(file, name).map_err(step("domainname"))?;
        }
    }
    Ok(())
}

fn apply_sysctls(spec: &Spec) -> Result<()> {
    let sysctls = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    // The keys were checked against the container's namespaces by `config::load_bundle`.
    for (key, value) in sysctls {
        std::fs::write(sysctl::path(&key), value)
            .map_err(|e| step("sysctl")(format!("{key}: {e}")))?;
    }
    Ok(())
}

/// Blocks until `start` writes to the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(step("wait for start")(e)),
        }
    }
}

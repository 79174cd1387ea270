//! `process.ioPriority`, `process.scheduler` and `process.execCPUAffinity`: the I/O class, the
//! CPU scheduling policy and the CPUs of the container's processes.
//!
//! Every `apply_*` changes the calling thread (the runtime's init is single-threaded), and the
//! kernel hands all three down through fork and exec, so setting them in the init just before it
//! execs the user's process covers every process the container starts.
//!
//! `execCPUAffinity` is for `exec` only (the spec: "not applicable to the container's init
//! process"): `initial` before the new process joins the container's cgroup, `final` after. The
//! container's init gets [`reset_affinity`] instead, as runc does, so the runtime's own affinity
//! (a `taskset` of its caller) does not leak into the container.
//!
//! oci-spec 0.10 spells two scheduler flags unlike the spec and rejects the empty CPU list the
//! spec allows; [`normalize_process_json`] rewrites a `process` object before it is parsed.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    Process, Scheduler,
};
use serde_json::Value;

/// Errors applying the scheduling settings of `process`; each names its config field.
#[derive(Debug, thiserror::Error)]
pub enum SchedulingError {
    /// `ioPriority.priority` outside the kernel's 8 levels.
    #[error("process.ioPriority: priority {0} is out of range: use 0 (highest) to 7 (lowest)")]
    IoPriorityRange(i64),
    /// The kernel refused the I/O priority.
    #[error("process.ioPriority: ioprio_set {class} {priority}: {source}")]
    IoPriority {
        class: IOPriorityClass,
        priority: i64,
        source: nix::Error,
    },
    /// A scheduler value out of range, or one the policy does not take.
    #[error("process.scheduler: {0}")]
    InvalidScheduler(String),
    /// The kernel refused the scheduler.
    #[error("process.scheduler: sched_setattr {policy}: {source}{hint}")]
    Scheduler {
        policy: LinuxSchedulerPolicy,
        source: nix::Error,
        hint: &'static str,
    },
    /// A CPU list that does not parse.
    #[error("process.execCPUAffinity.{field}: invalid CPU list {value:?}: {why}")]
    CpuList {
        field: &'static str,
        value: String,
        why: String,
    },
    /// The kernel refused the CPU affinity.
    #[error("process.execCPUAffinity.{field}: sched_setaffinity {value}: {source}")]
    Affinity {
        field: &'static str,
        value: String,
        source: nix::Error,
    },
    /// Resetting the affinity to every CPU failed.
    #[error("cpu affinity: resetting to every CPU of the container's cpuset: {0}")]
    Reset(nix::Error),
}

/// The result of this module.
pub type Result<T> = std::result::Result<T, SchedulingError>;

/// Kernel I/O priority classes (`include/uapi/linux/ioprio.h`).
const IOPRIO_CLASS_RT: i32 = 1;
const IOPRIO_CLASS_BE: i32 = 2;
const IOPRIO_CLASS_IDLE: i32 = 3;
const IOPRIO_CLASS_SHIFT: i32 = 13;
/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, ...)`: the calling thread.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// `sched_attr` as of Linux 4.18 (`SCHED_ATTR_SIZE_VER1`): the utilization clamps are read
/// when a `SCHED_FLAG_UTIL_CLAMP_*` flag is given.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

const SCHED_ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

/// Applies `process.ioPriority` and `process.scheduler` to the calling thread.
///
/// Call it while the init still has its capabilities (a real-time class or policy and a
/// negative nice need `CAP_SYS_NICE`/`CAP_SYS_ADMIN`) and before a seccomp filter is loaded.
pub fn apply(process: &Process) -> Result<()> {
    if let Some(prio) = process.io_priority() {
        apply_io_priority(prio)?;
    }
    if let Some(scheduler) = process.scheduler() {
        apply_scheduler(scheduler)?;
    }
    Ok(())
}

/// Checks `ioPriority`, `scheduler` and `execCPUAffinity` without applying anything, so
/// `create` and `exec` can refuse a bad config before they make anything.
pub fn check(process: &Process) -> Result<()> {
    if let Some(prio) = process.io_priority() {
        io_priority_value(prio)?;
    }
    if let Some(scheduler) = process.scheduler() {
        sched_attr(scheduler)?;
    }
    let affinity = process.exec_cpu_affinity().as_ref();
    for (field, list) in [("initial", initial(affinity)), ("final", final_(affinity))] {
        if let Some(list) = list {
            cpu_set(field, list)?;
        }
    }
    Ok(())
}

/// Sets the calling thread's I/O priority (`ioprio_set`); children inherit it.
pub fn apply_io_priority(prio: &LinuxIOPriority) -> Result<()> {
    let value = io_priority_value(prio)?;
    ioprio_set_self(value).map_err(|source| SchedulingError::IoPriority {
        class: prio.class(),
        priority: prio.priority(),
        source,
    })
}

/// The `ioprio` value: class in the top bits, level below.
fn io_priority_value(prio: &LinuxIOPriority) -> Result<i32> {
    let level = prio.priority();
    if !(0..=7).contains(&level) {
        return Err(SchedulingError::IoPriorityRange(level));
    }
    let class = match prio.class() {
        IOPriorityClass::IoprioClassRt => IOPRIO_CLASS_RT,
        IOPriorityClass::IoprioClassBe => IOPRIO_CLASS_BE,
        IOPriorityClass::IoprioClassIdle => IOPRIO_CLASS_IDLE,
    };
    // `level` is 0-7 here, so the cast is exact.
    Ok((class << IOPRIO_CLASS_SHIFT) | level as i32)
}

#[allow(unsafe_code)]
fn ioprio_set_self(value: i32) -> nix::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    nix::Error::result(r).map(drop)
}

/// Sets the calling thread's scheduling policy and parameters (`sched_setattr`).
pub fn apply_scheduler(scheduler: &Scheduler) -> Result<()> {
    let attr = sched_attr(scheduler)?;
    sched_setattr_self(&attr).map_err(|source| SchedulingError::Scheduler {
        policy: *scheduler.policy(),
        source,
        hint: scheduler_hint(*scheduler.policy(), source),
    })
}

/// The `sched_attr` for `scheduler`, refusing what the policy does not take (as runc does).
fn sched_attr(scheduler: &Scheduler) -> Result<SchedAttr> {
    let policy = *scheduler.policy();
    let nice = scheduler.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(format!(
            "nice {nice} is out of range: use -20 to 19"
        )));
    }
    let priority = checked_priority(policy, scheduler.priority().unwrap_or(0))?;
    let deadline = [
        scheduler.runtime(),
        scheduler.deadline(),
        scheduler.period(),
    ];
    if policy != LinuxSchedulerPolicy::SchedDeadline && deadline.iter().any(|v| v.is_some()) {
        return Err(invalid(format!(
            "runtime, deadline and period are only for SCHED_DEADLINE, not {policy}"
        )));
    }
    Ok(SchedAttr {
        size: SCHED_ATTR_SIZE,
        sched_policy: policy_number(policy),
        sched_flags: flag_bits(scheduler.flags().as_deref().unwrap_or_default()),
        sched_nice: nice,
        sched_priority: priority,
        sched_runtime: scheduler.runtime().unwrap_or(0),
        sched_deadline: scheduler.deadline().unwrap_or(0),
        sched_period: scheduler.period().unwrap_or(0),
        ..SchedAttr::default()
    })
}

fn invalid(msg: String) -> SchedulingError {
    SchedulingError::InvalidScheduler(msg)
}

/// The static priority: 1-99 for the real-time policies, none for the others.
fn checked_priority(policy: LinuxSchedulerPolicy, priority: i32) -> Result<u32> {
    let realtime = matches!(
        policy,
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    match u32::try_from(priority) {
        Ok(p @ 1..=99) if realtime => Ok(p),
        _ if realtime => Err(invalid(format!(
            "{policy} needs a priority of 1 to 99, not {priority}"
        ))),
        Ok(0) => Ok(0),
        _ => Err(invalid(format!(
            "priority is only for SCHED_FIFO and SCHED_RR, not {policy}"
        ))),
    }
}

/// The kernel's number for a policy (`include/uapi/linux/sched.h`).
fn policy_number(policy: LinuxSchedulerPolicy) -> u32 {
    match policy {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

/// The `SCHED_FLAG_*` bits (`include/uapi/linux/sched.h`).
fn flag_bits(flags: &[LinuxSchedulerFlag]) -> u64 {
    flags.iter().fold(0, |bits, flag| {
        bits | match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        }
    })
}

/// What to do about the usual refusals, appended to the kernel's message.
fn scheduler_hint(policy: LinuxSchedulerPolicy, err: nix::Error) -> &'static str {
    use LinuxSchedulerPolicy::*;
    match (policy, err) {
        (SchedFifo | SchedRr, nix::Error::EPERM) => {
            " (real-time policies need CAP_SYS_NICE and, with RT group scheduling, a cgroup \
             with linux.resources.cpu.realtimeRuntime)"
        }
        (SchedDeadline, nix::Error::EPERM) => {
            " (SCHED_DEADLINE needs CAP_SYS_NICE and an affinity that covers every CPU of its \
             root domain)"
        }
        (SchedDeadline, nix::Error::EINVAL) => " (needs 1024 <= runtime <= deadline <= period)",
        (SchedDeadline, nix::Error::EBUSY) => " (not enough SCHED_DEADLINE bandwidth left)",
        (SchedIso, nix::Error::EINVAL) => " (Linux does not implement SCHED_ISO)",
        _ => "",
    }
}

#[allow(unsafe_code)]
fn sched_setattr_self(attr: &SchedAttr) -> nix::Result<()> {
    // SAFETY: `attr` is a live, `repr(C)` sched_attr whose `size` is its own size; the kernel
    // only reads it.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
    nix::Error::result(r).map(drop)
}

/// `exec`, before the new process joins the container's cgroup: moves `pid` (0: the calling
/// thread) to `execCPUAffinity.initial`, if set.
pub fn apply_initial_affinity(pid: Pid, affinity: Option<&ExecCPUAffinity>) -> Result<()> {
    match initial(affinity) {
        Some(list) => set_affinity(pid, "initial", list),
        None => Ok(()),
    }
}

/// `exec`, after the new process joined the container's cgroup: moves `pid` (0: the calling
/// thread) to `execCPUAffinity.final` if set; with no `execCPUAffinity` at all, resets it (as
/// runc does); with only `initial`, leaves it to the kernel, as the spec says.
pub fn apply_final_affinity(pid: Pid, affinity: Option<&ExecCPUAffinity>) -> Result<()> {
    match (initial(affinity), final_(affinity)) {
        (_, Some(list)) => set_affinity(pid, "final", list),
        (None, None) => reset_affinity(pid),
        (Some(_), None) => Ok(()),
    }
}

/// The container's init, after it joined its cgroup: allows `pid` (0: the calling thread)
/// every CPU (the kernel narrows the mask to the cgroup's cpuset), so the affinity of whoever
/// ran the runtime does not leak into the container.
pub fn reset_affinity(pid: Pid) -> Result<()> {
    sched_setaffinity(pid, &all_cpus()).map_err(SchedulingError::Reset)
}

fn initial(affinity: Option<&ExecCPUAffinity>) -> Option<&str> {
    let list = affinity.and_then(|a| a.initial().as_deref());
    list.filter(|l| !l.is_empty())
}

fn final_(affinity: Option<&ExecCPUAffinity>) -> Option<&str> {
    let list = affinity.and_then(|a| a.cpu_affinity_final().as_deref());
    list.filter(|l| !l.is_empty())
}

fn set_affinity(pid: Pid, field: &'static str, list: &str) -> Result<()> {
    let set = cpu_set(field, list)?;
    sched_setaffinity(pid, &set).map_err(|source| SchedulingError::Affinity {
        field,
        value: list.to_string(),
        source,
    })
}

/// A CPU list ("0-3,7") as a mask.
fn cpu_set(field: &'static str, list: &str) -> Result<CpuSet> {
    let bad = |why: String| SchedulingError::CpuList {
        field,
        value: list.to_string(),
        why,
    };
    let limit = u32::try_from(CpuSet::count()).unwrap_or(u32::MAX);
    let mut set = CpuSet::new();
    for cpu in parse_list(list, limit).map_err(bad)? {
        set.set(cpu as usize).map_err(|e| bad(e.to_string()))?;
    }
    Ok(set)
}

fn all_cpus() -> CpuSet {
    let mut set = CpuSet::new();
    for cpu in 0..CpuSet::count() {
        // Cannot fail: every index is below `count()`.
        let _ = set.set(cpu);
    }
    set
}

/// Parses the kernel's list format ("0-3,7": numbers and inclusive ranges, comma-separated),
/// as `execCPUAffinity` and `memoryPolicy.nodes` use it, into its members, each below `limit`.
pub fn parse_list(text: &str, limit: u32) -> std::result::Result<Vec<u32>, String> {
    let mut members = Vec::new();
    for item in text.split(',') {
        let (first, last) = parse_range(item)?;
        if last >= limit {
            return Err(format!(
                "{last} is above the highest supported, {}",
                limit - 1
            ));
        }
        members.extend(first..=last);
    }
    Ok(members)
}

fn parse_range(item: &str) -> std::result::Result<(u32, u32), String> {
    let (first, last) = item.split_once('-').unwrap_or((item, item));
    let number = |s: &str| {
        let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let n = s.parse::<u32>().ok().filter(|_| digits);
        n.ok_or_else(|| format!("{item:?} is not a number or a range like 0-3"))
    };
    let (first, last) = (number(first)?, number(last)?);
    if first > last {
        return Err(format!("range {item} goes backwards"));
    }
    Ok((first, last))
}

/// Rewrites a runtime-spec `process` object (config.json's, or exec's process.json) the way
/// oci-spec 0.10 parses what the spec means: the flags `SCHED_FLAG_RESET_ON_FORK` and
/// `SCHED_FLAG_DL_OVERRUN` under oci-spec's names, and an empty `execCPUAffinity` list (the
/// spec's "omitted or empty") removed. Call it on the JSON before deserializing.
pub fn normalize_process_json(process: &mut Value) {
    let flags = process.pointer_mut("/scheduler/flags");
    for flag in flags.and_then(Value::as_array_mut).into_iter().flatten() {
        let renamed = match flag.as_str() {
            Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
            Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
            _ => continue,
        };
        *flag = Value::from(renamed);
    }
    if let Some(affinity) = process
        .get_mut("execCPUAffinity")
        .and_then(Value::as_object_mut)
    {
        affinity.retain(|_, list| list.as_str() != Some(""));
    }
}

/// [`normalize_process_json`] on the `process` of a whole config.json.
pub fn normalize_config_json(config: &mut Value) {
    if let Some(process) = config.get_mut("process") {
        normalize_process_json(process);
    }
}

#[cfg(test)]
mod tests;

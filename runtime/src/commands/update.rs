//! `update`: new cgroup limits for a container that has not stopped, as runc's `update` sets
//! them: from a runtime-spec `linux.resources` JSON file (`-r FILE`, `-r -` for stdin; the flags
//! are then ignored) or from the flags. Only what runc updates is taken (memory limit,
//! reservation and swap; cpu shares, quota, period, realtime, cpuset; blkio weight; pids;
//! unified); anything not given, or given as 0, is left as it is.
//!
//! The new values are checked against the host and the container's current usage before
//! anything is written, then applied, then merged into `spec.linux.resources` of state.json, all
//! under the container's lock.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, Spec,
};

use crate::cgroups::Cgroup;
use crate::cli::UpdateArgs;
use crate::commands::pause::cgroup_of;
use crate::state::{StateDir, Status};
use crate::{Error, Result};

/// The range the kernel keeps cpu.shares in (v1 clamps silently; runc refuses, and so do we).
const SHARES: (u64, u64) = (2, 262_144);
/// CFS period bounds in µs (1 ms to 1 s), and the smallest quota.
const CFS_PERIOD: (u64, u64) = (1_000, 1_000_000);
const MIN_CFS_QUOTA: i64 = 1_000;
/// blkio weight bounds.
const BLKIO_WEIGHT: (u16, u16) = (10, 1_000);

/// Applies the new resources to container `args.id`.
pub fn update(root: &Path, args: &UpdateArgs) -> Result<()> {
    let resources = updatable(requested(args)?);
    let dir = StateDir::open(root, &args.id)?;
    let _lock = dir.lock()?;
    let mut st = dir.load()?;
    let status = dir.status(&st);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: args.id.clone(),
            status: status.to_string(),
            what: "only a created, running or paused container can be updated".into(),
        });
    }
    let cgroup = cgroup_of(&st)?;
    check(&cgroup, &resources)?;
    cgroup.update(&resources)?;
    store(&mut st.spec, &resources);
    Ok(dir.save(&st)?)
}

/// The resources asked for: the file's, or those of the flags.
fn requested(args: &UpdateArgs) -> Result<LinuxResources> {
    match &args.resources {
        Some(path) => from_file(path),
        None => from_flags(args),
    }
}

/// A `linux.resources` object from `path`, or from stdin for `-`.
fn from_file(path: &Path) -> Result<LinuxResources> {
    let stdin = path == Path::new("-");
    let shown = if stdin {
        "stdin".into()
    } else {
        path.display().to_string()
    };
    let mut text = String::new();
    let read = if stdin {
        io::stdin().read_to_string(&mut text).map(drop)
    } else {
        fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| Error::sys(format!("update: reading resources from {shown}"), e))?;
    serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{shown} is not a valid linux.resources JSON object: {e}"
        ))
    })
}

/// The resources of runc's update flags.
fn from_flags(a: &UpdateArgs) -> Result<LinuxResources> {
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(a.cpu_share)
        .set_quota(a.cpu_quota)
        .set_period(a.cpu_period)
        .set_realtime_runtime(a.cpu_rt_runtime)
        .set_realtime_period(a.cpu_rt_period)
        .set_cpus(a.cpuset_cpus.clone())
        .set_mems(a.cpuset_mems.clone());
    let mut memory = LinuxMemory::default();
    memory
        .set_limit(ram_flag("memory", a.memory.as_deref())?)
        .set_reservation(ram_flag(
            "memory-reservation",
            a.memory_reservation.as_deref(),
        )?)
        .set_swap(ram_flag("memory-swap", a.memory_swap.as_deref())?);
    let mut blkio = LinuxBlockIo::default();
    blkio.set_weight(a.blkio_weight);
    let mut resources = LinuxResources::default();
    resources
        .set_cpu(Some(cpu))
        .set_memory(Some(memory))
        .set_block_io(Some(blkio))
        .set_pids(a.pids_limit.map(pids));
    Ok(resources)
}

fn pids(limit: i64) -> LinuxPids {
    let mut pids = LinuxPids::default();
    pids.set_limit(limit);
    pids
}

fn ram_flag(flag: &str, value: Option<&str>) -> Result<Option<i64>> {
    value
        .map(|v| parse_ram(v).map_err(|reason| invalid(format!("--{flag} {v:?}: {reason}"))))
        .transpose()
}

/// A size as runc (docker's go-units `RAMInBytes`) reads it: `-1`, or a number with an optional
/// binary unit: `512`, `512k`, `1.5g`, `64MiB`, `2 GB`.
pub fn parse_ram(value: &str) -> std::result::Result<i64, String> {
    if value == "-1" {
        return Ok(-1);
    }
    let end = value
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(end);
    let valid_number = number.split('.').all(|p| !p.is_empty()) && number.matches('.').count() <= 1;
    let size: f64 = match number.parse() {
        Ok(n) if valid_number => n,
        _ => return Err("invalid size: expected a number of bytes, with k, m, g, t or p".into()),
    };
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let (shift, rest) = match unit.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (10, &unit[1..]),
        Some('m') => (20, &unit[1..]),
        Some('g') => (30, &unit[1..]),
        Some('t') => (40, &unit[1..]),
        Some('p') => (50, &unit[1..]),
        _ => (0, unit),
    };
    let rest = rest.strip_prefix(['i', 'I']).unwrap_or(rest);
    let rest = rest.strip_prefix(['b', 'B']).unwrap_or(rest);
    if !rest.is_empty() {
        return Err(format!("invalid size: unknown unit {unit:?}"));
    }
    let bytes = size * (1u64 << shift) as f64;
    if bytes >= i64::MAX as f64 {
        return Err("invalid size: too large".into());
    }
    Ok(bytes as i64)
}

/// Keeps what runc's update sets, dropping zeros and empty strings, which runc treats as "leave
/// it as it is" (and a file may carry for fields it does not mean to change).
fn updatable(asked: LinuxResources) -> LinuxResources {
    let nonzero_i = |v: Option<i64>| v.filter(|v| *v != 0);
    let nonzero_u = |v: Option<u64>| v.filter(|v| *v != 0);
    let mut out = LinuxResources::default();
    if let Some(m) = asked.memory() {
        let mut memory = LinuxMemory::default();
        memory
            .set_limit(nonzero_i(m.limit()))
            .set_reservation(nonzero_i(m.reservation()))
            .set_swap(nonzero_i(m.swap()));
        out.set_memory(Some(memory).filter(|m| *m != LinuxMemory::default()));
    }
    if let Some(c) = asked.cpu() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(nonzero_u(c.shares()))
            .set_quota(nonzero_i(c.quota()))
            .set_period(nonzero_u(c.period()))
            .set_realtime_runtime(nonzero_i(c.realtime_runtime()))
            .set_realtime_period(nonzero_u(c.realtime_period()))
            .set_cpus(c.cpus().clone().filter(|s| !s.is_empty()))
            .set_mems(c.mems().clone().filter(|s| !s.is_empty()));
        out.set_cpu(Some(cpu).filter(|c| *c != LinuxCpu::default()));
    }
    if let Some(weight) = asked.block_io().as_ref().and_then(|b| b.weight()) {
        let mut blkio = LinuxBlockIo::default();
        blkio.set_weight(Some(weight).filter(|w| *w != 0));
        out.set_block_io(Some(blkio).filter(|b| b.weight().is_some()));
    }
    out.set_pids(asked.pids().filter(|p| p.limit() != 0));
    out.set_unified(asked.unified().clone().filter(|u| !u.is_empty()));
    out
}

/// Refuses values the kernel would refuse or silently change, before anything is written.
fn check(cgroup: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let Some(cpu) = r.cpu() {
        check_cpu(cpu)?;
        check_cpuset(cgroup, cpu)?;
    }
    if let Some(memory) = r.memory() {
        check_memory(cgroup, memory)?;
    }
    if let Some(weight) = r.block_io().as_ref().and_then(|b| b.weight()) {
        check_blkio(cgroup, weight)?;
    }
    Ok(())
}

fn check_cpu(cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|s| !(SHARES.0..=SHARES.1).contains(s)) {
        let (min, max) = SHARES;
        return Err(invalid(format!(
            "cpu shares {shares} out of range: the kernel allows {min} to {max}"
        )));
    }
    if let Some(p) = cpu
        .period()
        .filter(|p| !(CFS_PERIOD.0..=CFS_PERIOD.1).contains(p))
    {
        let (min, max) = CFS_PERIOD;
        return Err(invalid(format!(
            "cpu period {p} out of range: the kernel allows {min} to {max} (µs)"
        )));
    }
    if let Some(q) = cpu.quota().filter(|q| *q != -1 && *q < MIN_CFS_QUOTA) {
        return Err(invalid(format!(
            "cpu quota {q} invalid: -1 (no limit) or at least {MIN_CFS_QUOTA} µs"
        )));
    }
    if let (Some(runtime), Some(period)) = (cpu.realtime_runtime(), cpu.realtime_period()) {
        if runtime > 0 && runtime.unsigned_abs() > period {
            return Err(invalid(format!(
                "cpu realtime runtime {runtime} exceeds the realtime period {period}"
            )));
        }
    }
    if cpu.realtime_runtime().is_some_and(|r| r < -1) {
        return Err(invalid(
            "cpu realtime runtime must be -1 or at least 0".into(),
        ));
    }
    Ok(())
}

/// cpuset.cpus/mems must parse and stay within what the parent cgroup (else the host) has.
fn check_cpuset(cgroup: &Cgroup, cpu: &LinuxCpu) -> Result<()> {
    let lists = [
        ("cpus", cpu.cpus(), "/sys/devices/system/cpu/online"),
        ("mems", cpu.mems(), "/sys/devices/system/node/online"),
    ];
    for (what, list, host_file) in lists {
        let Some(list) = list else { continue };
        let asked =
            parse_list(list).map_err(|e| invalid(format!("cpuset {what} {list:?}: {e}")))?;
        let allowed = allowed_cpuset(cgroup, what, host_file);
        if let Some(missing) = asked.iter().find(|n| !allowed.contains(n)) {
            return Err(invalid(format!(
                "cpuset {what} {list:?}: {missing} is not available (have {})",
                format_list(&allowed)
            )));
        }
    }
    Ok(())
}

/// The cpus or mems the container's parent cgroup has; the host's when there is no parent.
fn allowed_cpuset(cgroup: &Cgroup, what: &str, host_file: &str) -> BTreeSet<u32> {
    let parent = Path::new(cgroup.path())
        .parent()
        .and_then(|p| Cgroup::load(&p.to_string_lossy()).ok());
    let from_parent = parent.and_then(|p| {
        [format!("cpuset.{what}.effective"), format!("cpuset.{what}")]
            .iter()
            .find_map(|f| p.read_file("cpuset", f).ok().flatten())
            .filter(|t| !t.trim().is_empty())
    });
    let text = from_parent
        .or_else(|| fs::read_to_string(host_file).ok())
        .unwrap_or_else(|| "0".to_string());
    parse_list(text.trim()).unwrap_or_default()
}

/// A kernel list (`0-3,8,10-11`) as a set.
fn parse_list(list: &str) -> std::result::Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    for part in list.split(',').map(str::trim) {
        let number = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("{s:?} is not a number"))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => (number(part)?, number(part)?),
        };
        if lo > hi {
            return Err(format!("range {part:?} is reversed"));
        }
        set.extend(lo..=hi);
    }
    Ok(set)
}

fn format_list(set: &BTreeSet<u32>) -> String {
    let items: Vec<String> = set.iter().map(u32::to_string).collect();
    items.join(",")
}

/// The memory limit must be -1 or positive and not below the current usage; memory+swap must
/// not be below the memory limit (cgroup v1 refuses it).
fn check_memory(cgroup: &Cgroup, memory: &LinuxMemory) -> Result<()> {
    for (what, value) in [
        ("memory limit", memory.limit()),
        ("memory+swap limit", memory.swap()),
        ("memory reservation", memory.reservation()),
    ] {
        if let Some(v) = value.filter(|v| *v < -1) {
            return Err(invalid(format!(
                "{what} {v} invalid: -1 (no limit) or bytes"
            )));
        }
    }
    let usage = read_number(cgroup, &["memory.usage_in_bytes", "memory.current"])?;
    if let (Some(limit), Some(usage)) = (positive(memory.limit()), usage) {
        if limit < usage {
            return Err(invalid(format!(
                "memory limit {limit} is below the container's current memory usage {usage}"
            )));
        }
    }
    let limit = match memory.limit() {
        Some(-1) if positive(memory.swap()).is_some() => {
            return Err(invalid(
                "memory+swap limit must be -1 too when the memory limit is -1".into(),
            ))
        }
        Some(-1) => None,
        Some(limit) => positive(Some(limit)),
        None => read_number(cgroup, &["memory.limit_in_bytes"])?,
    };
    let swap = match memory.swap() {
        Some(s) => positive(Some(s)),
        None => read_number(cgroup, &["memory.memsw.limit_in_bytes"])?,
    };
    if let (Some(limit), Some(swap)) = (limit, swap) {
        if swap < limit {
            return Err(invalid(format!(
                "memory+swap limit {swap} is below the memory limit {limit}: \
                 raise --memory-swap (or memory.swap) with the limit"
            )));
        }
    }
    Ok(())
}

fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0)
}

/// The first of `files` the memory controller has, as a number ("max" reads as none).
fn read_number(cgroup: &Cgroup, files: &[&str]) -> Result<Option<u64>> {
    for file in files {
        if let Some(text) = cgroup.read_file("memory", file)? {
            return Ok(text.trim().parse().ok());
        }
    }
    Ok(None)
}

/// blkio weight: within the kernel's range, and only where the I/O scheduler has the file.
fn check_blkio(cgroup: &Cgroup, weight: u16) -> Result<()> {
    let (min, max) = BLKIO_WEIGHT;
    if !(min..=max).contains(&weight) {
        return Err(invalid(format!(
            "blkio weight {weight} out of range: {min} to {max}"
        )));
    }
    for file in ["blkio.weight", "io.bfq.weight"] {
        if cgroup.read_file("blkio", file)?.is_some() {
            return Ok(());
        }
    }
    Err(invalid(
        "blkio weight is not supported on this host: its I/O scheduler has no weight \
         (no blkio.weight)"
            .into(),
    ))
}

/// Merges the applied values into the stored spec, so later reads (and `state`) see them.
fn store(spec: &mut Spec, new: &LinuxResources) {
    let stored = spec
        .linux_mut()
        .get_or_insert_with(Linux::default)
        .resources_mut()
        .get_or_insert_with(LinuxResources::default);
    if let Some(m) = new.memory() {
        let old = stored.memory().unwrap_or_default();
        let mut memory = old;
        memory
            .set_limit(m.limit().or(old.limit()))
            .set_reservation(m.reservation().or(old.reservation()))
            .set_swap(m.swap().or(old.swap()));
        stored.set_memory(Some(memory));
    }
    if let Some(c) = new.cpu() {
        let old = stored.cpu().clone().unwrap_or_default();
        let mut cpu = old.clone();
        cpu.set_shares(c.shares().or(old.shares()))
            .set_quota(c.quota().or(old.quota()))
            .set_period(c.period().or(old.period()))
            .set_realtime_runtime(c.realtime_runtime().or(old.realtime_runtime()))
            .set_realtime_period(c.realtime_period().or(old.realtime_period()))
            .set_cpus(c.cpus().clone().or_else(|| old.cpus().clone()))
            .set_mems(c.mems().clone().or_else(|| old.mems().clone()));
        stored.set_cpu(Some(cpu));
    }
    if let Some(weight) = new.block_io().as_ref().and_then(|b| b.weight()) {
        let mut blkio = stored.block_io().clone().unwrap_or_default();
        blkio.set_weight(Some(weight));
        stored.set_block_io(Some(blkio));
    }
    if let Some(pids) = new.pids() {
        stored.set_pids(Some(*pids));
    }
    if let Some(unified) = new.unified() {
        let mut merged = stored.unified().clone().unwrap_or_default();
        merged.extend(unified.clone());
        stored.set_unified(Some(merged));
    }
}

fn invalid(msg: String) -> Error {
    Error::sys("update", io::Error::new(io::ErrorKind::InvalidInput, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_runc_reads_them() {
        assert_eq!(parse_ram("-1"), Ok(-1));
        assert_eq!(parse_ram("512"), Ok(512));
        assert_eq!(parse_ram("512k"), Ok(512 << 10));
        assert_eq!(parse_ram("64m"), Ok(64 << 20));
        assert_eq!(parse_ram("64MiB"), Ok(64 << 20));
        assert_eq!(parse_ram("1.5g"), Ok(3 << 29));
        assert_eq!(parse_ram("2 GB"), Ok(2 << 30));
        assert_eq!(parse_ram("1T"), Ok(1 << 40));
        for bad in ["", "m", "abc", "-2", "1x", "1.2.3", "1..2", "12mbx", "1e3"] {
            assert!(parse_ram(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zeros_mean_unchanged() {
        let asked: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 0, "swap": 0, "swappiness": 10},
            "cpu": {"shares": 0, "quota": 20000, "cpus": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0},
            "devices": [{"allow": false, "access": "rwm"}]
        }))
        .expect("resources");
        let kept = updatable(asked);
        assert!(kept.memory().is_none());
        assert!(kept.pids().is_none() && kept.block_io().is_none() && kept.devices().is_none());
        let cpu = kept.cpu().clone().expect("cpu");
        assert_eq!(
            (cpu.quota(), cpu.shares(), cpu.cpus().clone()),
            (Some(20000), None, None)
        );
    }

    #[test]
    fn cpu_values_are_checked() {
        let cpu = |json| serde_json::from_value::<LinuxCpu>(json).expect("cpu");
        assert!(check_cpu(&cpu(serde_json::json!({"shares": 1}))).is_err());
        assert!(check_cpu(&cpu(serde_json::json!({"shares": 1024}))).is_ok());
        assert!(check_cpu(&cpu(serde_json::json!({"period": 10}))).is_err());
        assert!(check_cpu(&cpu(serde_json::json!({"quota": -1}))).is_ok());
        assert!(check_cpu(&cpu(serde_json::json!({"quota": 5}))).is_err());
        let rt = serde_json::json!({"realtimeRuntime": 2000, "realtimePeriod": 1000});
        assert!(check_cpu(&cpu(rt)).is_err());
    }

    #[test]
    fn lists_parse() {
        assert_eq!(
            parse_list("0-2,5").expect("list"),
            BTreeSet::from([0, 1, 2, 5])
        );
        assert!(parse_list("2-1").is_err());
        assert!(parse_list("a").is_err());
        assert!(parse_list("").is_err());
    }

    #[test]
    fn stored_resources_keep_what_was_not_updated() {
        let mut spec = Spec::default();
        let first: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1000, "reservation": 500}, "cpu": {"shares": 512}
        }))
        .expect("first");
        store(&mut spec, &first);
        let second: LinuxResources = serde_json::from_value(
            serde_json::json!({"memory": {"limit": 2000}, "pids": {"limit": 9}}),
        )
        .expect("second");
        store(&mut spec, &second);
        let doc = serde_json::to_value(&spec).expect("json");
        let r = &doc["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 2000);
        assert_eq!(r["memory"]["reservation"], 500);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["pids"]["limit"], 9);
    }
}

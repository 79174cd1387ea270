//! `events`: a container's resource usage and OOM events as JSON lines, in runc's layout
//! (`{"type":"stats","id":ID,"data":{...}}`, `{"type":"oom","id":ID}`; the data is runc's
//! `types.Stats`: cpu, cpuset, memory, pids, blkio, hugetlb, intel_rdt, network_interfaces).
//!
//! `--stats` prints one stats event. Otherwise a stats event is printed every `--interval` and
//! an oom event each time the kernel reports the cgroup out of memory, until the container
//! stops (its init exits) or its cgroup is removed.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroups::events::OomWait;
use crate::cgroups::Cgroup;
use crate::cli::EventsArgs;
use crate::commands::pause::cgroup_of;
use crate::state::{process_alive, ContainerState, StateDir, Status};
use crate::{Error, Result};

/// How often the container is checked for having stopped while waiting for events.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// One line of output.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub typ: &'a str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// runc's `types.Stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// Always null: runc fills it only for configured network interfaces, which we do not make.
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// CPU time (ns) and CFS throttling.
#[derive(Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// runc's `types.CpuUsage`, in nanoseconds.
#[derive(Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// runc's `types.Throttling`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// runc's `types.CPUSet` (cgroup v1 cpuset files).
#[derive(Debug, Default, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

/// runc's `types.Memory`.
#[derive(Debug, Default, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Every counter of `memory.stat`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// runc's `types.MemoryEntry`, in bytes.
#[derive(Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// runc's `types.Pids` (a limit of "max" is 0, left out).
#[derive(Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// runc's `types.Blkio`.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// runc's `types.BlkioEntry`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// runc's `types.Hugetlb`, per page size.
#[derive(Debug, Default, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Always empty: no Intel RDT support.
#[derive(Debug, Default, Serialize)]
pub struct IntelRdt {}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Prints the events of container `args.id`.
pub fn events(root: &Path, args: &EventsArgs) -> Result<()> {
    let interval = parse_duration(&args.interval)
        .ok_or_else(|| invalid(format!("invalid --interval {:?}", args.interval)))?;
    if interval.is_zero() {
        return Err(invalid("duration interval must be greater than 0".into()));
    }
    let dir = StateDir::open(root, &args.id)?;
    let st = dir.load()?;
    let status = dir.status(&st);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: args.id.clone(),
            status: status.to_string(),
            what: "there is nothing to report on".into(),
        });
    }
    let cgroup = cgroup_of(&st)?;
    let mut out = io::stdout().lock();
    if args.stats {
        let stats = read_stats(&cgroup)?;
        return emit(&mut out, &stats_event(&args.id, stats));
    }
    watch(&st, &cgroup, interval, &mut out)
}

/// Stats every `interval` and OOM events until the container stops or its cgroup goes.
fn watch(
    st: &ContainerState,
    cgroup: &Cgroup,
    interval: Duration,
    out: &mut impl Write,
) -> Result<()> {
    let mut oom = cgroup.watch_oom()?;
    let oom_event = Event {
        typ: "oom",
        id: &st.id,
        data: None,
    };
    let mut next_stats = Instant::now() + interval;
    loop {
        let wait = next_stats
            .saturating_duration_since(Instant::now())
            .min(LIVENESS_CHECK);
        match oom
            .wait(wait)
            .map_err(|e| Error::sys("events: waiting for OOM events", e))?
        {
            OomWait::Oom => emit(out, &oom_event)?,
            OomWait::Gone => return Ok(()),
            OomWait::Timeout => {}
        }
        if Instant::now() >= next_stats {
            match read_stats(cgroup) {
                Ok(stats) => emit(out, &stats_event(&st.id, stats))?,
                Err(e) => tracing::warn!(error = %e, "events: reading stats"),
            }
            next_stats = (next_stats + interval).max(Instant::now());
        }
        if !process_alive(st.pid, st.pid_start_time) {
            // The kernel signals an OOM before the killed process is gone: report what is left.
            while oom.wait(Duration::ZERO).ok() == Some(OomWait::Oom) {
                emit(out, &oom_event)?;
            }
            return Ok(());
        }
    }
}

fn stats_event(id: &str, stats: Stats) -> Event<'_> {
    Event {
        typ: "stats",
        id,
        data: Some(stats),
    }
}

/// Writes one event as a JSON line, flushed so a reader sees it at once.
fn emit(out: &mut impl Write, event: &Event) -> Result<()> {
    let write = |out: &mut dyn Write| -> io::Result<()> {
        serde_json::to_writer(&mut *out, event)?;
        out.write_all(b"\n")?;
        out.flush()
    };
    write(out).map_err(|e| Error::sys("events: writing the output", e))
}

/// Reads every counter of the container's cgroup.
pub fn read_stats(cgroup: &Cgroup) -> Result<Stats> {
    Ok(Stats {
        cpu: read_cpu(cgroup)?,
        cpuset: read_cpuset(cgroup)?,
        memory: read_memory(cgroup)?,
        pids: read_pids(cgroup)?,
        blkio: read_blkio(cgroup)?,
        hugetlb: read_hugetlb(cgroup)?,
        intel_rdt: IntelRdt {},
        network_interfaces: None,
    })
}

/// `key value` lines (cpu.stat, memory.stat, cpuacct.stat) as a map.
fn key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// A number file; "max" and anything unparsable read as `max_as`.
fn number(text: Option<String>, max_as: u64) -> u64 {
    text.map(|t| t.trim().parse().unwrap_or(max_as))
        .unwrap_or_default()
}

fn read_cpu(cg: &Cgroup) -> Result<Cpu> {
    let stat = cg.read_file("cpu", "cpu.stat")?.map(|t| key_values(&t));
    let stat = stat.unwrap_or_default();
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let v2 = stat.contains_key("usage_usec");
    let throttling = Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: if v2 {
            get("throttled_usec") * 1000
        } else {
            get("throttled_time")
        },
    };
    let usage = if v2 {
        CpuUsage {
            total: get("usage_usec") * 1000,
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
            ..CpuUsage::default()
        }
    } else {
        read_cpuacct(cg)?
    };
    Ok(Cpu { usage, throttling })
}

/// cgroup v1 cpuacct: totals in ns, user/system in clock ticks, per-CPU in ns.
fn read_cpuacct(cg: &Cgroup) -> Result<CpuUsage> {
    let ticks = key_values(&cg.read_file("cpuacct", "cpuacct.stat")?.unwrap_or_default());
    let tick_ns = 1_000_000_000 / clock_ticks();
    let mut usage = CpuUsage {
        total: number(cg.read_file("cpuacct", "cpuacct.usage")?, 0),
        kernel: ticks.get("system").copied().unwrap_or(0) * tick_ns,
        user: ticks.get("user").copied().unwrap_or(0) * tick_ns,
        percpu: cg
            .read_file("cpuacct", "cpuacct.usage_percpu")?
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect(),
        ..CpuUsage::default()
    };
    // "cpu user system" then one row per CPU; absent before Linux 4.7.
    let all = cg
        .read_file("cpuacct", "cpuacct.usage_all")?
        .unwrap_or_default();
    for row in all.lines().skip(1) {
        let cols: Vec<u64> = row
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if let [_, user, kernel] = cols[..] {
            usage.percpu_user.push(user);
            usage.percpu_kernel.push(kernel);
        }
    }
    Ok(usage)
}

/// USER_HZ, the unit of cpuacct.stat.
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

fn read_cpuset(cg: &Cgroup) -> Result<CpuSet> {
    let flag = |f: &str| -> Result<u64> { Ok(number(cg.read_file("cpuset", f)?, 0)) };
    let list = |f: &str| -> Result<Vec<u16>> {
        Ok(expand_list(&cg.read_file("cpuset", f)?.unwrap_or_default()))
    };
    let level = cg.read_file("cpuset", "cpuset.sched_relax_domain_level")?;
    Ok(CpuSet {
        cpus: list("cpuset.cpus")?,
        cpu_exclusive: flag("cpuset.cpu_exclusive")?,
        mems: list("cpuset.mems")?,
        mem_hardwall: flag("cpuset.mem_hardwall")?,
        mem_exclusive: flag("cpuset.mem_exclusive")?,
        memory_migrate: flag("cpuset.memory_migrate")?,
        memory_spread_page: flag("cpuset.memory_spread_page")?,
        memory_spread_slab: flag("cpuset.memory_spread_slab")?,
        memory_pressure: flag("cpuset.memory_pressure")?,
        sched_load_balance: flag("cpuset.sched_load_balance")?,
        sched_relax_domain_level: level.and_then(|l| l.trim().parse().ok()).unwrap_or(0),
    })
}

/// `0-2,5` as `[0, 1, 2, 5]`; malformed parts are skipped.
fn expand_list(list: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
            out.extend(lo..=hi);
        }
    }
    out
}

fn read_memory(cg: &Cgroup) -> Result<Memory> {
    let raw = key_values(&cg.read_file("memory", "memory.stat")?.unwrap_or_default());
    if cg.read_file("memory", "memory.usage_in_bytes")?.is_none() {
        return read_memory_v2(cg, raw);
    }
    Ok(Memory {
        cache: raw.get("cache").copied().unwrap_or(0),
        usage: memory_entry_v1(cg, "memory.")?,
        swap: memory_entry_v1(cg, "memory.memsw.")?,
        kernel: memory_entry_v1(cg, "memory.kmem.")?,
        kernel_tcp: memory_entry_v1(cg, "memory.kmem.tcp.")?,
        raw,
    })
}

/// One v1 family of counters: `<prefix>{limit_in_bytes,usage_in_bytes,max_usage_in_bytes,failcnt}`.
fn memory_entry_v1(cg: &Cgroup, prefix: &str) -> Result<MemoryEntry> {
    let read = |name: &str| -> Result<u64> {
        Ok(number(
            cg.read_file("memory", &format!("{prefix}{name}"))?,
            u64::MAX,
        ))
    };
    Ok(MemoryEntry {
        limit: read("limit_in_bytes")?,
        usage: read("usage_in_bytes")?,
        max: read("max_usage_in_bytes")?,
        failcnt: read("failcnt")?,
    })
}

/// cgroup v2, as runc reports it: swap counts memory plus swap, like v1's memsw.
fn read_memory_v2(cg: &Cgroup, raw: BTreeMap<String, u64>) -> Result<Memory> {
    let read = |f: &str| -> Result<u64> { Ok(number(cg.read_file("memory", f)?, u64::MAX)) };
    let usage = MemoryEntry {
        limit: read("memory.max")?,
        usage: read("memory.current")?,
        max: read("memory.peak")?,
        failcnt: 0,
    };
    let swap = MemoryEntry {
        limit: read("memory.swap.max")?.saturating_add(usage.limit),
        usage: read("memory.swap.current")?.saturating_add(usage.usage),
        max: 0,
        failcnt: 0,
    };
    Ok(Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        raw,
        ..Memory::default()
    })
}

fn read_pids(cg: &Cgroup) -> Result<Pids> {
    Ok(Pids {
        current: number(cg.read_file("pids", "pids.current")?, 0),
        limit: number(cg.read_file("pids", "pids.max")?, 0),
    })
}

/// v1 blkio, choosing the first group of files the kernel has, as runc does: BFQ's, CFQ's,
/// then the throttling layer's (recursive, then not).
fn read_blkio(cg: &Cgroup) -> Result<Blkio> {
    if let Some(io_stat) = cg.read_file("blkio", "io.stat")? {
        return Ok(blkio_v2(&io_stat));
    }
    let groups: [&[&str]; 4] = [
        &[
            "blkio.bfq.io_serviced_recursive",
            "blkio.bfq.io_service_bytes_recursive",
        ],
        &[
            "blkio.io_serviced_recursive",
            "blkio.io_service_bytes_recursive",
            "blkio.io_queued_recursive",
            "blkio.io_service_time_recursive",
            "blkio.io_wait_time_recursive",
            "blkio.io_merged_recursive",
            "blkio.time_recursive",
            "blkio.sectors_recursive",
        ],
        &[
            "blkio.throttle.io_serviced_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ],
        &[
            "blkio.throttle.io_serviced",
            "blkio.throttle.io_service_bytes",
        ],
    ];
    for group in groups {
        let Some(first) = cg.read_file("blkio", group[0])? else {
            continue;
        };
        let mut blkio = Blkio::default();
        *blkio_field(&mut blkio, group[0]) = blkio_entries(&first);
        for file in &group[1..] {
            let text = cg.read_file("blkio", file)?.unwrap_or_default();
            *blkio_field(&mut blkio, file) = blkio_entries(&text);
        }
        return Ok(blkio);
    }
    Ok(Blkio::default())
}

/// Where the entries of one blkio file go.
fn blkio_field<'a>(b: &'a mut Blkio, file: &str) -> &'a mut Vec<BlkioEntry> {
    let name = file.rsplit('.').next().unwrap_or_default();
    match name {
        "io_serviced_recursive" | "io_serviced" => &mut b.io_serviced_recursive,
        "io_queued_recursive" => &mut b.io_queued_recursive,
        "io_service_time_recursive" => &mut b.io_service_time_recursive,
        "io_wait_time_recursive" => &mut b.io_wait_time_recursive,
        "io_merged_recursive" => &mut b.io_merged_recursive,
        "time_recursive" => &mut b.io_time_recursive,
        "sectors_recursive" => &mut b.sectors_recursive,
        _ => &mut b.io_service_bytes_recursive,
    }
}

/// `maj:min op value` or `maj:min value` lines; the `Total` line is dropped.
fn blkio_entries(text: &str) -> Vec<BlkioEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields[..] {
            [dev, op, value] => (dev, op, value),
            [dev, value] if dev != "Total" => (dev, "", value),
            _ => continue,
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        if let (Ok(major), Ok(minor), Ok(value)) = (major.parse(), minor.parse(), value.parse()) {
            let op = op.to_string();
            entries.push(BlkioEntry {
                major,
                minor,
                op,
                value,
            });
        }
    }
    entries
}

/// cgroup v2 `io.stat` (`maj:min rbytes=.. wbytes=.. rios=.. wios=..`) as runc maps it.
fn blkio_v2(text: &str) -> Blkio {
    let mut blkio = Blkio::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for (key, value) in fields.filter_map(|f| f.split_once('=')) {
            let (list, op) = match key {
                "rbytes" => (&mut blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            let value = value.parse().unwrap_or(0);
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    blkio
}

/// hugetlb usage per page size, from cgroups-rs (which knows the host's page sizes).
fn read_hugetlb(cg: &Cgroup) -> Result<BTreeMap<String, Hugetlb>> {
    let stats = cg.stats()?;
    Ok(stats
        .hugetlb
        .into_iter()
        .map(|(size, s)| {
            let entry = Hugetlb {
                usage: s.usage,
                max: s.max_usage,
                failcnt: s.fail_cnt,
            };
            (size, entry)
        })
        .collect())
}

/// A Go duration (`5s`, `500ms`, `1m30s`, `1.5h`, `0`), as runc's `--interval` takes it.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let value: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn invalid(msg: String) -> Error {
    Error::sys("events", io::Error::new(io::ErrorKind::InvalidInput, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_reads_them() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("5s"), Some(ms(5000)));
        assert_eq!(parse_duration("500ms"), Some(ms(500)));
        assert_eq!(parse_duration("1m30s"), Some(ms(90_000)));
        assert_eq!(parse_duration("1.5h"), Some(ms(5_400_000)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-5s", "1.2.3s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn blkio_lines_parse() {
        let text = "8:0 Read 4096\n8:0 Write 0\n8:16 Sync 12\nTotal 4108\n";
        let entries = blkio_entries(text);
        assert_eq!(entries.len(), 3);
        assert_eq!((entries[0].major, entries[0].minor), (8, 0));
        assert_eq!((entries[0].op.as_str(), entries[0].value), ("Read", 4096));
        let time = blkio_entries("8:0 1234\n");
        assert_eq!((time[0].op.as_str(), time[0].value), ("", 1234));
        let v2 = blkio_v2("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(v2.io_service_bytes_recursive.len(), 2);
        assert_eq!(v2.io_serviced_recursive[1].value, 2);
    }

    #[test]
    fn events_serialize_as_runc_does() {
        let oom = Event {
            typ: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).expect("json"),
            r#"{"type":"oom","id":"c1"}"#
        );
        let mut stats = Stats::default();
        stats.pids.current = 2;
        stats.memory.usage.limit = 7;
        let json = serde_json::to_value(stats_event("c1", stats)).expect("json");
        assert_eq!(json["data"]["pids"], serde_json::json!({"current": 2}));
        assert_eq!(
            json["data"]["memory"]["usage"],
            serde_json::json!({"limit": 7, "failcnt": 0})
        );
        assert_eq!(json["data"]["cpu"]["throttling"], serde_json::json!({}));
        assert_eq!(json["data"]["intel_rdt"], serde_json::json!({}));
        assert!(json["data"]["network_interfaces"].is_null());
    }

    #[test]
    fn cpu_lists_expand() {
        assert_eq!(expand_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(expand_list("").is_empty());
    }
}

//! Task stats: the runtime's `events --stats` JSON (runc's `types.Stats`) turned into
//! containerd's cgroup v1 metrics (`io.containerd.cgroups.v1.Metrics`), what `ctr task metrics`
//! and the CRI read.

use std::collections::BTreeMap;

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics,
    PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use serde::Deserialize;

/// The type URL of the v1 metrics.
pub const METRICS_V1: &str = "io.containerd.cgroups.v1.Metrics";

#[derive(Debug, Deserialize)]
struct StatsEvent {
    #[serde(default)]
    data: Stats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    cpu: Cpu,
    memory: Memory,
    pids: Pids,
    blkio: Blkio,
    hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cpu {
    usage: CpuUsage,
    throttling: Throttling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CpuUsage {
    total: u64,
    percpu: Vec<u64>,
    kernel: u64,
    user: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Throttling {
    periods: u64,
    throttled_periods: u64,
    throttled_time: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Memory {
    cache: u64,
    usage: Entry,
    swap: Entry,
    kernel: Entry,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: Entry,
    raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Entry {
    limit: u64,
    usage: u64,
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pids {
    current: u64,
    limit: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Blkio {
    io_service_bytes_recursive: Vec<BlkioEntry>,
    io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlkioEntry {
    major: u64,
    minor: u64,
    op: String,
    value: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Hugetlb {
    usage: u64,
    max: u64,
    failcnt: u64,
}

/// The metrics `Any` for the runtime's stats output.
pub fn from_runtime_stats(stdout: &[u8]) -> Result<Any, serde_json::Error> {
    let event: StatsEvent = serde_json::from_slice(stdout)?;
    let metrics = convert(&event.data);
    let mut any = Any::new();
    any.type_url = METRICS_V1.to_string();
    any.value = metrics.write_to_bytes().unwrap_or_default();
    Ok(any)
}

fn convert(stats: &Stats) -> Metrics {
    let mut m = Metrics::new();
    m.cpu = MessageField::some(cpu(&stats.cpu));
    m.memory = MessageField::some(memory(&stats.memory));
    let mut pids = PidsStat::new();
    pids.current = stats.pids.current;
    pids.limit = stats.pids.limit;
    m.pids = MessageField::some(pids);
    let mut blkio = BlkIOStat::new();
    blkio.io_service_bytes_recursive = stats
        .blkio
        .io_service_bytes_recursive
        .iter()
        .map(blkio_entry)
        .collect();
    blkio.io_serviced_recursive = stats
        .blkio
        .io_serviced_recursive
        .iter()
        .map(blkio_entry)
        .collect();
    m.blkio = MessageField::some(blkio);
    m.hugetlb = stats
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut s = HugetlbStat::new();
            (s.pagesize, s.usage, s.max, s.failcnt) = (size.clone(), h.usage, h.max, h.failcnt);
            s
        })
        .collect();
    m
}

fn cpu(cpu: &Cpu) -> CPUStat {
    let mut usage = CPUUsage::new();
    usage.total = cpu.usage.total;
    usage.kernel = cpu.usage.kernel;
    usage.user = cpu.usage.user;
    usage.per_cpu = cpu.usage.percpu.clone();
    let mut throttling = Throttle::new();
    throttling.periods = cpu.throttling.periods;
    throttling.throttled_periods = cpu.throttling.throttled_periods;
    throttling.throttled_time = cpu.throttling.throttled_time;
    let mut stat = CPUStat::new();
    stat.usage = MessageField::some(usage);
    stat.throttling = MessageField::some(throttling);
    stat
}

fn memory(mem: &Memory) -> MemoryStat {
    let raw = |k: &str| mem.raw.get(k).copied().unwrap_or(0);
    let mut m = MemoryStat::new();
    m.cache = mem.cache;
    m.rss = raw("rss");
    m.rss_huge = raw("rss_huge");
    m.mapped_file = raw("mapped_file");
    m.dirty = raw("dirty");
    m.writeback = raw("writeback");
    m.pg_pg_in = raw("pgpgin");
    m.pg_pg_out = raw("pgpgout");
    m.pg_fault = raw("pgfault");
    m.pg_maj_fault = raw("pgmajfault");
    m.inactive_anon = raw("inactive_anon");
    m.active_anon = raw("active_anon");
    m.inactive_file = raw("inactive_file");
    m.active_file = raw("active_file");
    m.unevictable = raw("unevictable");
    m.hierarchical_memory_limit = raw("hierarchical_memory_limit");
    m.hierarchical_swap_limit = raw("hierarchical_memsw_limit");
    m.total_cache = raw("total_cache");
    m.total_rss = raw("total_rss");
    m.total_rss_huge = raw("total_rss_huge");
    m.total_mapped_file = raw("total_mapped_file");
    m.total_dirty = raw("total_dirty");
    m.total_writeback = raw("total_writeback");
    m.total_pg_pg_in = raw("total_pgpgin");
    m.total_pg_pg_out = raw("total_pgpgout");
    m.total_pg_fault = raw("total_pgfault");
    m.total_pg_maj_fault = raw("total_pgmajfault");
    m.total_inactive_anon = raw("total_inactive_anon");
    m.total_active_anon = raw("total_active_anon");
    m.total_inactive_file = raw("total_inactive_file");
    m.total_active_file = raw("total_active_file");
    m.total_unevictable = raw("total_unevictable");
    m.usage = MessageField::some(entry(&mem.usage));
    m.swap = MessageField::some(entry(&mem.swap));
    m.kernel = MessageField::some(entry(&mem.kernel));
    m.kernel_tcp = MessageField::some(entry(&mem.kernel_tcp));
    m
}

fn entry(e: &Entry) -> MemoryEntry {
    let mut m = MemoryEntry::new();
    (m.limit, m.usage, m.max, m.failcnt) = (e.limit, e.usage, e.max, e.failcnt);
    m
}

fn blkio_entry(e: &BlkioEntry) -> BlkIOEntry {
    let mut b = BlkIOEntry::new();
    (b.major, b.minor, b.op, b.value) = (e.major, e.minor, e.op.clone(), e.value);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_stats_become_v1_metrics() {
        let json = br#"{"type":"stats","id":"c","data":{
            "cpu":{"usage":{"total":10,"percpu":[4,6],"kernel":3,"user":7},"throttling":{"periods":1}},
            "memory":{"cache":5,"usage":{"limit":100,"usage":50,"max":60,"failcnt":0},"raw":{"rss":40,"total_rss":41}},
            "pids":{"current":2,"limit":10},
            "blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":9}]},
            "hugetlb":{"2MB":{"usage":1,"max":2,"failcnt":0}}}}"#;
        let any = from_runtime_stats(json).unwrap();
        assert_eq!(any.type_url, METRICS_V1);
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.per_cpu, vec![4, 6]);
        assert_eq!(m.memory.usage.usage, 50);
        assert_eq!((m.memory.rss, m.memory.total_rss), (40, 41));
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].op, "Read");
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(from_runtime_stats(b"nope").is_err());
    }
}

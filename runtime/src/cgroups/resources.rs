//! `linux.resources` written to the cgroup (what is written is built in [`crate::resources`]).
//!
//! Resources are applied one `linux.resources` section at a time so a failure names the section,
//! and a section is checked against the mounted controllers first so a missing one (hugetlb is
//! often not mounted) is a clear error rather than cgroups-rs's "subsystems is empty".

use std::collections::{HashMap, HashSet};
use std::fs;

use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::hugetlb::HugeTlbController;
use cgroups_rs::manager::Manager;
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use super::error::describe;
use super::{Cgroup, Result};

impl Cgroup {
    /// Applies `resources` to the existing cgroup (`runc update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let mut manager = self.manager()?;
        let available = available_controllers(self);
        let v2 = manager.v2();
        for (section, part) in self.sections(resources, v2)? {
            let missing = required_controllers(section, &part, v2)
                .into_iter()
                .find(|c| !available.contains(*c));
            if let Some(controller) = missing {
                return Err(self.unsupported(section, controller));
            }
            self.check_hugepage_sizes(&part)?;
            manager
                .set(&part)
                .map_err(|e| self.resource_err(section, describe(&e)))?;
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            self.set_unified(unified, v2)?;
        }
        Ok(())
    }

    /// Splits `resources` into single-section `LinuxResources`, skipping empty sections.
    fn sections(
        &self,
        res: &LinuxResources,
        v2: bool,
    ) -> Result<Vec<(&'static str, LinuxResources)>> {
        let mut parts = Vec::new();
        if let Some(cpu) = res.cpu().as_ref().filter(|c| !cpu_is_empty(c)) {
            parts.push(("cpu", only(|r| r.set_cpu(Some(cpu.clone())))));
        }
        if let Some(memory) = res.memory().as_ref().filter(|m| !memory_is_empty(m)) {
            let memory = self.fit_memory(memory)?;
            parts.push(("memory", only(|r| r.set_memory(Some(memory)))));
        }
        if let Some(pids) = res.pids() {
            parts.push(("pids", only(|r| r.set_pids(Some(*pids)))));
        }
        if let Some(blkio) = res
            .block_io()
            .as_ref()
            .and_then(|b| self.blkio_to_apply(b).transpose())
        {
            let blkio = blkio?;
            parts.push(("blockIO", only(|r| r.set_block_io(Some(blkio)))));
        }
        if let Some(limits) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            parts.push((
                "hugepageLimits",
                only(|r| r.set_hugepage_limits(Some(limits.clone()))),
            ));
        }
        if let Some(net) = res.network() {
            parts.push(("network", only(|r| r.set_network(Some(net.clone())))));
        }
        if let Some(devices) = res.devices().as_ref().filter(|d| !d.is_empty()) {
            if v2 {
                // cgroup v2 controls devices with eBPF programs, which cgroups-rs does not load.
                tracing::warn!(cgroup = %self.path, "device rules not enforced on cgroup v2");
            } else {
                parts.push((
                    "devices",
                    only(|r| r.set_devices(Some(device_rules(devices)))),
                ));
            }
        }
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(self.resource_err("rdma", "not supported by keel-runtime".to_string()));
        }
        Ok(parts)
    }

    /// Adapts memory settings to a v1 kernel without swap accounting (`memory.memsw.*` absent),
    /// where cgroups-rs would fail writing the swap limit even when it only means "unlimited".
    fn fit_memory(&self, memory: &LinuxMemory) -> Result<LinuxMemory> {
        let mut memory = *memory;
        let memory_dir = self
            .dirs()
            .into_iter()
            .find(|d| d.join("memory.limit_in_bytes").exists());
        // Only v1 has memory.limit_in_bytes: v2 needs no adapting.
        let Some(dir) = memory_dir.filter(|d| !d.join("memory.memsw.limit_in_bytes").exists())
        else {
            return Ok(memory);
        };
        if memory.swap().is_some_and(|s| s > 0) {
            let msg = "swap limit set but the kernel has no swap accounting (swapaccount=1)";
            return Err(self.resource_err("memory", msg.to_string()));
        }
        memory.set_swap(None);
        if memory.limit() == Some(-1) {
            // cgroups-rs pairs limit -1 with a swap limit of -1, which it cannot write here.
            fs::write(dir.join("memory.limit_in_bytes"), "-1")
                .map_err(|e| self.resource_err("memory", format!("limit -1: {e}")))?;
            memory.set_limit(None);
        }
        Ok(memory)
    }

    /// hugetlb page sizes the kernel lacks, which cgroups-rs would skip silently.
    fn check_hugepage_sizes(&self, part: &LinuxResources) -> Result<()> {
        let Some(limits) = part.hugepage_limits() else {
            return Ok(());
        };
        let cgroup = self.loaded();
        let Some(hugetlb) = cgroup.controller_of::<HugeTlbController>() else {
            return Err(self.unsupported("hugepageLimits", "hugetlb"));
        };
        match limits
            .iter()
            .find(|l| !hugetlb.size_supported(l.page_size()))
        {
            Some(l) => Err(self.resource_err(
                "hugepageLimits",
                format!(
                    "page size {} not supported (have {:?})",
                    l.page_size(),
                    hugetlb.get_sizes()
                ),
            )),
            None => Ok(()),
        }
    }

    /// `linux.resources.unified`: cgroup v2 files written as given.
    fn set_unified(&self, unified: &HashMap<String, String>, v2: bool) -> Result<()> {
        if !v2 {
            let msg = "needs cgroup v2, but this host uses cgroup v1".to_string();
            return Err(self.resource_err("unified", msg));
        }
        let dir = hierarchies::auto().root().join(self.relative());
        for (key, value) in unified {
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(self.resource_err("unified", format!("invalid file name {key:?}")));
            }
            fs::write(dir.join(key), value)
                .map_err(|e| self.resource_err("unified", format!("{key}: {e}")))?;
        }
        Ok(())
    }
}

/// Names of the controllers mounted (v1) or available (v2), as cgroups-rs names them.
pub(super) fn available_controllers(cgroup: &Cgroup) -> HashSet<String> {
    cgroup
        .loaded()
        .subsystems()
        .iter()
        .map(|s| s.controller_name())
        .collect()
}

/// The controllers cgroups-rs needs to apply one section. It looks up the cpuset and cpu
/// controllers for any cpu section, whatever fields are set, so both are required.
fn required_controllers(section: &str, part: &LinuxResources, v2: bool) -> Vec<&'static str> {
    match section {
        "cpu" => vec!["cpuset", "cpu"],
        "memory" => vec!["memory"],
        "pids" => vec!["pids"],
        "blockIO" => vec!["blkio"],
        "hugepageLimits" => vec!["hugetlb"],
        "devices" if !v2 => vec!["devices"],
        "network" => {
            let net = part.network().as_ref();
            let mut needed = Vec::new();
            if net.is_some_and(|n| n.class_id().is_some()) {
                needed.push("net_cls");
            }
            if net.is_some_and(|n| n.priorities().as_ref().is_some_and(|p| !p.is_empty())) {
                needed.push("net_prio");
            }
            needed
        }
        _ => Vec::new(),
    }
}

fn cpu_is_empty(cpu: &LinuxCpu) -> bool {
    cpu.shares().unwrap_or(0) == 0
        && cpu.quota().is_none()
        && cpu.period().is_none()
        && cpu.realtime_runtime().is_none()
        && cpu.realtime_period().is_none()
        && cpu.cpus().as_ref().is_none_or(|s| s.is_empty())
        && cpu.mems().as_ref().is_none_or(|s| s.is_empty())
}

fn memory_is_empty(memory: &LinuxMemory) -> bool {
    memory.limit().is_none()
        && memory.reservation().is_none()
        && memory.swap().is_none()
        && memory.swappiness().is_none()
        && !memory.disable_oom_killer().unwrap_or(false)
}

impl Cgroup {
    /// runc's reading of blockIO: a weight of 0 means unset (Docker always sends one); where the
    /// kernel only has BFQ's weight file (no `blkio.weight`), the weight is written there.
    fn blkio_to_apply(
        &self,
        blkio: &oci_spec::runtime::LinuxBlockIo,
    ) -> Result<Option<oci_spec::runtime::LinuxBlockIo>> {
        let mut b = blkio.clone();
        if b.weight() == Some(0) {
            b.set_weight(None);
        }
        if b.leaf_weight() == Some(0) {
            b.set_leaf_weight(None);
        }
        if let (Some(weight), Some(dir)) = (b.weight(), self.controller_dir("blkio")) {
            let bfq = dir.join("blkio.bfq.weight");
            if !dir.join("blkio.weight").exists() && bfq.exists() {
                fs::write(&bfq, weight.to_string())
                    .map_err(|e| self.resource_err("blockIO", format!("{}: {e}", bfq.display())))?;
                b.set_weight(None);
            }
        }
        Ok((!blkio_is_empty(&b)).then_some(b))
    }
}

fn blkio_is_empty(blkio: &oci_spec::runtime::LinuxBlockIo) -> bool {
    serde_json::to_value(blkio).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

/// Device rules with the spec's defaults made explicit: cgroups-rs writes a missing major or
/// minor as 0 where the spec means "any" (`c 136:* rwm` would become `c 136:0 rwm`).
pub(super) fn device_rules(rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let mut rules = rules.to_vec();
    for rule in &mut rules {
        rule.set_major(Some(rule.major().unwrap_or(-1)));
        rule.set_minor(Some(rule.minor().unwrap_or(-1)));
        if rule.access().as_ref().is_none_or(|a| a.is_empty()) {
            rule.set_access(Some("rwm".to_string()));
        }
    }
    rules
}

/// A `LinuxResources` with only what `set` puts in it.
fn only(set: impl FnOnce(&mut LinuxResources) -> &mut LinuxResources) -> LinuxResources {
    let mut resources = LinuxResources::default();
    set(&mut resources);
    resources
}

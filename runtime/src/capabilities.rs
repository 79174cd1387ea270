//! `process.capabilities`: all five sets. Every capability not asked for is removed from every
//! set, inheritable and ambient included (CVE-2022-29162).

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

/// Errors applying capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("set {set} capabilities: {source}")]
    Apply {
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

pub type Result<T> = std::result::Result<T, CapabilityError>;

/// The five sets, translated and checked before any is applied.
#[derive(Debug, Default, Clone)]
pub struct CapSets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl CapSets {
    /// Translates the config's sets; a missing set is empty; an unknown name is an error.
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self> {
        let Some(c) = c else {
            return Ok(Self::default());
        };
        Ok(Self {
            bounding: translate(c.bounding().as_ref())?,
            effective: translate(c.effective().as_ref())?,
            permitted: translate(c.permitted().as_ref())?,
            inheritable: translate(c.inheritable().as_ref())?,
            ambient: translate(c.ambient().as_ref())?,
        })
    }

    /// Drops from the bounding set every capability not in it (while still privileged).
    pub fn apply_bounding(&self) -> Result<()> {
        // What the kernel knows, read once (a read of /proc per capability cost ~40 syscalls).
        let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
        for cap in supported {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| apply_err("bounding", e))?;
            }
        }
        Ok(())
    }

    /// Sets effective, permitted, inheritable, then ambient (after the uid change).
    pub fn apply_process_sets(&self) -> Result<()> {
        // capset(2) wants effective ⊆ permitted at every step: shrink effective first.
        caps::set(None, CapSet::Effective, &self.effective)
            .map_err(|e| apply_err("effective", e))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| apply_err("inheritable", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted)
            .map_err(|e| apply_err("permitted", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| apply_err("ambient", e))?;
        for cap in &self.ambient {
            // The kernel only allows ambient caps that are permitted and inheritable; runc
            // ignores the others rather than failing.
            if self.permitted.contains(cap) && self.inheritable.contains(cap) {
                caps::raise(None, CapSet::Ambient, *cap).map_err(|e| apply_err("ambient", e))?;
            }
        }
        Ok(())
    }
}

fn translate(set: Option<&Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = c.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        let cap: Capability = name
            .parse()
            .map_err(|_| CapabilityError::Unknown(name.clone()))?;
        out.insert(cap);
    }
    Ok(out)
}

fn apply_err(set: &'static str, source: caps::errors::CapsError) -> CapabilityError {
    CapabilityError::Apply { set, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability as OciCap, LinuxCapabilitiesBuilder};

    #[test]
    fn translates_every_set() {
        let set: Capabilities = [OciCap::Chown, OciCap::NetBindService]
            .into_iter()
            .collect();
        let c = LinuxCapabilitiesBuilder::default()
            .bounding(set.clone())
            .ambient(set)
            .effective(Capabilities::new())
            .build()
            .expect("caps");
        let s = CapSets::from_spec(Some(&c)).expect("translate");
        assert!(s.bounding.contains(&Capability::CAP_CHOWN));
        assert!(s.ambient.contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(s.effective.is_empty());
    }
}

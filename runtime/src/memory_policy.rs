//! `linux.memoryPolicy`: the NUMA memory policy of set_mempolicy(2): a mode, the nodes it uses
//! and mode flags.
//!
//! The policy belongs to the calling thread and the kernel keeps it across fork and exec, so
//! setting it in the init before it execs covers every process of the container. The kernel
//! intersects the nodes with the cpuset's `mems` at the time of the call (relative to them with
//! `MPOL_F_RELATIVE_NODES`), so it must be set after the init joined its cgroup.

use libc::c_ulong;
use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::scheduling::parse_list;

/// Errors applying `linux.memoryPolicy`.
#[derive(Debug, thiserror::Error)]
pub enum MemoryPolicyError {
    /// A mode that needs nodes got none.
    #[error("linux.memoryPolicy: {0} needs nodes, a list such as \"0-1\"")]
    NodesRequired(MemoryPolicyModeType),
    /// A mode that takes no nodes got some.
    #[error("linux.memoryPolicy: {mode} takes no nodes, but nodes is {nodes:?}")]
    NodesNotAllowed {
        mode: MemoryPolicyModeType,
        nodes: String,
    },
    /// A node list that does not parse.
    #[error("linux.memoryPolicy.nodes: invalid node list {nodes:?}: {why}")]
    InvalidNodes { nodes: String, why: String },
    /// Two flags that exclude each other.
    #[error("linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")]
    ExclusiveFlags,
    /// The kernel refused the policy.
    #[error("linux.memoryPolicy: set_mempolicy {mode}{flags} nodes {nodes:?}: {source}{hint}")]
    Set {
        mode: MemoryPolicyModeType,
        flags: String,
        nodes: String,
        source: nix::Error,
        hint: &'static str,
    },
}

/// The result of this module.
pub type Result<T> = std::result::Result<T, MemoryPolicyError>;

/// Modes and mode flags (`include/uapi/linux/mempolicy.h`).
const MPOL_DEFAULT: i32 = 0;
const MPOL_PREFERRED: i32 = 1;
const MPOL_BIND: i32 = 2;
const MPOL_INTERLEAVE: i32 = 3;
const MPOL_LOCAL: i32 = 4;
const MPOL_PREFERRED_MANY: i32 = 5;
const MPOL_WEIGHTED_INTERLEAVE: i32 = 6;
const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
const MPOL_F_STATIC_NODES: i32 = 1 << 15;

/// Node numbers accepted (as runc does); the kernel's own limit (`MAX_NUMNODES`, at most 1024
/// today) is its to enforce.
const NODE_LIMIT: u32 = 4096;

/// What set_mempolicy(2) is called with.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The mode with the flags or'ed in.
    mode: i32,
    /// The node mask, one bit per node, empty for "no nodes".
    mask: Vec<c_ulong>,
}

/// Sets the calling thread's memory policy to `linux.memoryPolicy`.
pub fn apply(policy: &LinuxMemoryPolicy) -> Result<()> {
    let plan = plan(policy)?;
    set_mempolicy(plan.mode, &plan.mask).map_err(|source| MemoryPolicyError::Set {
        mode: policy.mode(),
        flags: flag_suffix(policy),
        nodes: nodes(policy).to_string(),
        source,
        hint: if source == nix::Error::EINVAL {
            " (are the nodes online and in the container's cpuset.mems, and does this kernel \
             know the mode and flags?)"
        } else {
            ""
        },
    })
}

/// Checks `linux.memoryPolicy` without applying it, so `create` can refuse it up front.
pub fn check(policy: &LinuxMemoryPolicy) -> Result<()> {
    plan(policy).map(drop)
}

fn plan(policy: &LinuxMemoryPolicy) -> Result<Plan> {
    let mode = policy.mode();
    let list = nodes(policy);
    match (node_rule(mode), list.is_empty()) {
        (NodeRule::Required, true) => return Err(MemoryPolicyError::NodesRequired(mode)),
        (NodeRule::None, false) => {
            return Err(MemoryPolicyError::NodesNotAllowed {
                mode,
                nodes: list.to_string(),
            })
        }
        _ => {}
    }
    Ok(Plan {
        mode: mode_number(mode) | flag_bits(policy)?,
        mask: node_mask(list)?,
    })
}

/// Whether a mode needs, may have, or must not have nodes (set_mempolicy(2)).
enum NodeRule {
    Required,
    Optional,
    None,
}

fn node_rule(mode: MemoryPolicyModeType) -> NodeRule {
    use MemoryPolicyModeType::*;
    match mode {
        MpolDefault | MpolLocal => NodeRule::None,
        // No nodes means "allocate on the local node".
        MpolPreferred => NodeRule::Optional,
        MpolBind | MpolInterleave | MpolWeightedInterleave | MpolPreferredMany => {
            NodeRule::Required
        }
    }
}

fn nodes(policy: &LinuxMemoryPolicy) -> &str {
    policy.nodes().as_deref().unwrap_or_default()
}

fn mode_number(mode: MemoryPolicyModeType) -> i32 {
    use MemoryPolicyModeType::*;
    match mode {
        MpolDefault => MPOL_DEFAULT,
        MpolPreferred => MPOL_PREFERRED,
        MpolBind => MPOL_BIND,
        MpolInterleave => MPOL_INTERLEAVE,
        MpolLocal => MPOL_LOCAL,
        MpolPreferredMany => MPOL_PREFERRED_MANY,
        MpolWeightedInterleave => MPOL_WEIGHTED_INTERLEAVE,
    }
}

fn flag_bits(policy: &LinuxMemoryPolicy) -> Result<i32> {
    let bits = policy.flags().iter().flatten().fold(0, |bits, flag| {
        bits | match flag {
            MemoryPolicyFlagType::MpolFNumaBalancing => MPOL_F_NUMA_BALANCING,
            MemoryPolicyFlagType::MpolFRelativeNodes => MPOL_F_RELATIVE_NODES,
            MemoryPolicyFlagType::MpolFStaticNodes => MPOL_F_STATIC_NODES,
        }
    });
    let both = MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES;
    if bits & both == both {
        return Err(MemoryPolicyError::ExclusiveFlags);
    }
    Ok(bits)
}

/// " with FLAG|FLAG" for the error message, or nothing.
fn flag_suffix(policy: &LinuxMemoryPolicy) -> String {
    let names: Vec<String> = policy
        .flags()
        .iter()
        .flatten()
        .map(|f| f.to_string())
        .collect();
    match names.is_empty() {
        true => String::new(),
        false => format!(" with {}", names.join("|")),
    }
}

/// The mask of a node list, in `unsigned long` words as the kernel reads it.
fn node_mask(list: &str) -> Result<Vec<c_ulong>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let nodes = parse_list(list, NODE_LIMIT).map_err(|why| MemoryPolicyError::InvalidNodes {
        nodes: list.to_string(),
        why,
    })?;
    let bits = c_ulong::BITS;
    let words = nodes.iter().max().map_or(0, |&n| n / bits + 1) as usize;
    let mut mask = vec![0; words];
    for node in nodes {
        mask[(node / bits) as usize] |= 1 << (node % bits);
    }
    Ok(mask)
}

#[allow(unsafe_code)]
fn set_mempolicy(mode: i32, mask: &[c_ulong]) -> nix::Result<()> {
    // The kernel counts one bit fewer than `maxnode` says (kept for compatibility), hence + 1.
    let (ptr, maxnode) = match mask.is_empty() {
        true => (std::ptr::null(), 0),
        false => (mask.as_ptr(), mask.len() * c_ulong::BITS as usize + 1),
    };
    // SAFETY: the kernel reads at most `maxnode - 1` bits, that is `mask.len()` words, from a
    // live slice, or nothing when the pointer is null and `maxnode` 0.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    nix::Error::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forked;
    use serde_json::json;

    fn policy(doc: serde_json::Value) -> LinuxMemoryPolicy {
        serde_json::from_value(doc).expect("memoryPolicy json")
    }

    #[test]
    fn plans() {
        let p = plan(&policy(json!({"mode": "MPOL_BIND", "nodes": "0-1,3"}))).expect("bind");
        assert_eq!(
            p,
            Plan {
                mode: 2,
                mask: vec![0b1011]
            }
        );
        let flags =
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "64", "flags": ["MPOL_F_STATIC_NODES"]});
        let p = plan(&policy(flags)).expect("interleave");
        assert_eq!(
            p,
            Plan {
                mode: 3 | 1 << 15,
                mask: vec![0, 1]
            }
        );
        let local = plan(&policy(json!({"mode": "MPOL_LOCAL"}))).expect("local");
        assert_eq!(
            local,
            Plan {
                mode: 4,
                mask: vec![]
            }
        );
        let preferred = plan(&policy(json!({"mode": "MPOL_PREFERRED", "nodes": ""})));
        assert_eq!(
            preferred.ok(),
            Some(Plan {
                mode: 1,
                mask: vec![]
            })
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"mode": "MPOL_BIND"}), "MPOL_BIND needs nodes"),
            (
                json!({"mode": "MPOL_PREFERRED_MANY", "nodes": ""}),
                "needs nodes",
            ),
            (
                json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
                "takes no nodes",
            ),
            (
                json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
                "takes no nodes",
            ),
            (
                json!({"mode": "MPOL_BIND", "nodes": "1-0"}),
                "invalid node list",
            ),
            (
                json!({"mode": "MPOL_BIND", "nodes": "4096"}),
                "invalid node list",
            ),
            (
                json!({"mode": "MPOL_BIND", "nodes": "0",
                       "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
                "exclude each other",
            ),
        ];
        for (doc, needle) in cases {
            let err = check(&policy(doc.clone()))
                .expect_err("refused")
                .to_string();
            assert!(
                err.starts_with("linux.memoryPolicy") && err.contains(needle),
                "{doc}: {err}"
            );
        }
    }

    #[test]
    fn unknown_mode_does_not_parse() {
        let doc = json!({"mode": "MPOL_NOPE", "nodes": "0"});
        assert!(serde_json::from_value::<LinuxMemoryPolicy>(doc).is_err());
    }

    /// The policy of the first mapping in numa_maps: the thread's own when no mapping has one.
    fn numa_maps_policy() -> Option<String> {
        let maps = std::fs::read_to_string("/proc/thread-self/numa_maps").ok()?;
        Some(maps.lines().next()?.split(' ').nth(1)?.to_string())
    }

    #[test]
    fn policy_is_set_on_the_calling_thread() {
        if numa_maps_policy().is_none() {
            eprintln!("SKIPPED: no /proc/thread-self/numa_maps (kernel without NUMA)");
            return;
        }
        fn child() -> i32 {
            let cases = [
                (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
                (
                    json!({"mode": "MPOL_PREFERRED", "nodes": "0",
                        "flags": ["MPOL_F_STATIC_NODES"]}),
                    "prefer=static:0",
                ),
                (json!({"mode": "MPOL_LOCAL"}), "local"),
                (json!({"mode": "MPOL_DEFAULT"}), "default"),
            ];
            for (code, (doc, want)) in (1..).zip(cases) {
                if apply(&policy(doc)).is_err() || numa_maps_policy().as_deref() != Some(want) {
                    return code;
                }
            }
            0
        }
        assert_eq!(forked::run(child), 0);
    }

    #[test]
    fn kernel_refusal_says_what_was_asked() {
        fn child() -> i32 {
            // Node 4095 is never online.
            match apply(&policy(json!({"mode": "MPOL_BIND", "nodes": "4095"}))) {
                Err(e) if e.to_string().contains("MPOL_BIND nodes \"4095\": EINVAL") => 0,
                Err(_) => 1,
                Ok(()) => 2,
            }
        }
        assert_eq!(forked::run(child), 0);
    }
}

//! Tests of scheduling: parsing and, in forked children, the syscalls.

use super::*;
use crate::forked;
use serde_json::json;

/// A `process` object from JSON written the spec's way.
fn process(mut doc: Value) -> Process {
    doc["cwd"] = json!("/");
    doc["user"] = json!({"uid": 0, "gid": 0});
    normalize_process_json(&mut doc);
    serde_json::from_value(doc).expect("process json")
}

fn scheduler(doc: Value) -> Scheduler {
    let p = process(json!({ "scheduler": doc }));
    p.scheduler().clone().expect("scheduler")
}

fn io_priority(class: &str, priority: i64) -> LinuxIOPriority {
    serde_json::from_value(json!({"class": class, "priority": priority})).expect("ioprio")
}

#[test]
fn lists_parse_like_the_kernel() {
    assert_eq!(parse_list("0-3,7", 1024), Ok(vec![0, 1, 2, 3, 7]));
    assert_eq!(parse_list("5", 8), Ok(vec![5]));
    assert_eq!(parse_list("2-2,0", 8), Ok(vec![2, 0]));
    for bad in [
        "", ",", "1,", "a", "-1", "1-", "3-1", "1 ", "+1", "0x1", "1-2-3",
    ] {
        assert!(parse_list(bad, 1024).is_err(), "{bad:?}");
    }
    let err = parse_list("0-8", 8).expect_err("beyond the limit");
    assert!(err.contains("highest supported, 7"), "{err}");
}

#[test]
fn io_priority_values() {
    let value = |class, prio| io_priority_value(&io_priority(class, prio));
    assert_eq!(value("IOPRIO_CLASS_RT", 3).ok(), Some((1 << 13) | 3));
    assert_eq!(value("IOPRIO_CLASS_BE", 7).ok(), Some((2 << 13) | 7));
    assert_eq!(value("IOPRIO_CLASS_IDLE", 0).ok(), Some(3 << 13));
    for bad in [-1, 8] {
        let err = value("IOPRIO_CLASS_BE", bad).expect_err("out of range");
        assert!(err.to_string().starts_with("process.ioPriority:"), "{err}");
    }
}

#[test]
fn scheduler_attrs() {
    let fifo = sched_attr(&scheduler(json!({"policy": "SCHED_FIFO", "priority": 10})));
    let fifo = fifo.expect("fifo");
    assert_eq!(
        (fifo.size, fifo.sched_policy, fifo.sched_priority),
        (56, 1, 10)
    );
    let dl = json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3});
    let dl = sched_attr(&scheduler(dl)).expect("deadline");
    assert_eq!(
        (dl.sched_policy, dl.sched_runtime, dl.sched_deadline),
        (6, 1, 2)
    );
    assert_eq!(dl.sched_period, 3);
    let batch = sched_attr(&scheduler(json!({"policy": "SCHED_BATCH", "nice": -3})));
    assert_eq!(
        batch.map(|a| (a.sched_policy, a.sched_nice)).ok(),
        Some((3, -3))
    );
}

#[test]
fn scheduler_refuses_what_the_policy_does_not_take() {
    let cases = [
        (json!({"policy": "SCHED_FIFO"}), "1 to 99"),
        (json!({"policy": "SCHED_RR", "priority": 100}), "1 to 99"),
        (
            json!({"policy": "SCHED_OTHER", "priority": 5}),
            "only for SCHED_FIFO",
        ),
        (json!({"policy": "SCHED_OTHER", "nice": 20}), "-20 to 19"),
        (
            json!({"policy": "SCHED_BATCH", "runtime": 5}),
            "only for SCHED_DEADLINE",
        ),
    ];
    for (doc, needle) in cases {
        let err = sched_attr(&scheduler(doc.clone())).expect_err("refused");
        let msg = err.to_string();
        assert!(
            msg.starts_with("process.scheduler:") && msg.contains(needle),
            "{doc}: {msg}"
        );
    }
}

#[test]
fn spec_flag_names_parse_after_normalizing() {
    let names = [
        "SCHED_FLAG_RESET_ON_FORK",
        "SCHED_FLAG_RECLAIM",
        "SCHED_FLAG_DL_OVERRUN",
        "SCHED_FLAG_KEEP_POLICY",
        "SCHED_FLAG_KEEP_PARAMS",
        "SCHED_FLAG_UTIL_CLAMP_MIN",
        "SCHED_FLAG_UTIL_CLAMP_MAX",
    ];
    let doc = json!({"policy": "SCHED_OTHER", "flags": names});
    // oci-spec 0.10 alone refuses two of the spec's names: the reason for the rewrite.
    assert!(serde_json::from_value::<Scheduler>(doc.clone()).is_err());
    let flags = scheduler(doc).flags().clone().unwrap_or_default();
    assert_eq!(flag_bits(&flags), 0x7f);
}

#[test]
fn empty_affinity_lists_mean_unset() {
    let doc = json!({"execCPUAffinity": {"initial": "", "final": "1"}});
    let p = process(doc);
    let affinity = p.exec_cpu_affinity().as_ref();
    assert_eq!((initial(affinity), final_(affinity)), (None, Some("1")));
}

#[test]
fn check_names_the_bad_field() {
    let bad = process(json!({"execCPUAffinity": {"final": "3-1"}}));
    let err = check(&bad).expect_err("reversed range").to_string();
    assert!(err.starts_with("process.execCPUAffinity.final:"), "{err}");
    let bad = process(json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 9}}));
    assert!(check(&bad).is_err());
    let good = json!({"scheduler": {"policy": "SCHED_IDLE"}, "execCPUAffinity": {"initial": "0"}});
    assert!(check(&process(good)).is_ok());
}

// --- Applying, in forked children -------------------------------------------------------

/// A field of `/proc/thread-self/stat`, counted from the one after the command name.
fn stat_field(index: usize) -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    rest.split_whitespace().nth(index)?.parse().ok()
}
const STAT_NICE: usize = 16;
const STAT_POLICY: usize = 38;

#[allow(unsafe_code)]
fn ioprio_get_self() -> i64 {
    // SAFETY: ioprio_get takes integers only.
    unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) }
}

#[test]
fn io_priority_is_set_on_the_calling_thread() {
    fn child() -> i32 {
        // Lowering one's own I/O priority needs no privilege.
        if apply_io_priority(&io_priority("IOPRIO_CLASS_BE", 7)).is_err() {
            return 1;
        }
        i32::from(ioprio_get_self() != (2 << 13) | 7) * 2
    }
    assert_eq!(forked::run(child), 0);
}

#[test]
fn scheduler_policy_and_nice_are_set() {
    fn child() -> i32 {
        let batch = scheduler(json!({"policy": "SCHED_BATCH", "nice": 5}));
        if apply_scheduler(&batch).is_err() {
            return 1;
        }
        if (stat_field(STAT_POLICY), stat_field(STAT_NICE)) != (Some(3), Some(5)) {
            return 2;
        }
        let idle = scheduler(json!({"policy": "SCHED_IDLE"}));
        match apply_scheduler(&idle) {
            Ok(()) if stat_field(STAT_POLICY) == Some(5) => 0,
            Ok(()) => 3,
            Err(_) => 4,
        }
    }
    assert_eq!(forked::run(child), 0);
}

#[test]
fn kernel_refusal_names_the_policy_and_why() {
    fn child() -> i32 {
        match apply_scheduler(&scheduler(json!({"policy": "SCHED_ISO"}))) {
            Err(e) if e.to_string().contains("SCHED_ISO") && e.to_string().contains("(") => 0,
            Err(_) => 1,
            Ok(()) => 2,
        }
    }
    assert_eq!(forked::run(child), 0);
}

#[test]
fn affinity_final_and_reset() {
    fn child() -> i32 {
        let Ok(before) = nix::sched::sched_getaffinity(Pid::from_raw(0)) else {
            return 1;
        };
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| before.is_set(c).unwrap_or(false))
            .collect();
        let first = allowed[0].to_string();
        let only = |list: &str| process(json!({"execCPUAffinity": {"final": list}}));
        if apply_final_affinity(SELF, only(&first).exec_cpu_affinity().as_ref()).is_err() {
            return 2;
        }
        if count(&current_affinity()) != 1 {
            return 3;
        }
        let initial_only = process(json!({"execCPUAffinity": {"initial": "0"}}));
        let _ = apply_final_affinity(SELF, initial_only.exec_cpu_affinity().as_ref());
        if count(&current_affinity()) != 1 {
            return 4;
        }
        let _ = apply_final_affinity(SELF, None);
        i32::from(count(&current_affinity()) < allowed.len()) * 5
    }
    assert_eq!(forked::run(child), 0);
}

const SELF: Pid = Pid::from_raw(0);

fn current_affinity() -> CpuSet {
    nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap_or_else(|_| CpuSet::new())
}

fn count(set: &CpuSet) -> usize {
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .count()
}

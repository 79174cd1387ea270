#!/usr/bin/env python3
"""Where does a `RUNTIME run` of busybox /bin/true spend its time? (companion of runtime.py)

For each runtime (keel-runtime, runc; crun with --crun-env semantics is left to runtime.py):

1. a phase timeline: `strace --seccomp-bpf -f -ttt` tracing only a few marker syscalls (execve,
   clone, unshare, memfd_create, sendfile, mount, pivot_root, seccomp, rmdir, exit_group, ...), so
   the untraced syscalls run at full speed; printed for the median of --runs runs;
2. the slowest single syscalls of one fully traced run (`strace -f -T`): blocking kernel work such
   as the cgroup v1 migration wait shows up there, whatever the tracing overhead;
3. syscall counts (`strace -f -c`);
4. a micro-experiment on this kernel's cgroup v1 join cost: a fresh process writing its pid to
   `cgroup.procs` vs writing "0" to `tasks` (the single-thread path that skips the global
   threadgroup rwsem and its RCU grace period).

Run as root: python3 bench/profile.py [--runs 7] [--bundle-seccomp]. Needs strace.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime as bench  # noqa: E402  (the bundle helpers and cleanup live there)

MARKERS = ("execve,clone,clone3,unshare,setns,memfd_create,sendfile,open_tree,mount_setattr,mount,pivot_root,seccomp,"
           "sethostname,capset,fdatasync,rmdir,exit_group")


def strace(argv: list[str], out: str, *extra: str) -> int:
    return subprocess.run(["strace", "-o", out, *extra, *argv], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def timeline(path: str) -> tuple[float, list[tuple[float, str, str]]]:
    rows = []
    for line in open(path, encoding="utf-8", errors="replace"):
        parts = line.split(None, 2)
        if len(parts) == 3 and re.match(r"^\d+\.\d+$", parts[1]):
            rows.append((float(parts[1]), parts[0], parts[2].strip()))
    t0 = rows[0][0]
    return (rows[-1][0] - t0) * 1000, [((t - t0) * 1000, pid, what) for t, pid, what in rows]


def compress(rows: list[tuple[float, str, str]]) -> list[str]:
    """Collapses runs of the same syscall by the same pid (e.g. 40 mounts) into one line."""
    out, prev_t = [], 0.0
    i = 0
    while i < len(rows):
        t, pid, what = rows[i]
        name = what.split("(")[0]
        j = i
        while j + 1 < len(rows) and rows[j + 1][1] == pid and rows[j + 1][2].split("(")[0] == name \
                and name in ("mount", "rmdir", "capset", "sendfile", "seccomp", "openat2"):
            j += 1
        if j > i:
            out.append(f"{t:8.2f} ms (+{t - prev_t:6.2f})  pid {pid:>7}  {name} x{j - i + 1} "
                       f"(until {rows[j][0]:.2f} ms)")
            prev_t = rows[j][0]
        else:
            out.append(f"{t:8.2f} ms (+{t - prev_t:6.2f})  pid {pid:>7}  {what[:110]}")
            prev_t = t
        i = j + 1
    return out


def slowest(path: str, n: int = 8) -> list[str]:
    calls = []
    pending: dict[str, str] = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip()
        pid = line.split(None, 1)[0]
        if line.endswith("<unfinished ...>"):
            pending[pid] = line.split(None, 1)[1][:100]
            continue
        m = re.search(r"<([\d.]+)>$", line)
        if not m:
            continue
        body = line.split(None, 1)[1]
        if body.startswith("<..."):
            body = pending.pop(pid, body)
        name = body.split("(")[0]
        if name in ("wait4", "waitid", "recvmsg", "recvfrom", "read", "rt_sigtimedwait", "poll",
                    "ppoll", "epoll_pwait", "futex", "execve", "nanosleep", "clock_nanosleep"):
            continue  # waiting for another process, not work
        calls.append((float(m[1]) * 1000, f"pid {pid}: {body[:120]}"))
    calls.sort(reverse=True)
    return [f"{ms:7.2f} ms  {what}" for ms, what in calls[:n]]


def counts(path: str, n: int = 12) -> list[str]:
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    rows, total = [], "?"
    for l in lines:
        f = l.split()
        if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[3].isdigit():
            if f[-1] == "total":
                total = f[3]
            else:
                rows.append((int(f[3]), f[-1]))
    rows.sort(reverse=True)
    return [f"total syscalls: {total}"] + [f"{c:6d}  {name}" for c, name in rows[:n]]


def cgroup_join_experiment(trials: int = 6) -> list[str]:
    base = "/sys/fs/cgroup/blkio"
    if not os.path.isdir(base):
        return ["no cgroup v1 blkio hierarchy here; skipped"]
    cg = os.path.join(base, f"{bench.ID_PREFIX}-{os.getpid()}-join")
    os.mkdir(cg)
    out = []
    try:
        for label, fname, value in (("pid -> cgroup.procs", "cgroup.procs", None),
                                    ('"0" -> tasks (self, one thread)', "tasks", "0")):
            res = []
            for _ in range(trials):
                time.sleep(0.1)  # let the rwsem's RCU sync state go idle, as between two runs
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    fd = os.open(os.path.join(cg, fname), os.O_WRONLY)
                    t0 = time.perf_counter()
                    os.write(fd, (value or str(os.getpid())).encode())
                    os.write(w, f"{(time.perf_counter() - t0) * 1000:.3f}".encode())
                    os._exit(0)
                os.close(w)
                res.append(float(os.read(r, 64) or b"nan"))
                os.close(r)
                os.waitpid(pid, 0)
            out.append(f"{label:34s} median {statistics.median(res):6.2f} ms  "
                       f"({' '.join(f'{x:.2f}' for x in res)})")
    finally:
        os.rmdir(cg)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--seccomp", action="store_true", help="use the Docker default seccomp profile")
    p.add_argument("--keel", default=str(bench.REPO / "target/release/keel-runtime"))
    p.add_argument("--keel-bundle", default=str(bench.REPO / "target/release/keel-bundle"))
    p.add_argument("--runc", default=bench.which("runc"))
    args = p.parse_args()
    if os.geteuid() != 0 or not bench.which("strace"):
        sys.exit("run as root, with strace installed")
    try:
        tmp = bench.JANITOR.mkdtemp(prefix="keel-profile-")
        sc = None
        if args.seccomp:
            sc, note = bench.docker_seccomp(args.keel_bundle if os.access(args.keel_bundle, os.X_OK) else None, tmp)
            if sc is None:
                sys.exit(note)
        bundle = bench.write_bundle(Path(tmp) / "b", bench.runc_spec(args.runc), ["/bin/true"], sc)
        for name, path in (("keel", args.keel), ("runc", args.runc)):
            root = bench.JANITOR.mkdtemp(base=tmp, prefix=f"root-{name}-")
            runs = []
            for i in range(args.runs):
                cid = f"{bench.ID_PREFIX}-{os.getpid()}-{name}-{i}"
                bench.JANITOR.containers[(path, root, cid)] = None
                out = os.path.join(tmp, f"{name}-{i}.tl")
                strace([path, "--root", root, "run", "--bundle", bundle, cid], out,
                       "--seccomp-bpf", "-f", "-ttt", "-e", f"trace={MARKERS}")
                runs.append((timeline(out)[0], out))
            runs.sort()
            total, rows = timeline(runs[len(runs) // 2][1])
            print(f"\n## {name}: marker timeline of the median run ({total:.1f} ms under light tracing; "
                  f"all runs: {' '.join(f'{t:.1f}' for t, _ in runs)})\n")
            print("\n".join(compress(rows)))
            cid = f"{bench.ID_PREFIX}-{os.getpid()}-{name}-full"
            full = os.path.join(tmp, f"{name}.full")
            strace([path, "--root", root, "run", "--bundle", bundle, cid], full, "-f", "-T")
            print(f"\n### {name}: slowest syscalls of one fully traced run (blocking work, not waits; "
                  "on a busy machine preemption inflates some)\n")
            print("\n".join(slowest(full)))
            cnt = os.path.join(tmp, f"{name}.count")
            strace([path, "--root", root, "run", "--bundle", bundle, cid + "c"], cnt, "-f", "-c")
            print(f"\n### {name}: syscall counts\n")
            print("\n".join(counts(cnt)))
        print("\n## cgroup v1 join cost on this kernel (a fresh single-threaded process moving itself)\n")
        print("\n".join(cgroup_join_experiment()))
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        bench.JANITOR.cleanup()
        bench.sweep_cgroups(f"{bench.ID_PREFIX}-{os.getpid()}-")


if __name__ == "__main__":
    sys.exit(main())

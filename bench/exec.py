#!/usr/bin/env python3
"""exec latency: `keel-runtime exec` against `runc exec` into a running busybox container.

For each runtime, one long-running container (`sleep 1000`, started with `run -d` in its own
temporary --root); then the wall time of `RUNTIME --root R exec ID true` (foreground: the runtime
starts the process in the container's namespaces and cgroup and waits for its exit), the runtimes
taking turns, in two bundle variants: no seccomp, and Docker's default seccomp profile (from
`keel-bundle --seccomp-default`; skipped if keel-bundle is not built).

Bundles, cleanup and the RSS helpers come from runtime.py. Python 3 standard library only; run
as root. See bench/README.md ("What `exec.py` measures").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing runtime.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime as rb  # noqa: E402  (bundles, spawn/RSS helpers, the Janitor)

TARGET_RATIO = 0.5
NS = ("pid", "mnt", "net", "ipc", "uts")
# What the exec'd process sees: its seccomp mode, its namespaces, its cgroups and the container
# init's (pid 1 in the container), to check it really joined the container.
CHECK_SH = ("grep '^Seccomp:' /proc/self/status; for n in " + " ".join(NS)
            + "; do readlink /proc/self/ns/$n; done; echo ==; cat /proc/self/cgroup; echo ==; cat /proc/1/cgroup")
STRACE_MARKERS = ("execve,clone,clone3,vfork,setns,unshare,open_tree,openat,write,seccomp,capset,"
                  "prctl,wait4,waitid,recvmsg,sendmsg,exit_group")


@dataclass
class Ctr:
    name: str
    path: str
    root: str = ""
    cid: str = ""
    init_pid: int = 0
    error: str | None = None
    wall_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tree_rss_kib: list[int] = field(default_factory=list)
    own_hwm_kib: list[int] = field(default_factory=list)
    check: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    def argv(self, *cmd: str) -> list[str]:
        return [self.path, "--root", self.root, "exec", self.cid, *cmd]


def start(c: Ctr, bundle: str, tmp: str, variant: str) -> None:
    """`run -d` of the sleep container in a fresh --root; records its init pid."""
    c.root = rb.JANITOR.mkdtemp(base=tmp, prefix=f"root-{variant}-{c.name}-")
    c.cid = f"{rb.ID_PREFIX}-{os.getpid()}-exec-{variant[:3]}-{c.name}"
    rb.JANITOR.containers[(c.path, c.root, c.cid)] = None
    # The container inherits these fds: its stderr goes to a file of its own, never a pipe of ours.
    err = os.path.join(tmp, f"run-{variant}-{c.name}.err")
    _, code, _ = rb.spawn_wait([c.path, "--root", c.root, "run", "-d", "--bundle", bundle, c.cid], err)
    if code:
        c.error = f"run -d: exit {code}: {rb.tail(err)}"
        return
    r = subprocess.run([c.path, "--root", c.root, "state", c.cid], capture_output=True, text=True)
    try:
        st = json.loads(r.stdout)
    except ValueError:
        c.error = f"state: exit {r.returncode}: {r.stderr.strip()[-300:]}"
        return
    if st.get("status") != "running" or not st.get("pid"):
        c.error = f"container not running after run -d: {st.get('status')}"
        return
    c.init_pid = int(st["pid"])


def stop(c: Ctr) -> None:
    if c.root and os.path.exists(os.path.join(c.root, c.cid)):
        subprocess.run([c.path, "--root", c.root, "delete", "--force", c.cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
    if not os.path.exists(os.path.join(c.root, c.cid)):
        rb.JANITOR.containers.pop((c.path, c.root, c.cid), None)


def check_exec(c: Ctr, tmp: str, errfile: str) -> None:
    """One untimed exec of CHECK_SH: seccomp mode, namespaces and cgroup of the exec'd process."""
    out = os.path.join(tmp, f"check-{c.name}.out")
    _, code, _ = rb.spawn_wait(c.argv("/bin/sh", "-c", CHECK_SH), errfile, stdout_path=out)
    if code:
        c.error = f"exec: exit {code}: {rb.tail(errfile)}"
        return
    text = open(out, encoding="utf-8", errors="replace").read()
    head, own_cg, init_cg = (text.split("==\n") + ["", ""])[:3]
    lines = head.split()
    mode = lines[1] if len(lines) > 1 and lines[0] == "Seccomp:" else "?"
    c.check["seccomp"] = {"0": "0 (off)", "1": "1 (strict)", "2": "2 (filter)"}.get(mode, mode)
    same = 0
    for n, link in zip(NS, [l for l in head.splitlines() if ":[" in l]):
        try:
            same += os.readlink(f"/proc/{c.init_pid}/ns/{n}") == link.strip()
        except OSError:
            pass
    c.check["ns_same"] = f"{same}/{len(NS)}"
    c.check["cgroup_same"] = bool(own_cg.strip()) and own_cg.strip() == init_cg.strip()


def container_tasks(c: Ctr) -> dict:
    """Processes left in the container after the runs: in its cgroup, and children of its init."""
    procs = None
    try:
        for line in open(f"/proc/{c.init_pid}/cgroup", encoding="utf-8"):
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            cands = []
            if "pids" in ctrls.split(","):
                cands = [f"/sys/fs/cgroup/pids{path}"]
            elif hid == "0":
                cands = [f"/sys/fs/cgroup/unified{path}", f"/sys/fs/cgroup{path}"]
            for d in cands:
                f = os.path.join(d, "cgroup.procs")
                if os.path.exists(f):
                    procs = len(open(f, encoding="utf-8").read().split())
                    break
            if procs is not None and "pids" in ctrls.split(","):
                break
    except OSError:
        pass
    children = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat", encoding="utf-8").read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == c.init_pid:
                    children += 1
            except (OSError, ValueError, IndexError):
                pass
    return {"cgroup_procs": procs, "init_children": children}


def root_entries(c: Ctr) -> list[str]:
    """Everything under --root (what an exec may leave behind)."""
    out = []
    for d, dirs, files in os.walk(c.root):
        out += [os.path.relpath(os.path.join(d, x), c.root) for x in dirs + files]
    return sorted(out)


def measure(variant: str, ctrs: list[Ctr], bundle: str, args: argparse.Namespace, tmp: str) -> None:
    errfile = os.path.join(tmp, "stderr.txt")
    for c in ctrs:
        start(c, bundle, tmp, variant)
        if not c.error:
            check_exec(c, tmp, errfile)
        if c.error:
            rb.log(f"{variant}: {c.name} fails: {c.error}")
    live = [c for c in ctrs if not c.error]
    for _ in range(args.warmup):
        for c in live:
            rb.spawn_wait(c.argv("true"), errfile)
    before = {c.name: root_entries(c) for c in live}
    rb.log(f"{variant}: {args.runs} execs each of {', '.join(c.name for c in live)}")
    for i in range(args.runs):
        k = i % len(live) if live else 0
        for c in live[k:] + live[:k]:  # alternate, rotating who goes first
            ms, code, _ = rb.spawn_wait(c.argv("true"), errfile)
            if code:
                c.failures.append(f"exit {code}: {rb.tail(errfile)}")
            else:
                c.wall_ms.append(ms)
    for _ in range(args.rss_runs):
        for c in live:
            if os.access(rb.GNU_TIME, os.X_OK):
                kib, code = rb.tree_rss(c.argv("true"), tmp)
                if kib is not None and code == 0:
                    c.tree_rss_kib.append(kib)
            kib, code = rb.own_hwm(c.argv("true"))
            if kib is not None and code == 0:
                c.own_hwm_kib.append(kib)
    for c in live:
        c.after = container_tasks(c)
        new = sorted(set(root_entries(c)) - set(before[c.name]))
        if new:
            c.after["new_in_root"] = new
    if args.strace:
        for c in live:
            strace_one(c, variant, args.strace)
    for c in ctrs:
        stop(c)


# --------------------------------------------------------------------------------------------
# strace


def strace_one(c: Ctr, variant: str, outdir: str) -> None:
    """One `exec true` fully traced (-f -ttt -T) into outdir, plus a marker timeline on stdout."""
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, f"exec-{variant}-{c.name}.strace")
    subprocess.run(["strace", "-f", "-ttt", "-T", "-y", "-s", "80", "-o", path] + c.argv("true"),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c.check["strace"] = path


def strace_timeline(path: str, limit: int = 70) -> list[str]:
    """Marker syscalls of a `strace -f -ttt -y` file (cgroup/namespace opens and writes only);
    runs of one syscall by one pid are collapsed into one line."""
    pat = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
    markers = set(STRACE_MARKERS.split(","))
    rows, t0, tn, n = [], None, 0.0, 0
    for line in open(path, encoding="utf-8", errors="replace"):
        m = pat.match(line.rstrip())
        if not m:
            continue
        t, pid, what = float(m.group(2)), m.group(1), m.group(3)
        t0, tn, n = t if t0 is None else t0, t, n + 1
        name = what.split("(")[0]
        if name not in markers or (name in ("openat", "write")
                                   and not re.search(r"cgroup|tasks|/ns/", what)):
            continue
        if rows and rows[-1][1] == pid and rows[-1][2] == name:
            rows[-1][3] += 1
            rows[-1][4] = t
        else:
            rows.append([t, pid, name, 1, t, what])
    if t0 is None:
        return ["(empty trace)"]
    out = [f"total {(tn - t0) * 1000:.2f} ms under strace -f (slow: every syscall stops), {n} lines"]
    prev = t0
    for t, pid, name, count, last, what in rows[:limit]:
        text = what[:110] if count == 1 else f"{name} x{count} (until {(last - t0) * 1000:.2f} ms)"
        out.append(f"{(t - t0) * 1000:8.2f} ms (+{(t - prev) * 1000:6.2f})  {pid:>7}  {text}")
        prev = last
    if len(rows) > limit:
        out.append(f"... {len(rows) - limit} more")
    return out


# --------------------------------------------------------------------------------------------
# Report


def summary(c: Ctr) -> dict:
    d = {"runtime": c.name, "error": c.error, "runs": len(c.wall_ms), "failures": c.failures,
         "wall_ms": c.wall_ms, "tree_rss_kib": c.tree_rss_kib, "own_hwm_kib": c.own_hwm_kib,
         "check": c.check, "after": c.after}
    if c.wall_ms:
        d.update(median_ms=statistics.median(c.wall_ms), p90_ms=rb.p90(c.wall_ms), min_ms=min(c.wall_ms))
    if c.tree_rss_kib:
        d["peak_rss_mib"] = max(c.tree_rss_kib) / 1024
    if c.own_hwm_kib:
        d["own_rss_mib"] = max(c.own_hwm_kib) / 1024
    return d


def print_variant(v: dict) -> None:
    rows = {r["runtime"]: r for r in v["runtimes"]}
    runc_med = rows.get("runc", {}).get("median_ms")
    print(f"\n## Variant `{v['variant']}`: {v['bundle']}\n")
    print("| runtime | median ms | p90 ms | min ms | keel/runc | peak RSS MiB (tree) | own RSS MiB | runs "
          "| seccomp in exec | ns / cgroup as init | left after runs | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|")
    for r in v["runtimes"]:
        if r["error"]:
            print(f"| {r['runtime']} | - | - | - | - | - | - | 0 | - | - | - | FAILED: {r['error'][:300]} |")
            continue
        med = r.get("median_ms")
        ratio = f"{med / runc_med:.2f}" if med and runc_med else "-"
        ck, af = r["check"], r["after"]
        left = f"{af.get('cgroup_procs', '?')} in cgroup, {af.get('init_children', '?')} children of init"
        notes = []
        if r["failures"]:
            notes.append(f"{len(r['failures'])} failed: {r['failures'][0][:150]}")
        if af.get("new_in_root"):
            notes.append(f"new in --root: {', '.join(af['new_in_root'][:5])}")
        print(f"| {r['runtime']} | {rb.fmt(med, '.2f')} | {rb.fmt(r.get('p90_ms'), '.2f')} "
              f"| {rb.fmt(r.get('min_ms'), '.2f')} | {ratio} | {rb.fmt(r.get('peak_rss_mib'), '.2f')} "
              f"| {rb.fmt(r.get('own_rss_mib'), '.2f')} | {r['runs']} | {ck.get('seccomp', '-')} "
              f"| {ck.get('ns_same', '-')} / {'same' if ck.get('cgroup_same') else 'DIFFERENT'} | {left} "
              f"| {'; '.join(notes)} |")
    keel, runc = rows.get("keel", {}), rows.get("runc", {})
    if keel.get("median_ms") and runc.get("median_ms"):
        ratio = keel["median_ms"] / runc["median_ms"]
        print(f"\nTarget keel/runc <= {TARGET_RATIO}: {ratio:.2f} ({'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
              f"min/min {keel['min_ms'] / runc['min_ms']:.2f}.")
    for r in v["runtimes"]:
        if r["check"].get("strace"):
            print(f"\n### {r['runtime']}: one traced `exec true` ({r['check']['strace']})\n\n```")
            print("\n".join(strace_timeline(r["check"]["strace"])))
            print("```")


def cpu_pressure() -> float | None:
    """`some avg10` of /proc/pressure/cpu: % of the last 10 s some task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu", encoding="utf-8") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="timed execs per runtime per variant (default 30, >= 20 advised)")
    p.add_argument("--warmup", type=int, default=3, help="untimed execs per runtime first (default 3)")
    p.add_argument("--rss-runs", type=int, default=5, help="untimed execs for memory (default 5, 0 = off)")
    p.add_argument("--no-seccomp", action="store_true", help="skip the Docker-default-seccomp variant")
    p.add_argument("--strace", metavar="DIR", help="after the timed runs, trace one exec per runtime "
                   "(strace -f -ttt -T) into DIR and print a marker timeline")
    p.add_argument("--json", metavar="FILE", help="write every run as JSON to FILE")
    p.add_argument("--build", action="store_true", help="run scripts/build-release.sh first")
    p.add_argument("--keel", default=str(rb.REPO / "target/release-static/keel-runtime"))
    p.add_argument("--keel-bundle", default=str(rb.REPO / "target/release/keel-bundle"))
    p.add_argument("--runc", default=rb.which("runc"))
    a = p.parse_args()
    if a.runs < 20:
        rb.log(f"--runs {a.runs}: fewer than 20 runs per runtime; medians and p90 will be rough")
    if not os.access(a.keel_bundle, os.X_OK):
        a.keel_bundle = None
    return a


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, rb.on_signal)
    signal.signal(signal.SIGHUP, rb.on_signal)
    if os.geteuid() != 0:
        sys.exit("run as root (containers need it)")
    if "--build" in sys.argv:  # before parse_args, which looks for the built keel-bundle
        rb.build()
    args = parse_args()
    for what in ("keel", "runc"):
        path = getattr(args, what)
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what} binary not found ({path}); run scripts/build-release.sh or pass --{what}")
    if args.strace and not rb.which("strace"):
        sys.exit("--strace needs strace")
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    os.environ.pop("KEEL_RUNTIME_ROOT", None)
    try:
        tmp = rb.JANITOR.mkdtemp(prefix="keel-bench-exec-")
        keel_built = args.keel  # measure a snapshot: a concurrent build may replace it
        args.keel = os.path.join(tmp, "keel-runtime")
        shutil.copy2(keel_built, args.keel)
        load_start = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        psi_start = cpu_pressure()
        spec = rb.runc_spec(args.runc)
        variants = [("default", None, "runc spec, terminal=false, readonly root, no seccomp")]
        if not args.no_seccomp:
            sc, note = rb.docker_seccomp(args.keel_bundle, tmp)
            if sc is None:
                rb.log(f"seccomp variant skipped: {note}")
            else:
                variants.append(("seccomp", sc, note))
        results = []
        for vname, sc, note in variants:
            vdir = rb.JANITOR.mkdtemp(base=tmp, prefix=f"bundle-{vname}-")
            bundle = rb.write_bundle(Path(vdir) / "sleep", spec, ["/bin/sleep", "1000"], sc)
            ctrs = [Ctr("keel", args.keel), Ctr("runc", args.runc)]
            measure(vname, ctrs, bundle, args, tmp)
            results.append({"variant": vname, "bundle": note, "runtimes": [summary(c) for c in ctrs]})
        load_end = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        psi_end = cpu_pressure()
        # PSI when the kernel has it (the load average lags by a minute), else the load average.
        busy = (max(psi_start, psi_end) > 10 if psi_start is not None and psi_end is not None
                else float(load_start[0]) > 0.5 * (os.cpu_count() or 1))

        def first_line(argv):
            r = subprocess.run(argv, capture_output=True, text=True)
            return (r.stdout.splitlines() or ["?"])[0]

        print("# exec benchmark: `RUNTIME --root R exec ID true` into a running busybox `sleep 1000`\n")
        print(f"kernel {platform.release()}, {os.cpu_count()} CPUs; keel-runtime {os.path.getsize(args.keel) / 1e6:.1f} MB "
              f"({first_line([args.keel, '--version'])}, {keel_built} built "
              f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(os.path.getmtime(keel_built)))}); "
              f"{first_line([args.runc, '--version'])}; {args.runs} execs each, alternating, after "
              f"{args.warmup} warm-up execs. Peak RSS (tree) = GNU time %M of the exec command "
              f"(max of {args.rss_runs}; floor `time -f %M /bin/true` = {rb.fmt(rb.rss_floor(), '.2f')} MiB); "
              "own RSS = VmHWM of the runtime process alone, read at its exit under ptrace. "
              f"Load average at start {' '.join(load_start)}, at end {' '.join(load_end)}; CPU pressure "
              f"(some avg10) {rb.fmt(psi_start)} % / {rb.fmt(psi_end)} %"
              + (" (busy machine: expect noise; compare ratios and min, rerun when idle)" if busy else "") + ".")
        for v in results:
            print_variant(v)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"keel": keel_built, "runs": args.runs, "load": [load_start, load_end],
                           "cpu_pressure_avg10": [psi_start, psi_end],
                           "results": results}, f, indent=1)
            rb.log(f"raw numbers written to {args.json}")
        return 0
    except (KeyboardInterrupt, rb.Interrupted) as e:
        rb.log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    finally:
        rb.JANITOR.cleanup()
        left = rb.sweep_cgroups(f"{rb.ID_PREFIX}-{os.getpid()}-")
        if left:
            rb.log(f"removed {len(left)} leftover cgroup dirs: {' '.join(left[:5])}")


if __name__ == "__main__":
    sys.exit(main())

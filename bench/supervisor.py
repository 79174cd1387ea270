#!/usr/bin/env python3
"""keel-containerd against containerd 1.6: the time of `ctr run --rm ... /bin/true`, and idle RSS.

Starts two supervisors side by side, each in a temp dir of its own with its own socket, config,
root, state, FIFO dir and KEEL_SHIM_STATE_DIR (shim_memory.py's hermetic containerd, reused by
import): Debian's containerd 1.6, and keel-containerd run on the very same `config.toml`
(containerd's layout: root, state, [grpc] and [ttrpc] addresses, [debug] level). Then times,
alternating who goes first every round, after untimed warm-up runs,

    ctr --address SOCK run --rm --runtime R [--runc-binary RUNC] --fifo-dir F --rootfs DIR ID /bin/true

on four stacks (the supervisor, the shim, the OCI runtime):

    keel    keel-containerd, containerd-shim-keel-v2, keel-runtime   (the Keel stack)
    ctrd    containerd 1.6,  containerd-shim-runc-v2, runc           (the reference)
    ctrd+k  containerd 1.6,  containerd-shim-keel-v2, keel-runtime   (the supervisor alone differs from keel)
    keel+r  keel-containerd, containerd-shim-runc-v2, runc           (the supervisor alone differs from ctrd)

median of --runs (>= 20) each, and the ratios to the reference; and each daemon's resident set
(smaps_rollup Rss/Pss, VmHWM, threads) once it answers and has been idle for --settle seconds,
and again idle after all the runs. Targets (the issue's): keel <= 1/2 of ctrd's median time,
keel-containerd's idle RSS <= 1/4 of containerd's.

Everything it made is undone on success, failure, Ctrl-C, SIGTERM and SIGHUP, as shim_memory.py
does: tasks and containers deleted, daemons stopped, leftover shims and container processes
killed, runc shim sockets removed, cgroups /<namespace>/<id> removed, temp dirs removed.

Python 3 standard library only. Must run as root. See bench/README.md ("What `supervisor.py`
measures").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports
sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime as rb  # noqa: E402  (busybox rootfs, which, signals)
import shim_memory as sm  # noqa: E402  (the hermetic containerd, ctr runs, cleanup, smaps)

REPO = sm.REPO
TARGET_TIME_RATIO = 0.5
TARGET_RSS_RATIO = 0.25


def log(msg: str) -> None:
    print(f"[supervisor-bench] {msg}", file=sys.stderr, flush=True)


class Supervisor(sm.Bench):
    """One daemon in a temp dir of its own: shim_memory's Bench, whose `args.containerd` is the
    program it starts on the generated config (keel-containerd reads containerd's layout)."""

    def __init__(self, args: argparse.Namespace, name: str, binary: str):
        own = argparse.Namespace(**vars(args))
        own.containerd = binary
        super().__init__(own)
        self.name = name
        self.ns = f"keelsup-{os.getpid()}-{name}"  # the cgroups /<ns>/<id> are the host's
        self.idle: dict[str, dict | None] = {}

    def daemon_pid(self) -> int | None:
        return self.containerd.pid if self.containerd is not None else None

    def sample_idle(self, when: str) -> None:
        """The daemon's smaps_rollup (plus VmHWM, threads) after --settle seconds of quiet."""
        time.sleep(self.args.settle)
        pid = self.daemon_pid()
        self.idle[when] = sm.smaps_rollup(pid) if pid else None


class Stack:
    """A supervisor with one shim and OCI runtime: what `ctr run --rm` is timed through."""

    def __init__(self, name: str, what: str, sup: Supervisor, shim: sm.Shim):
        self.name, self.what, self.sup, self.shim = name, what, sup, shim
        self.ms: list[float] = []
        self.failures: list[dict] = []

    def run_once(self, cid: str, timed: bool = True) -> bool:
        ms, fail = self.sup.run_container(self.shim, cid, detach=False, cmd=["/bin/true"])
        if fail:
            self.failures.append(fail)
            log(f"{self.name}: ctr run --rm {cid} failed (exit {fail['exit']}): {fail['stderr'][-300:]}")
        elif timed:
            self.ms.append(ms)
        return fail is None


def make_stacks(args: argparse.Namespace, keel: Supervisor, ctrd: Supervisor) -> list[Stack]:
    def keel_shim(sup: Supervisor) -> sm.Shim:
        return sm.Shim("keel", sm.KEEL_RUNTIME_NAME, os.path.join(sup.bindir, sm.KEEL_SHIM))

    def runc_shim(sup: Supervisor) -> sm.Shim:
        return sm.Shim("runc", sm.RUNC_RUNTIME_NAME, args.runc_shim,
                       extra=["--runc-binary", args.runc, "--runc-root", sup.runc_root])

    stacks = [
        Stack("keel", "keel-containerd + keel shim + keel-runtime", keel, keel_shim(keel)),
        Stack("ctrd", "containerd 1.6 + runc shim + runc", ctrd, runc_shim(ctrd)),
        Stack("ctrd+k", "containerd 1.6 + keel shim + keel-runtime", ctrd, keel_shim(ctrd)),
        Stack("keel+r", "keel-containerd + runc shim + runc", keel, runc_shim(keel)),
    ]
    return [s for s in stacks if s.name in args.stacks]


def timing(args: argparse.Namespace, stacks: list[Stack]) -> None:
    live = []
    for s in stacks:
        ok = [s.run_once(f"{s.shim.name}-warm-{w}", timed=False) for w in range(args.warmup)]
        if any(ok) or not ok:
            live.append(s)
        else:
            log(f"{s.name}: every warm-up run failed; not timing it")
    log(f"timing ctr run --rm true: {args.runs} runs each of {', '.join(s.name for s in live)}")
    for i in range(args.runs):
        k = i % len(live)
        for s in live[k:] + live[:k]:
            s.run_once(f"{s.shim.name}-rm-{i:03d}")


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "min": ordered[0],
            "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
            "max": ordered[-1], "runs": len(values)}


def fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def print_report(info: dict, stacks: list[Stack], sups: list[Supervisor]) -> dict:
    print("# keel-containerd against containerd 1.6\n")
    print(f"{info['date']}; kernel {info['kernel']}, {info['cpus']} CPUs, cgroups {info['cgroups']}; "
          f"{info['containerd']}; {info['runc']}; load average {' '.join(info['loadavg_start'])} at start, "
          f"{' '.join(info['loadavg_end'])} at end.\n")
    for what in ("keel_containerd", "shim", "keel_runtime"):
        b = info[what]
        print(f"- {what.replace('_', '-')}: `{b['path']}` ({b['size'] / 1e6:.1f} MB, "
              f"{'static' if b['static'] else 'dynamic'}, built {b['mtime']})")
    print(f"- {info['runs']} timed runs per stack after {info['warmup']} warm-up runs, alternating; "
          f"stdio {'--null-io' if info['null_io'] else 'through FIFOs'}; daemons at log level "
          f"{info['log_level']}\n")

    print("## `ctr run --rm --rootfs DIR ID /bin/true`\n")
    print("| stack | median ms | mean ms | min ms | p90 ms | max ms | runs | failures | median / ctrd |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_name = {s.name: stats(s.ms) for s in stacks}
    ref = by_name.get("ctrd")
    for s in stacks:
        st = by_name[s.name]
        r = ratio(st and st["median"], ref and ref["median"])
        print(f"| {s.name}: {s.what} | {fmt(st and st['median'])} | {fmt(st and st['mean'])} "
              f"| {fmt(st and st['min'])} | {fmt(st and st['p90'])} | {fmt(st and st['max'])} "
              f"| {len(s.ms)} | {len(s.failures)} | {fmt(r, '.2f')} |")
    keel_time = ratio((by_name.get("keel") or {}).get("median"), ref and ref["median"])
    if "ctrd+k" in by_name and "keel" in by_name:
        sup_only = ratio((by_name["keel"] or {}).get("median"), (by_name["ctrd+k"] or {}).get("median"))
        print(f"\nSupervisor alone (same shim and runtime): keel / ctrd+k = {fmt(sup_only, '.2f')}", end="")
        if "keel+r" in by_name:
            print(f"; keel+r / ctrd = {fmt(ratio((by_name['keel+r'] or {}).get('median'), ref and ref['median']), '.2f')}",
                  end="")
        print(".")

    print("\n## Idle daemon memory (smaps_rollup of the daemon process alone; shims not included)\n")
    print("| daemon | when | RSS MiB | PSS MiB | Private_Dirty MiB | VmHWM MiB | threads |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for sup in sups:
        for when, roll in sup.idle.items():
            roll = roll or {}
            print(f"| {sup.name} | {when} | {sm.mib(roll.get('Rss'))} | {sm.mib(roll.get('Pss'))} "
                  f"| {sm.mib(roll.get('Private_Dirty'))} | {sm.mib(roll.get('VmHWM'))} "
                  f"| {roll.get('Threads', '-')} |")
    keel_sup = next(s for s in sups if s.name == "keel-containerd")
    ctrd_sup = next(s for s in sups if s.name == "containerd")
    rss = {when: ratio((keel_sup.idle.get(when) or {}).get("Rss"), (ctrd_sup.idle.get(when) or {}).get("Rss"))
           for when in ("after start", "after runs")}

    print("\n## Targets\n")
    met = lambda r, goal: "-" if r is None else ("met" if r <= goal else "NOT met")  # noqa: E731
    print(f"- time: keel / ctrd median {fmt(keel_time, '.2f')} (target <= {TARGET_TIME_RATIO}): "
          f"{met(keel_time, TARGET_TIME_RATIO)}")
    for when, r in rss.items():
        print(f"- idle RSS {when}: keel-containerd / containerd {fmt(r, '.2f')} (target <= {TARGET_RSS_RATIO}): "
              f"{met(r, TARGET_RSS_RATIO)}")
    failures = [(s.name, f) for s in stacks for f in s.failures]
    if failures:
        print("\n## Failures\n")
        for name, f in failures[:8]:
            print(f"### {name} (exit {f['exit']})\n\n```\n$ {f['command']}\n{f['stderr']}\n```\n")
            if f.get("containerd_log"):
                print("daemon log:\n\n```\n" + "\n".join(f["containerd_log"]) + "\n```\n")
    return {"time": by_name, "time_ratio": keel_time, "rss_ratio": rss}


def binary_info(path: str) -> dict:
    return {"path": path, "size": os.path.getsize(path), "static": sm.is_static_elf(path),
            "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))}


def default_binary(*candidates: Path) -> str:
    return sm.default_binary(*candidates)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="timed runs per stack (default 30; use >= 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per stack first (default 3)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds of quiet before each idle memory reading (default 3)")
    p.add_argument("--stacks", default="keel,ctrd,ctrd+k,keel+r",
                   help="which stacks to time, comma-separated (default all four; keel and ctrd are needed "
                        "for the ratio)")
    p.add_argument("--json", metavar="FILE", help="write every run and reading as JSON")
    p.add_argument("--null-io", action="store_true", help="ctr run --null-io (default: FIFOs, as dockerd)")
    p.add_argument("--debug", action="store_true", help="daemons at log level debug (default info)")
    p.add_argument("--timeout", type=float, default=60, help="seconds any one ctr command may take")
    p.add_argument("--build", action="store_true",
                   help="cargo build --release -p keel-containerd and scripts/build-release.sh first")
    p.add_argument("--keel-containerd", default=default_binary(REPO / "target/release/keel-containerd"),
                   help="keel-containerd (default: target/release)")
    p.add_argument("--shim", default=default_binary(REPO / "target/release-static" / sm.KEEL_SHIM,
                                                    REPO / "target/release" / sm.KEEL_SHIM),
                   help="containerd-shim-keel-v2 (default: target/release-static, else target/release)")
    p.add_argument("--keel-runtime", default=default_binary(REPO / "target/release-static/keel-runtime",
                                                            REPO / "target/release/keel-runtime"),
                   help="keel-runtime (default: target/release-static, else target/release)")
    p.add_argument("--runc", default=rb.which("runc"))
    p.add_argument("--runc-shim", default=rb.which(sm.RUNC_SHIM))
    p.add_argument("--containerd", default=rb.which("containerd"))
    p.add_argument("--ctr", default=rb.which("ctr"))
    a = p.parse_args()
    if a.runs < 20:
        log(f"--runs {a.runs}: fewer than 20 runs per stack; medians will be rough")
    a.stacks = [s.strip() for s in a.stacks.split(",") if s.strip()]
    for what in ("keel_containerd", "shim", "keel_runtime", "runc", "runc_shim", "containerd", "ctr"):
        if getattr(a, what):
            setattr(a, what, os.path.abspath(getattr(a, what)))
    return a


def build() -> None:
    for argv in (["cargo", "build", "--release", "-p", "keel-containerd"], ["scripts/build-release.sh"]):
        log(" ".join(argv))
        if subprocess.run(argv, cwd=REPO).returncode != 0:
            sys.exit(f"{' '.join(argv)} failed")


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, rb.on_signal)
    signal.signal(signal.SIGHUP, rb.on_signal)
    if os.geteuid() != 0:
        sys.exit("run as root (containers need it)")
    args = parse_args()
    if args.build:
        build()
    for what, hint in (("keel_containerd", "cargo build --release -p keel-containerd"),
                       ("shim", "scripts/build-release.sh"), ("keel_runtime", "scripts/build-release.sh"),
                       ("runc", "apt-get install runc"), ("runc_shim", "apt-get install containerd"),
                       ("containerd", "apt-get install containerd"), ("ctr", "apt-get install containerd")):
        path = getattr(args, what)
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what.replace('_', '-')} not found ({path}): {hint}, or pass --{what.replace('_', '-')}")
    keel = Supervisor(args, "keel-containerd", args.keel_containerd)
    ctrd = Supervisor(args, "containerd", args.containerd)
    sups = [keel, ctrd]
    try:
        info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "kernel": platform.release(),
                "cpus": os.cpu_count(), "cgroups": sm.cgroup_layout(),
                "containerd": sm.first_line([args.containerd, "--version"]),
                "runc": sm.first_line([args.runc, "--version"]),
                "keel_containerd": binary_info(args.keel_containerd), "shim": binary_info(args.shim),
                "keel_runtime": binary_info(args.keel_runtime), "runs": args.runs, "warmup": args.warmup,
                "null_io": args.null_io, "log_level": "debug" if args.debug else "info",
                "loadavg_start": open("/proc/loadavg", encoding="utf-8").read().split()[:3]}
        for sup in sups:
            rb.busybox_rootfs(Path(sup.rootfs))
            os.mkdir(os.path.join(sup.rootfs, "run"))
            log(f"{sup.name} in {sup.tmp} (namespace {sup.ns})")
            sup.start_containerd()
        for sup in sups:
            sup.sample_idle("after start")
        stacks = make_stacks(args, keel, ctrd)
        timing(args, stacks)
        for sup in sups:
            sup.sample_idle("after runs")
        info["loadavg_end"] = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        summary = print_report(info, stacks, sups)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"info": info, "summary": summary,
                           "runs": {s.name: {"ms": s.ms, "failures": s.failures} for s in stacks},
                           "idle": {sup.name: sup.idle for sup in sups}}, f, indent=1)
            log(f"raw numbers written to {args.json}")
        return 0 if all(s.ms for s in stacks) else 1
    except (KeyboardInterrupt, rb.Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    except RuntimeError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        for sup in sups:
            sup.cleanup()


if __name__ == "__main__":
    sys.exit(main())

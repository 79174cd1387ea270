#!/usr/bin/env python3
"""Side-by-side start-up benchmark of keel-runtime against runc and crun.

Measures `RUNTIME --root TMP run --bundle B ID` of a busybox `/bin/true` container (create, start,
wait, delete), alternating the runtimes, in two bundle variants (no seccomp; Docker's default
seccomp profile) and in two environments:

  host   the machine as it is (cgroups v1 hybrid): keel-runtime, runc (crun refuses the hybrid layout)
  crun   a private mount namespace (`unshare -m --propagation private`, this script re-exec'ed) with
         /sys/fs/cgroup/unified unmounted, where crun works: keel-runtime, runc and crun side by side

plus a floor: `unshare --fork --pid --mount --uts --ipc --net true`.

Python 3 standard library only. Must run as root. See bench/README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INNER_ENV = "KEEL_BENCH_INNER_PARENT_MNTNS"
ID_PREFIX = "keelbench"
FLOOR_ARGV = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "true"]
TARGETS = {"time_ratio": 1 / 3, "time_ratio_seccomp": 1 / 4, "rss_mib": 3.0}


class Interrupted(Exception):
    """Raised from SIGTERM/SIGHUP handlers so that cleanup runs as on Ctrl-C."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


# --------------------------------------------------------------------------------------------
# Cleanup


def mountpoints() -> list[str]:
    """Mount points of this mount namespace (unescaped)."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mp = line.split()[4]
            out.append(mp.encode().decode("unicode_escape"))
    return out


def safe_rmtree(path: str) -> None:
    """Removes a temp dir, first detaching anything mounted under it; never follows a mount."""
    if not os.path.lexists(path):
        return
    real = os.path.realpath(path)
    for mp in sorted(mountpoints(), key=len, reverse=True):
        if mp == real or mp.startswith(real + "/"):
            subprocess.run(["umount", "-l", mp], check=False, stderr=subprocess.DEVNULL)
    if any(mp == real or mp.startswith(real + "/") for mp in mountpoints()):
        log(f"WARNING: something is still mounted under {real}; not removing it")
        return
    shutil.rmtree(real, ignore_errors=True)


@dataclass
class Janitor:
    """Everything the bench made, undone in reverse on success, failure or Ctrl-C."""

    tmpdirs: list[str] = field(default_factory=list)
    containers: dict[tuple[str, str, str], None] = field(default_factory=dict)
    active_pid: int | None = None
    children: list[subprocess.Popen] = field(default_factory=list)
    done: bool = False

    def mkdtemp(self, base: str | None = None, prefix: str = "keel-bench-") -> str:
        d = tempfile.mkdtemp(prefix=prefix, dir=base)
        self.tmpdirs.append(d)
        return d

    def cleanup(self) -> None:
        if self.done:
            return
        self.done = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self._reap_active()
            for p in self.children:
                self._wait_child(p)
            for (rt, root, cid) in list(self.containers):
                if os.path.exists(os.path.join(root, cid)):
                    subprocess.run([rt, "--root", root, "delete", "--force", cid], check=False,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
            self.containers.clear()
            for d in reversed(self.tmpdirs):
                safe_rmtree(d)
            self.tmpdirs.clear()
        finally:
            signal.signal(signal.SIGINT, old)

    def _reap_active(self) -> None:
        pid, self.active_pid = self.active_pid, None
        if pid is None:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    @staticmethod
    def _wait_child(p: subprocess.Popen) -> None:
        try:
            p.wait(timeout=60)  # the inner run cleans up after itself; give it time
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


JANITOR = Janitor()


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def fstype_of(path: str) -> str:
    """Filesystem type of the mount that holds `path` (by the longest mount point prefix)."""
    best, fstype = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].encode().decode("unicode_escape")
            fs = fields[fields.index("-") + 1]
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, fstype = mp, fs
    return fstype


def sweep_cgroups(prefix: str) -> list[str]:
    """Removes cgroup directories whose name starts with `prefix`; returns what it found.

    With /sys/fs/cgroup/unified unmounted (the crun environment), that path is a plain directory
    of the /sys/fs/cgroup tmpfs, shared with the host, where crun still makes `<id>/cgroup.procs`:
    those are real files and are removed with their directory, or they would stay hidden under the
    host's cgroup2 mount."""
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in list(dirnames):
            if d.startswith(prefix):
                found.append(os.path.join(dirpath, d))
                dirnames.remove(d)
    for d in sorted(found, key=len, reverse=True):
        if fstype_of(d) == "tmpfs":
            safe_rmtree(d)
            continue
        for sub, _, _ in sorted(os.walk(d), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(sub)  # a cgroup directory: rmdir only, and only once it has no tasks
            except OSError:
                pass
    return found


# --------------------------------------------------------------------------------------------
# Bundles


def busybox_rootfs(rootfs: Path) -> None:
    busybox = which("busybox")
    if busybox is None:
        sys.exit("busybox is not installed (apt-get install busybox-static)")
    with open(busybox, "rb") as f:
        elf = f.read(1 << 16)
    if b"ld-linux" in elf or b"/lib64/" in elf:
        sys.exit(f"{busybox} is dynamically linked; install busybox-static")
    (rootfs / "bin").mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir()
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    for a in applets.split():
        p = rootfs / "bin" / a
        if not p.exists():
            p.symlink_to("busybox")


def runc_spec(runc: str) -> dict:
    d = tempfile.mkdtemp(prefix="keel-bench-spec-")
    try:
        subprocess.run([runc, "spec", "--bundle", d], check=True)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def docker_seccomp(keel_bundle: str | None, tmp: str) -> tuple[dict | None, str]:
    """Docker's default profile, as keel-bundle writes it into linux.seccomp."""
    if keel_bundle is None:
        return None, "keel-bundle not built (cargo build --release -p keel-integration-tests --bin keel-bundle)"
    d = os.path.join(tmp, "keel-bundle-out")
    r = subprocess.run([keel_bundle, d, "--seccomp-default", "--args", "/bin/true"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"keel-bundle failed: {r.stderr.strip()[-500:]}"
    with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
        sc = json.load(f).get("linux", {}).get("seccomp")
    shutil.rmtree(d, ignore_errors=True)
    if not sc:
        return None, "keel-bundle --seccomp-default wrote no linux.seccomp"
    return sc, f"Docker default profile from keel-bundle ({len(sc.get('syscalls', []))} rules)"


def write_bundle(path: Path, spec: dict, args: list[str], seccomp: dict | None) -> str:
    cfg = json.loads(json.dumps(spec))
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["root"] = {"path": "rootfs", "readonly": True}
    if seccomp is not None:
        cfg.setdefault("linux", {})["seccomp"] = seccomp
    busybox_rootfs(path / "rootfs")
    with open(path / "config.json", "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return str(path)


# --------------------------------------------------------------------------------------------
# Running one process


def spawn_wait(argv: list[str], stderr_path: str, stdout_path: str = "/dev/null") -> tuple[float, int, int]:
    """Runs argv; returns (wall ms, exit code, ru_maxrss KiB: not usable, see tree_rss)."""
    fa = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    JANITOR.active_pid = pid
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    JANITOR.active_pid = None
    return (t1 - t0) / 1e6, os.waitstatus_to_exitcode(status), ru.ru_maxrss


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_TRACEME, PTRACE_CONT, PTRACE_SETOPTIONS = 0, 7, 0x4200
PTRACE_O_TRACEEXEC, PTRACE_O_TRACEEXIT, PTRACE_O_EXITKILL = 0x10, 0x40, 0x100000
PTRACE_EVENT_EXEC, PTRACE_EVENT_EXIT = 4, 6


def own_hwm(argv: list[str]) -> tuple[int | None, int]:
    """VmHWM (KiB) of argv's own process alone, read at its exit under ptrace (not timed).

    Only that process is traced (no fork following), so its children run untouched; the value
    excludes them, unlike ru_maxrss. If it re-execs itself, this is its last image's.
    Returns (KiB or None, exit code)."""
    devnull = os.open("/dev/null", os.O_RDWR)
    pid = os.fork()
    if pid == 0:  # child
        try:
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            _libc.ptrace(PTRACE_TRACEME, 0, None, None)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(devnull)
    JANITOR.active_pid = pid
    hwm = None
    _, status = os.waitpid(pid, 0)  # the SIGTRAP after execve
    if os.WIFSTOPPED(status):
        opts = PTRACE_O_TRACEEXEC | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL
        _libc.ptrace(PTRACE_SETOPTIONS, pid, None, opts)
        _libc.ptrace(PTRACE_CONT, pid, None, None)
        while True:
            _, status = os.waitpid(pid, 0)
            if not os.WIFSTOPPED(status):
                break
            sig, event = os.WSTOPSIG(status), status >> 16
            if sig == signal.SIGTRAP and event == PTRACE_EVENT_EXIT:
                try:
                    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                hwm = int(line.split()[1])
                except OSError:
                    pass
                sig = 0
            elif sig == signal.SIGTRAP and event == PTRACE_EVENT_EXEC:
                sig = 0  # the runtime re-exec'ed itself (crun does, from a sealed copy)
            _libc.ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(sig or None))
    JANITOR.active_pid = None
    return hwm, os.waitstatus_to_exitcode(status)


GNU_TIME = "/usr/bin/time"


def tree_rss(argv: list[str], tmp: str) -> tuple[int | None, int]:
    """ru_maxrss (KiB) of argv and every descendant it reaped, as GNU time's %M reports it.

    Why not wait4 from here: a child's ru_maxrss also keeps the high-water mark of the address
    space it had before its execve, and a child of this script starts as a copy of (or, with
    posix_spawn, shares) the ~18 MiB Python process, so every runtime would read 18 MiB. GNU time
    is a small C program: the floor it adds is its own ~1 MiB (reported as `rss_floor`)."""
    out = os.path.join(tmp, "time.out")
    _, code, _ = spawn_wait([GNU_TIME, "-f", "%M", "-o", out, "--"] + argv, os.path.join(tmp, "time.err"))
    try:
        with open(out, encoding="utf-8") as f:
            return int(f.read().split()[-1]), code
    except (OSError, ValueError, IndexError):
        return None, code


# --------------------------------------------------------------------------------------------
# Runtimes and measurements


@dataclass
class Runtime:
    name: str
    path: str
    is_floor: bool = False
    root: str = ""
    needs_delete: bool = False  # `run` left state: an explicit delete is timed with it
    error: str | None = None
    seccomp_mode: str | None = None
    wall_ms: list[float] = field(default_factory=list)
    tree_rss_kib: list[int] = field(default_factory=list)
    own_hwm_kib: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    leftovers: int = 0
    keeps: list[str] = field(default_factory=list)  # what the runtime keeps in --root besides containers
    fresh_base: str | None = None  # --fresh-root: a new --root for every timed run, made here

    def run_argv(self, bundle: str, cid: str) -> list[str]:
        if self.is_floor:
            return [self.path] + FLOOR_ARGV[1:]
        return [self.path, "--root", self.root, "run", "--bundle", bundle, cid]


class Ids:
    def __init__(self, tag: str):
        self.n = 0
        self.tag = tag

    def next(self, rt: Runtime) -> str:
        self.n += 1
        return f"{ID_PREFIX}-{os.getpid()}-{self.tag}-{rt.name}-{self.n}"


def tail(path: str, n: int = 400) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return " ".join(f.read().split())[-n:]
    except OSError:
        return ""


def one_run(rt: Runtime, bundle: str, ids: Ids, errfile: str) -> tuple[float, int, str]:
    """One measured create+start+wait+delete. Returns (ms, exit code, error text)."""
    if rt.is_floor:
        ms, code, _ = spawn_wait(rt.run_argv(bundle, ""), errfile)
        return ms, code, tail(errfile) if code else ""
    if rt.fresh_base:
        rt.root = JANITOR.mkdtemp(base=rt.fresh_base, prefix="r-")
    cid = ids.next(rt)
    key = (rt.path, rt.root, cid)
    JANITOR.containers[key] = None
    ms, code, _ = spawn_wait(rt.run_argv(bundle, cid), errfile)
    err = tail(errfile) if code else ""
    state_dir = os.path.join(rt.root, cid)
    if rt.needs_delete and os.path.exists(state_dir):
        ms2, code2, _ = spawn_wait([rt.path, "--root", rt.root, "delete", "--force", cid], errfile)
        ms += ms2
        if code2 and not err:
            err = "delete: " + tail(errfile)
    if os.path.exists(state_dir):
        rt.leftovers += 1
        subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.path.exists(state_dir):
        JANITOR.containers.pop(key, None)
        if rt.fresh_base:
            safe_rmtree(rt.root)
            JANITOR.tmpdirs.remove(rt.root)
    return ms, code, err


def probe(rt: Runtime, bundle: str, ids: Ids, errfile: str) -> None:
    """First (untimed) run: does it work, and does `run` leave state behind?"""
    if rt.is_floor:
        _, code, err = one_run(rt, bundle, ids, errfile)
        if code:
            rt.error = f"exit {code}: {err}"
        return
    cid = ids.next(rt)
    key = (rt.path, rt.root, cid)
    JANITOR.containers[key] = None
    _, code, _ = spawn_wait(rt.run_argv(bundle, cid), errfile)
    if code:
        rt.error = f"exit {code}: {tail(errfile)}"
    if os.path.exists(os.path.join(rt.root, cid)):
        rt.needs_delete = True
        subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.path.exists(os.path.join(rt.root, cid)):
        JANITOR.containers.pop(key, None)


def seccomp_mode_inside(rt: Runtime, check_bundle: str, ids: Ids, errfile: str, tmp: str) -> str:
    """The Seccomp: line of /proc/self/status as the container's process sees it."""
    if rt.is_floor:
        return "-"
    cid = ids.next(rt)
    key = (rt.path, rt.root, cid)
    JANITOR.containers[key] = None
    out = os.path.join(tmp, "check.out")
    _, code, _ = spawn_wait(rt.run_argv(check_bundle, cid), errfile, stdout_path=out)
    if os.path.exists(os.path.join(rt.root, cid)):
        subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    JANITOR.containers.pop(key, None)
    if code:
        return f"check failed (exit {code})"
    with open(out, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return {"0": "0 (off)", "1": "1 (strict)", "2": "2 (filter)"}.get(line.split()[1], line.strip())
    return "?"


def measure_variant(name: str, runtimes: list[Runtime], bundle: str, check_bundle: str,
                    args: argparse.Namespace, tmp: str) -> None:
    ids = Ids(name[:3])
    errfile = os.path.join(tmp, "stderr.txt")
    for rt in runtimes:
        if not rt.is_floor:
            rt.root = JANITOR.mkdtemp(base=tmp, prefix=f"root-{rt.name}-")
            if args.fresh_root:
                rt.fresh_base = rt.root
        probe(rt, bundle, ids, errfile)
        if rt.error:
            log(f"{name}: {rt.name} fails: {rt.error}")
            continue
        rt.seccomp_mode = seccomp_mode_inside(rt, check_bundle, ids, errfile, tmp)
    live = [rt for rt in runtimes if not rt.error]
    for _ in range(max(0, args.warmup - 1)):
        for rt in live:
            one_run(rt, bundle, ids, errfile)
    log(f"{name}: {args.runs} runs each of {', '.join(rt.name for rt in live)}"
        + (f" (timing run+delete for {', '.join(r.name for r in live if r.needs_delete)})"
           if any(r.needs_delete for r in live) else ""))
    for i in range(args.runs):
        k = i % len(live) if live else 0
        for rt in live[k:] + live[:k]:  # alternate, rotating who goes first
            ms, code, err = one_run(rt, bundle, ids, errfile)
            if code:
                rt.failures.append(f"exit {code}: {err}")
            else:
                rt.wall_ms.append(ms)
    # Memory, in separate untimed runs: the whole tree under GNU time, then the runtime process
    # alone under ptrace.
    have_time = os.access(GNU_TIME, os.X_OK)
    for i in range(args.rss_runs):
        for rt in live:
            if have_time:
                kib, code = rss_run(rt, bundle, ids, lambda argv: tree_rss(argv, tmp))
                if kib is not None and code == 0:
                    rt.tree_rss_kib.append(kib)
            if not rt.is_floor:
                kib, code = rss_run(rt, bundle, ids, own_hwm)
                if kib is not None and code == 0:
                    rt.own_hwm_kib.append(kib)
    for rt in live:
        if not rt.is_floor and not rt.fresh_base and os.path.isdir(rt.root):
            rt.keeps = sorted(e for e in os.listdir(rt.root) if not e.startswith(ID_PREFIX))


def rss_run(rt: Runtime, bundle: str, ids: Ids, how) -> tuple[int | None, int]:
    """One untimed run through `how` (tree_rss or own_hwm), leaving no container behind."""
    if rt.is_floor:
        return how(rt.run_argv(bundle, ""))
    cid = ids.next(rt)
    key = (rt.path, rt.root, cid)
    JANITOR.containers[key] = None
    result = how(rt.run_argv(bundle, cid))
    if os.path.exists(os.path.join(rt.root, cid)):
        subprocess.run([rt.path, "--root", rt.root, "delete", "--force", cid], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    JANITOR.containers.pop(key, None)
    return result


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def summarize(rt: Runtime) -> dict:
    d = {
        "runtime": rt.name, "path": rt.path, "error": rt.error, "runs": len(rt.wall_ms),
        "failures": rt.failures, "run_leaves_state": rt.needs_delete, "leftover_state": rt.leftovers,
        "keeps_in_root": rt.keeps,
        "seccomp_in_container": rt.seccomp_mode, "wall_ms": rt.wall_ms, "tree_rss_kib": rt.tree_rss_kib,
        "own_hwm_kib": rt.own_hwm_kib,
    }
    if rt.wall_ms:
        d.update(median_ms=statistics.median(rt.wall_ms), p90_ms=p90(rt.wall_ms),
                 min_ms=min(rt.wall_ms))
    if rt.tree_rss_kib:
        d["peak_rss_mib"] = max(rt.tree_rss_kib) / 1024
    if rt.own_hwm_kib:
        d["own_rss_mib"] = max(rt.own_hwm_kib) / 1024
    return d


def run_env(env: str, runtimes_spec: list[tuple[str, str]], args: argparse.Namespace, tmp: str) -> dict:
    """Builds bundles and measures every variant in this environment."""
    spec = runc_spec(args.runc)
    seccomp, seccomp_note = docker_seccomp(args.keel_bundle, tmp)
    variants = [("default", None, "runc spec, terminal=false, readonly root, no seccomp")]
    if seccomp is not None:
        variants.append(("seccomp", seccomp, seccomp_note))
    else:
        log(f"seccomp variant skipped: {seccomp_note}")
    result = {"env": env, "variants": [], "seccomp_skipped": None if seccomp else seccomp_note}
    for vname, sc, note in variants:
        vdir = JANITOR.mkdtemp(base=tmp, prefix=f"bundle-{vname}-")
        bundle = write_bundle(Path(vdir) / "true", spec, ["/bin/true"], sc)
        check = write_bundle(Path(vdir) / "check", spec, ["/bin/cat", "/proc/self/status"], sc)
        rts = [Runtime(n, p) for n, p in runtimes_spec]
        rts.append(Runtime("floor", which("unshare") or "/usr/bin/unshare", is_floor=True))
        measure_variant(vname, rts, bundle, check, args, tmp)
        result["variants"].append({"variant": vname, "bundle": note,
                                   "runtimes": [summarize(rt) for rt in rts]})
    result["leftover_cgroups"] = sweep_cgroups(f"{ID_PREFIX}-{os.getpid()}-")
    return result


# --------------------------------------------------------------------------------------------
# Environments


def crun_host_probe(args: argparse.Namespace, tmp: str) -> str | None:
    """Why crun cannot run on the host as it is (or None if it can)."""
    if not args.crun:
        return "crun not installed"
    d = JANITOR.mkdtemp(base=tmp, prefix="crun-probe-")
    bundle = write_bundle(Path(d) / "b", runc_spec(args.runc), ["/bin/true"], None)
    root = os.path.join(d, "root")
    os.mkdir(root)
    cid = f"{ID_PREFIX}-{os.getpid()}-probe"
    JANITOR.containers[(args.crun, root, cid)] = None
    r = subprocess.run([args.crun, "--root", root, "run", "--bundle", bundle, cid],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if os.path.exists(os.path.join(root, cid)):
        subprocess.run([args.crun, "--root", root, "delete", "--force", cid], check=False,
                       capture_output=True)
    JANITOR.containers.pop((args.crun, root, cid), None)
    return None if r.returncode == 0 else (r.stderr.strip() or f"exit {r.returncode}")


def inner_main(args: argparse.Namespace) -> None:
    """Runs inside `unshare -m --propagation private`: unmount cgroup2 there and measure all three."""
    parent_ns = os.environ.pop(INNER_ENV, "")
    if not parent_ns or os.readlink("/proc/self/ns/mnt") == parent_ns:
        sys.exit("inner run is not in a private mount namespace; refusing to unmount anything")
    setup = []
    if "/sys/fs/cgroup/unified" in mountpoints():
        r = subprocess.run(["umount", "/sys/fs/cgroup/unified"], capture_output=True, text=True)
        setup.append("umount /sys/fs/cgroup/unified: " + ("ok" if r.returncode == 0 else r.stderr.strip()))
    rts = [("keel", args.keel), ("runc", args.runc)]
    if args.crun:
        rts.append(("crun", args.crun))
    res = run_env("crun-env", rts, args, args.inner_tmp)
    res["setup"] = setup
    with open(args.inner_out, "w", encoding="utf-8") as f:
        json.dump(res, f)


def run_inner(args: argparse.Namespace, tmp: str) -> dict:
    out = os.path.join(tmp, "inner.json")
    itmp = JANITOR.mkdtemp(base=tmp, prefix="inner-")
    argv = ["unshare", "-m", "--propagation", "private", sys.executable, os.path.abspath(__file__),
            "--inner-out", out, "--inner-tmp", itmp, "--runs", str(args.runs),
            "--warmup", str(args.warmup), "--rss-runs", str(args.rss_runs),
            "--keel", args.keel, "--runc", args.runc, "--crun", args.crun or ""]
    if args.fresh_root:
        argv.append("--fresh-root")
    if args.keel_bundle:
        argv += ["--keel-bundle", args.keel_bundle]
    env = dict(os.environ, **{INNER_ENV: os.readlink("/proc/self/ns/mnt")})
    p = subprocess.Popen(argv, env=env)
    JANITOR.children.append(p)
    code = p.wait()
    JANITOR.children.remove(p)
    if code != 0 or not os.path.exists(out):
        return {"env": "crun-env", "error": f"inner run exited {code}", "variants": []}
    with open(out, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# Report


def fmt(x, spec=".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_env(res: dict) -> None:
    title = {"host": "host (cgroups v1 hybrid, as the machine is)",
             "crun-env": "private mount ns, /sys/fs/cgroup/unified unmounted (where crun works)"}
    print(f"\n## Environment: {title.get(res['env'], res['env'])}\n")
    if res.get("error"):
        print(f"FAILED: {res['error']}\n")
    for s in res.get("setup", []):
        print(f"- {s}")
    if res.get("crun_host"):
        print(f"- crun on the host as it is: {res['crun_host']}")
    if res.get("seccomp_skipped"):
        print(f"- seccomp variant SKIPPED: {res['seccomp_skipped']}")
    if res.get("leftover_cgroups"):
        by_rt: dict[str, int] = {}
        for d in res["leftover_cgroups"]:
            name = os.path.basename(d).split("-")
            rt = name[3] if len(name) > 4 else "?"
            by_rt[rt] = by_rt.get(rt, 0) + 1
        where = sorted({os.path.dirname(d) for d in res["leftover_cgroups"]})
        print(f"- cgroup dirs left behind after runs (removed by the bench): "
              f"{', '.join(f'{k}: {v}' for k, v in sorted(by_rt.items()))} in {', '.join(where)[:200]}")
    for v in res["variants"]:
        rows = {r["runtime"]: r for r in v["runtimes"]}
        runc_med = rows.get("runc", {}).get("median_ms")
        print(f"\n### Variant `{v['variant']}`: {v['bundle']}\n")
        print("| runtime | median ms | p90 ms | min ms | peak RSS MiB (tree) | own RSS MiB | ratio to runc "
              "| runs | seccomp in ctr | notes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in v["runtimes"]:
            name = "floor: unshare -fpmuin true" if r["runtime"] == "floor" else r["runtime"]
            if r.get("error"):
                print(f"| {name} | - | - | - | - | - | - | 0 | - | FAILED: {r['error'][:300]} |")
                continue
            med = r.get("median_ms")
            ratio = f"{med / runc_med:.2f}" if med and runc_med else "-"
            notes = []
            if r["run_leaves_state"]:
                notes.append("run leaves state: delete timed too")
            if r["failures"]:
                notes.append(f"{len(r['failures'])} failed runs: {r['failures'][0][:150]}")
            if r["leftover_state"]:
                notes.append(f"{r['leftover_state']} runs left state")
            if r.get("keeps_in_root"):
                notes.append(f"keeps in --root (warm across runs): {', '.join(r['keeps_in_root'])}")
            print(f"| {name} | {fmt(med)} | {fmt(r.get('p90_ms'))} | {fmt(r.get('min_ms'))} "
                  f"| {fmt(r.get('peak_rss_mib'), '.2f')} | {fmt(r.get('own_rss_mib'), '.2f')} | {ratio} "
                  f"| {r['runs']} | {r.get('seccomp_in_container') or '-'} | {'; '.join(notes)} |")


def print_targets(results: list[dict]) -> None:
    print("\n## Targets (keel-runtime)\n")
    for res in results:
        for v in res.get("variants", []):
            rows = {r["runtime"]: r for r in v["runtimes"]}
            keel, runc = rows.get("keel", {}), rows.get("runc", {})
            if not keel.get("median_ms") or not runc.get("median_ms"):
                continue
            ratio = keel["median_ms"] / runc["median_ms"]
            goal = TARGETS["time_ratio_seccomp"] if v["variant"] == "seccomp" else TARGETS["time_ratio"]
            line = (f"- {res['env']}/{v['variant']}: time keel/runc = {ratio:.2f} (target <= {goal:.2f}: "
                    f"{'met' if ratio <= goal else 'NOT met'})")
            for label, key in (("peak RSS (tree)", "peak_rss_mib"), ("own-process RSS", "own_rss_mib")):
                if keel.get(key) is not None:
                    ok = "met" if keel[key] <= TARGETS["rss_mib"] else "NOT met"
                    line += f"; {label} {keel[key]:.2f} MiB (target <= {TARGETS['rss_mib']:.0f}: {ok})"
            print(line)


def versions(args: argparse.Namespace) -> dict:
    def first_line(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
        except Exception:  # noqa: BLE001 - informational only
            return None
    return {
        "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "loadavg": open("/proc/loadavg", encoding="utf-8").read().split()[:3],
        "keel": first_line([args.keel, "--version"]), "runc": first_line([args.runc, "--version"]),
        "crun": first_line([args.crun, "--version"]) if args.crun else None,
        "keel_size_bytes": os.path.getsize(args.keel),
        "keel_mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(args.keel))),
        "rss_floor_mib": rss_floor(),
    }


def rss_floor() -> float | None:
    """What GNU time's %M reads for /bin/true: the floor of the tree RSS column."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    r = subprocess.run([GNU_TIME, "-f", "%M", "/bin/true"], capture_output=True, text=True)
    try:
        return int(r.stderr.split()[-1]) / 1024
    except (ValueError, IndexError):
        return None


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="measured runs per runtime per variant (default 30, >= 20 advised)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per runtime first (default 3, min 1)")
    p.add_argument("--rss-runs", type=int, default=5, help="untimed memory runs per runtime (GNU time for the tree, ptrace for the runtime alone; default 5, 0 = off)")
    p.add_argument("--json", metavar="FILE", help="write raw numbers (every run) as JSON to FILE")
    p.add_argument("--build", action="store_true", help="cargo build --release keel-runtime and keel-bundle first")
    p.add_argument("--no-crun-env", action="store_true", help="skip the unshare -m environment (crun)")
    p.add_argument("--no-host-env", action="store_true", help="skip the host environment")
    p.add_argument("--fresh-root", action="store_true",
                   help="a new empty --root for every timed run (default: one --root per runtime and "
                        "variant, so caches a runtime keeps there, e.g. keel's compiled seccomp filters, are warm)")
    p.add_argument("--keel", default=str(REPO / "target/release-static/keel-runtime"),
                   help="keel-runtime to measure (default: the static release of scripts/build-release.sh)")
    p.add_argument("--keel-bundle", default=str(REPO / "target/release/keel-bundle"))
    p.add_argument("--runc", default=which("runc"))
    p.add_argument("--crun", default=which("crun"))
    p.add_argument("--inner-out", help=argparse.SUPPRESS)
    p.add_argument("--inner-tmp", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.warmup = max(1, a.warmup)
    if a.runs < 20 and not a.inner_out:
        log(f"--runs {a.runs}: fewer than 20 runs per runtime; medians and p90 will be rough")
    a.crun = a.crun or None
    if a.keel_bundle and not os.access(a.keel_bundle, os.X_OK):
        a.keel_bundle = None
    return a


def build() -> None:
    """The release build users get: scripts/build-release.sh (static keel-runtime, keel-bundle)."""
    log("scripts/build-release.sh")
    if subprocess.run(["scripts/build-release.sh"], cwd=REPO).returncode != 0:
        sys.exit("building keel-runtime failed")


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if os.geteuid() != 0:
        sys.exit("run as root (containers need it)")
    if "--build" in sys.argv:
        build()
    args = parse_args()
    for what in ("keel", "runc"):
        path = getattr(args, what)
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what} binary not found ({path}); build with --build or pass --{what}")
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    os.environ.pop("KEEL_RUNTIME_ROOT", None)
    try:
        if args.inner_out:
            JANITOR.tmpdirs.append(args.inner_tmp)  # removed here too, whatever happens
            inner_main(args)
            return 0
        tmp = JANITOR.mkdtemp()
        # Measure a snapshot: other builds may replace target/release/keel-runtime mid-run.
        keel_built = args.keel
        args.keel = os.path.join(tmp, "keel-runtime")
        shutil.copy2(keel_built, args.keel)
        load_start = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        results = []
        if not args.no_host_env:
            log("environment: host")
            res = run_env("host", [("keel", args.keel), ("runc", args.runc)], args, tmp)
            res["crun_host"] = crun_host_probe(args, tmp)
            results.append(res)
        if not args.no_crun_env:
            log("environment: unshare -m, /sys/fs/cgroup/unified unmounted")
            results.append(run_inner(args, tmp))
        print("# keel-runtime start-up benchmark: busybox /bin/true, create+start+wait+delete\n")
        info = versions(args)
        info["loadavg_start"] = load_start
        info["keel_built"] = keel_built
        print(f"kernel {info['kernel']}, {info['cpus']} CPUs; keel-runtime {info['keel_size_bytes'] / 1e6:.1f} MB "
              f"({info['keel']}, {keel_built} built {info['keel_mtime']}); {info['runc']}; {info['crun']}; {args.runs} runs each, alternating; "
              "wall time of `RUNTIME --root TMP run --bundle B ID`.\n\n"
              f"Memory ({args.rss_runs} untimed runs each): peak RSS (tree) = max ru_maxrss of the runtime "
              "and every descendant it reaped (its init, the container), via GNU time %M, whose own "
              f"copied pages put a floor of {fmt(info['rss_floor_mib'], '.2f')} MiB under it "
              "(`time -f %M /bin/true`); own RSS = VmHWM of the runtime's own process alone, "
              "read at its exit under ptrace.\n\n"
              f"Load average at start {' '.join(load_start)}, at end {' '.join(info['loadavg'])}"
              + (" (busy machine: expect noise; compare ratios, and rerun when idle)"
                 if float(load_start[0]) > 0.5 * (os.cpu_count() or 1) else "")
              + (f"; --fresh-root: a new empty --root every run" if args.fresh_root else
                 "; one --root per runtime and variant (caches kept there stay warm)") + ".")
        for res in results:
            print_env(res)
        print_targets(results)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"info": info, "runs": args.runs, "results": results}, f, indent=1)
            log(f"raw numbers written to {args.json}")
        return 0
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    finally:
        JANITOR.cleanup()
        left = sweep_cgroups(f"{ID_PREFIX}-{os.getpid()}-")
        if left:
            log(f"removed {len(left)} leftover cgroup dirs: {' '.join(left[:5])}")


if __name__ == "__main__":
    sys.exit(main())

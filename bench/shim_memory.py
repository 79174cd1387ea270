#!/usr/bin/env python3
"""Idle memory of containerd-shim-keel-v2 against containerd-shim-runc-v2, under a real containerd.

Starts a containerd 1.6 of its own (config, root, state, sockets, opt dir, FIFOs, runc root and
KEEL_SHIM_STATE_DIR all in one temp dir; CRI off), with the release `containerd-shim-keel-v2` and
`keel-runtime` first on its PATH. Then runs --count busybox `sleep 3600` containers through each
shim, alternating (`/bin/sleep`: with --rootfs there is no image config, hence no PATH):

    ctr run -d --runtime io.containerd.keel.v2 --rootfs DIR ID /bin/sleep 3600
    ctr run -d --runtime io.containerd.runc.v2 --runc-binary RUNC --rootfs DIR ID /bin/sleep 3600

waits until they are idle, and reads every shim's /proc/PID/smaps_rollup (Rss, Pss,
Private_Dirty): per-shim mean / median / max side by side, the ratio keel/runc, and the target
(<= 2 MiB RSS and <= 1 MiB PSS per idle shim). Then, as a cheap extra, the wall time of
`ctr run --rm ... true` through each shim, alternating (median of --runs).

Everything it made is undone on success, failure, Ctrl-C, SIGTERM and SIGHUP: tasks killed,
containers deleted, containerd stopped, leftover shims and container processes killed, runc shim
sockets removed, the cgroups /<namespace>/<id> removed, mounts under the temp dir detached, the
temp dir removed.

Python 3 standard library only. Must run as root. See bench/README.md ("What `shim_memory.py`
measures").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing runtime.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime as rb  # noqa: E402  (busybox rootfs, safe_rmtree, Interrupted)

REPO = Path(__file__).resolve().parent.parent
KEEL_RUNTIME_NAME = "io.containerd.keel.v2"
RUNC_RUNTIME_NAME = "io.containerd.runc.v2"
KEEL_SHIM = "containerd-shim-keel-v2"
RUNC_SHIM = "containerd-shim-runc-v2"
TARGET_RSS_MIB = 2.0
TARGET_PSS_MIB = 1.0
# containerd 1.6's shims (runc's) put their sockets here whatever containerd's state dir is.
RUNC_SHIM_SOCKET_DIR = "/run/containerd/s"
DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]
SMAPS_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Dirty", "Private_Clean",
                "Shared_Clean", "Anonymous")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[shim-bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Small helpers


def is_static_elf(path: str) -> bool | None:
    """True when the ELF file has no PT_INTERP (no dynamic loader), None if not readable ELF."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return None
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0]
    except Exception:  # noqa: BLE001 - informational only
        return None


def read_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def read_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def flag_value(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a == name:
            return argv[i + 1]
    return None


def smaps_rollup(pid: int) -> dict[str, int] | None:
    """The smaps_rollup fields (KiB) of pid, plus VmHWM, Threads and CPU ticks from status/stat."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[0][:-1] in SMAPS_FIELDS:
                    out[parts[0][:-1]] = int(parts[1])
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("VmHWM:", "Threads:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
    except (OSError, ValueError):
        return None
    out["cpu_ticks"] = cpu_ticks(pid) or 0
    return out


def cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def ppid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.2f}"


def runc_shim_socket(address: str, namespace: str, cid: str) -> str:
    """containerd 1.6's shim.SocketAddress: /run/containerd/s/<sha256(address/ns/id)>."""
    digest = hashlib.sha256(os.path.join(address, namespace, cid).encode()).hexdigest()
    return os.path.join(RUNC_SHIM_SOCKET_DIR, digest)


# --------------------------------------------------------------------------------------------
# The hermetic containerd


def config_toml(d: str, debug: bool) -> str:
    disabled = ", ".join(json.dumps(p) for p in DISABLED_PLUGINS)
    return f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  level = "{'debug' if debug else 'info'}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""


@dataclass
class Shim:
    """One of the two runtimes under measurement."""

    name: str  # keel | runc
    runtime: str  # containerd runtime name
    binary: str  # the shim binary containerd will find on its PATH
    extra: list[str] = field(default_factory=list)  # ctr run flags for this runtime
    ids: list[str] = field(default_factory=list)  # containers running for the memory phase
    start_ms: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # one per container: its shim's numbers
    failures: list[dict] = field(default_factory=list)
    rm_ms: list[float] = field(default_factory=list)
    rm_failures: list[dict] = field(default_factory=list)
    teardown_failures: list[dict] = field(default_factory=list)
    left_after_delete: list[int] = field(default_factory=list)
    stopped: bool = False  # gave up starting more after repeated failures


class Bench:
    """The temp dir, the containerd in it, and everything to undo."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="ksb-")  # short: unix socket paths must fit 108 bytes
        self.ns = f"keelshim-{os.getpid()}"
        self.address = os.path.join(self.tmp, "containerd.sock")
        self.log_path = os.path.join(self.tmp, "containerd.log")
        self.bindir = os.path.join(self.tmp, "bin")
        self.fifo_dir = os.path.join(self.tmp, "fifo")
        self.runc_root = os.path.join(self.tmp, "runc-root")
        self.shim_state = os.path.join(self.tmp, "shim")
        self.rootfs = os.path.join(self.tmp, "rootfs")
        self.containerd: subprocess.Popen | None = None
        self.containerd_log = None
        self.all_ids: list[str] = []
        self.responsive = True
        self.done = False
        self.cleanup_notes: list[str] = []

    # ---- containerd

    def start_containerd(self) -> None:
        for d in (self.bindir, self.fifo_dir, self.runc_root, self.shim_state):
            os.makedirs(d)
        # Measure a snapshot: builds may replace target/ binaries mid-run.
        for src, name in ((self.args.shim, KEEL_SHIM), (self.args.keel_runtime, "keel-runtime")):
            dst = os.path.join(self.bindir, name)
            shutil.copy2(src, dst)
            # Written back before anything maps it: a fresh copy's page-cache pages are dirty
            # until writeback, and smaps would count them as (shared or private) dirty.
            fd = os.open(dst, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        cfg = os.path.join(self.tmp, "config.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(config_toml(self.tmp, self.args.debug))
        env = dict(os.environ)
        for var in ("KEEL_SHIM_RUNTIME", "KEEL_RUNTIME_ROOT", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"):
            env.pop(var, None)
        env["PATH"] = self.bindir + ":" + env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        env["KEEL_SHIM_STATE_DIR"] = self.shim_state
        self.containerd_log = open(self.log_path, "ab")
        # Its own session: a Ctrl-C on the terminal reaches us, and we stop it in order.
        self.containerd = subprocess.Popen([self.args.containerd, "--config", cfg], env=env,
                                           stdin=subprocess.DEVNULL, stdout=self.containerd_log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.containerd.poll() is not None:
                raise RuntimeError(f"containerd exited {self.containerd.returncode}; its log ends:\n"
                                   + self.log_tail(20))
            if os.path.exists(self.address):
                r = self.ctr(["version"], timeout=5, namespace=False)
                if r.returncode == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("containerd did not answer within 30 s; its log ends:\n" + self.log_tail(20))

    def log_tail(self, n: int) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_offset(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, offset: int, cid: str, n: int = 25) -> list[str]:
        """containerd log lines written since `offset` that are errors/warnings or name `cid`."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        lines = [ln for ln in text.splitlines()
                 if "level=error" in ln or "level=warn" in ln or cid in ln or "panic" in ln]
        return lines[-n:]

    def ctr(self, args: list[str], timeout: float | None = None, namespace: bool = True,
            stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        argv = [self.args.ctr, "--address", self.address]
        if namespace:
            argv += ["--namespace", self.ns]
        env = {k: v for k, v in os.environ.items()
               if k not in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SNAPSHOTTER")}
        try:
            return subprocess.run(argv + args, stdin=subprocess.DEVNULL, stdout=stdout,
                                  stderr=subprocess.PIPE, text=True, env=env,
                                  timeout=timeout or self.args.timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv + args, -1, "", f"timed out after {e.timeout:.0f} s")

    def run_argv(self, shim: Shim, cid: str, *, detach: bool, cmd: list[str]) -> list[str]:
        mode = ["-d"] if detach else ["--rm"]
        io = ["--null-io"] if self.args.null_io else ["--fifo-dir", self.fifo_dir]
        return ["run", *mode, "--runtime", shim.runtime, *shim.extra, *io, "--rootfs", self.rootfs, cid, *cmd]

    def run_container(self, shim: Shim, cid: str, *, detach: bool, cmd: list[str]) -> tuple[float, dict | None]:
        """One `ctr run`; returns (wall ms, failure record or None)."""
        self.all_ids.append(cid)
        argv = self.run_argv(shim, cid, detach=detach, cmd=cmd)
        offset = self.log_offset()
        t0 = time.perf_counter()
        r = self.ctr(argv, stdout=subprocess.DEVNULL if not detach else subprocess.PIPE)
        ms = (time.perf_counter() - t0) * 1000
        if r.returncode == 0:
            return ms, None
        time.sleep(0.3)  # let the shim's last log lines reach containerd's log
        return ms, {
            "command": " ".join(["ctr", "--address", self.address, "--namespace", self.ns] + argv),
            "exit": r.returncode, "stderr": (r.stderr or "").strip()[-2000:],
            "containerd_log": self.log_since(offset, cid),
        }

    def task_pids(self) -> dict[str, tuple[int, str]]:
        """`ctr task ls`: id -> (pid, status)."""
        r = self.ctr(["task", "ls"], timeout=30)
        out = {}
        for line in (r.stdout or "").splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                try:
                    out[cols[0]] = (int(cols[1]), cols[2])
                except ValueError:
                    pass
        return out

    # ---- cleanup

    def our_processes(self) -> list[int]:
        """Processes that are ours beyond doubt: their exe or argv names our temp dir (shims carry
        `-address TMP/containerd.sock`, runc `--root TMP/runc-root`, our copies live in TMP/bin)."""
        me = os.getpid()
        pids = []
        for pid in all_pids():
            if pid == me:
                continue
            if self.containerd is not None and pid == self.containerd.pid:
                continue
            exe = read_exe(pid)
            argv = read_cmdline(pid)
            if exe.startswith(self.tmp + "/") or any(self.tmp + "/" in a for a in argv):
                pids.append(pid)
        return pids

    def cgroup_dirs(self) -> list[str]:
        """Every cgroup directory under /<namespace> in every hierarchy (deepest first)."""
        found = []
        for h in sorted(os.listdir("/sys/fs/cgroup")):
            top = os.path.join("/sys/fs/cgroup", h, self.ns)
            if os.path.isdir(top) and not os.path.islink(top):
                for dirpath, _, _ in os.walk(top):
                    found.append(dirpath)
        return sorted(found, key=len, reverse=True)

    def kill_cgroup_members(self) -> int:
        n = 0
        for d in self.cgroup_dirs():
            state = os.path.join(d, "freezer.state")
            try:
                if os.path.exists(state) and open(state, encoding="utf-8").read().strip() != "THAWED":
                    with open(state, "w", encoding="utf-8") as f:
                        f.write("THAWED")
            except OSError:
                pass
            try:
                with open(os.path.join(d, "cgroup.procs"), encoding="utf-8") as f:
                    pids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    n += 1
                except ProcessLookupError:
                    pass
        return n

    def delete_everything(self) -> None:
        """Through containerd, bounded: kill and delete every task and container of our namespace."""
        quick = 15
        ids = set(self.all_ids)
        for what in ("task", "containers"):
            r = self.ctr([what, "ls", "-q"], timeout=quick)
            if r.returncode == -1:
                self.responsive = False
                self.cleanup_notes.append(f"ctr {what} ls timed out; containerd not asked again")
                return
            ids.update(x.strip() for x in (r.stdout or "").splitlines() if x.strip())
        tasks = self.task_pids()
        for cid in sorted(ids):
            if cid in tasks:
                for argv in (["task", "kill", "-a", "-s", "SIGKILL", cid], ["task", "delete", "-f", cid]):
                    if self.ctr(argv, timeout=quick).returncode == -1:
                        self.responsive = False
                        self.cleanup_notes.append(f"ctr {' '.join(argv)} timed out; containerd not asked again")
                        return
            if self.ctr(["containers", "delete", cid], timeout=quick).returncode == -1:
                self.responsive = False
                self.cleanup_notes.append(f"ctr containers delete {cid} timed out; containerd not asked again")
                return

    def cleanup(self) -> None:
        if self.done:
            return
        self.done = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.containerd is not None and self.containerd.poll() is None:
                if self.responsive:
                    self.delete_everything()
                self.containerd.terminate()
                try:
                    self.containerd.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.containerd.kill()
                    self.containerd.wait()
            if self.containerd_log is not None:
                self.containerd_log.close()
            killed = self.kill_cgroup_members()
            if killed:
                self.cleanup_notes.append(f"killed {killed} container processes left in /{self.ns}/* cgroups")
            leftovers = self.our_processes()
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if leftovers:
                self.cleanup_notes.append(
                    f"killed {len(leftovers)} leftover processes (shims/runtimes) after containerd stopped: "
                    + ", ".join(f"{p}" for p in leftovers[:10]))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (self.our_processes() or self.cgroup_has_procs()):
                time.sleep(0.1)
            try:  # what the stock shim makes when no --runc-root is given (our namespace only)
                os.rmdir(os.path.join("/run/containerd/runc", self.ns))
            except OSError:
                pass
            for cid in self.all_ids:
                sock = runc_shim_socket(self.address, self.ns, cid)
                if os.path.lexists(sock):
                    try:
                        os.unlink(sock)
                        self.cleanup_notes.append(f"removed stale runc shim socket {sock}")
                    except OSError:
                        pass
            left = []
            for _ in range(20):
                left = []
                for d in self.cgroup_dirs():
                    try:
                        os.rmdir(d)  # a cgroup: rmdir only, never rm -r
                    except OSError:
                        left.append(d)
                if not left:
                    break
                time.sleep(0.1)
            if left:
                self.cleanup_notes.append(f"WARNING: could not remove cgroups: {' '.join(left[:5])}")
            rb.safe_rmtree(self.tmp)
            if os.path.exists(self.tmp):
                self.cleanup_notes.append(f"WARNING: {self.tmp} is still there (a mount under it?)")
        finally:
            signal.signal(signal.SIGINT, old)
        for note in self.cleanup_notes:
            log(f"cleanup: {note}")

    def cgroup_has_procs(self) -> bool:
        for d in self.cgroup_dirs():
            try:
                with open(os.path.join(d, "cgroup.procs"), encoding="utf-8") as f:
                    if f.read().strip():
                        return True
            except OSError:
                pass
        return False


# --------------------------------------------------------------------------------------------
# Measurements


def shim_processes(bench: Bench) -> dict[str, list[int]]:
    """container id -> pids of shim processes (containerd-shim-*) of our namespace and containerd."""
    by_id: dict[str, list[int]] = {}
    for pid in all_pids():
        argv = read_cmdline(pid)
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            exe = os.path.basename(read_exe(pid))
            if not exe.startswith("containerd-shim"):
                continue
        if flag_value(argv, "-address") != bench.address or flag_value(argv, "-namespace") != bench.ns:
            continue
        cid = flag_value(argv, "-id")
        if cid:
            by_id.setdefault(cid, []).append(pid)
    return by_id


def start_phase(bench: Bench, shims: list[Shim]) -> None:
    """--count `sleep 3600` containers per shim, alternating; gives up on a shim after 3 failures
    in a row."""
    args = bench.args
    for i in range(args.count):
        for s in shims[i % 2:] + shims[:i % 2]:
            if s.stopped:
                continue
            cid = f"{s.name}-{i:03d}"
            ms, fail = bench.run_container(s, cid, detach=True, cmd=["/bin/sleep", "3600"])
            if fail:
                s.failures.append(fail)
                log(f"{s.name}: ctr run -d {cid} failed (exit {fail['exit']}): {fail['stderr'][-300:]}")
                if len(s.failures) >= 3 and not s.ids:
                    s.stopped = True
                    log(f"{s.name}: 3 failures and no success; not starting more {s.name} containers")
                continue
            s.ids.append(cid)
            s.start_ms.append(ms)
    log("started: " + ", ".join(f"{s.name} {len(s.ids)}/{args.count}" for s in shims))


def measure_phase(bench: Bench, shims: list[Shim]) -> dict:
    """Waits until idle, then reads every shim's smaps_rollup; CPU over an idle window."""
    args = bench.args
    log(f"settling {args.settle:.0f} s")
    time.sleep(args.settle)
    tasks = bench.task_pids()
    procs = shim_processes(bench)
    t0 = {pid: cpu_ticks(pid) for pids in procs.values() for pid in pids}
    time.sleep(args.idle_window)
    procs = shim_processes(bench)
    for s in shims:
        for cid in s.ids:
            sample: dict = {"id": cid}
            pid, status = tasks.get(cid, (0, "missing"))
            sample["task_pid"], sample["task_status"] = pid, status
            sample["task_cmdline"] = " ".join(read_cmdline(pid)) if pid else ""
            pids = list(procs.get(cid, []))
            parent = ppid_of(pid) if pid else None
            sample["task_parent_is_shim"] = parent in pids if parent else False
            if parent and parent not in pids and os.path.basename(read_exe(parent)).startswith("containerd-shim"):
                pids.append(parent)  # a shim that does not carry -id in its argv
            sample["shim_pids"] = pids
            sample["shim_exes"] = sorted({read_exe(p) for p in pids})
            total: dict[str, int] = {}
            for p in pids:
                roll = smaps_rollup(p)
                if roll is None:
                    continue
                ticks0 = t0.get(p)
                roll["idle_cpu_ms"] = (int((roll["cpu_ticks"] - ticks0) * 1000 / CLK_TCK)
                                       if ticks0 is not None else 0)
                for k, v in roll.items():
                    if k == "VmHWM":
                        total[k] = max(total.get(k, 0), v)
                    elif k != "cpu_ticks":
                        total[k] = total.get(k, 0) + v
            sample.update(total)
            sample["cgroup_procs"] = count_cgroup_procs(bench.ns, cid)
            s.samples.append(sample)
    return {"settle_s": args.settle, "idle_window_s": args.idle_window}


def count_cgroup_procs(ns: str, cid: str) -> int | None:
    """How many processes are in the container's pids cgroup (1 = only `sleep`)."""
    for h in ("pids", "memory", "freezer"):
        try:
            with open(f"/sys/fs/cgroup/{h}/{ns}/{cid}/cgroup.procs", encoding="utf-8") as f:
                return len(f.read().split())
        except OSError:
            continue
    return None


def teardown_phase(bench: Bench, shims: list[Shim]) -> None:
    """Kills and deletes the memory phase's containers through containerd; checks their shims exit."""
    for s in shims:
        for cid in s.ids:
            for argv in (["task", "kill", "-s", "SIGKILL", cid], ["task", "delete", "-f", cid],
                         ["containers", "delete", cid]):
                offset = bench.log_offset()
                r = bench.ctr(argv, timeout=30)
                if r.returncode != 0:
                    s.teardown_failures.append({
                        "command": "ctr " + " ".join(argv), "exit": r.returncode,
                        "stderr": (r.stderr or "").strip()[-1000:],
                        "containerd_log": bench.log_since(offset, cid, 10)})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        procs = shim_processes(bench)
        if not any(cid in procs for s in shims for cid in s.ids):
            break
        time.sleep(0.2)
    procs = shim_processes(bench)
    for s in shims:
        s.left_after_delete = [p for cid in s.ids for p in procs.get(cid, [])]


def timing_phase(bench: Bench, shims: list[Shim]) -> None:
    """`ctr run --rm ... true` through each shim, alternating, rotating who goes first."""
    args = bench.args
    live = [s for s in shims if not s.stopped]
    if args.runs <= 0 or not live:
        return
    for s in live:  # warm-up, untimed
        _, fail = bench.run_container(s, f"{s.name}-rm-warm", detach=False, cmd=["/bin/true"])
        if fail:
            s.rm_failures.append(fail)
    log(f"timing ctr run --rm true: {args.runs} runs each of {', '.join(s.name for s in live)}")
    for i in range(args.runs):
        k = i % len(live)
        for s in live[k:] + live[:k]:
            ms, fail = bench.run_container(s, f"{s.name}-rm-{i:03d}", detach=False, cmd=["/bin/true"])
            if fail:
                s.rm_failures.append(fail)
            else:
                s.rm_ms.append(ms)


# --------------------------------------------------------------------------------------------
# Report


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values),
            "min": min(values)}


def summarize(s: Shim) -> dict:
    ok = [x for x in s.samples if x.get("shim_pids") and "Rss" in x]
    out = {"shim": s.name, "runtime": s.runtime, "binary": s.binary, "containers": len(s.ids),
           "measured": len(ok), "start_failures": s.failures, "rm_failures": s.rm_failures,
           "teardown_failures": s.teardown_failures, "shims_left_after_delete": s.left_after_delete,
           "samples": s.samples, "ctr_run_d_ms": s.start_ms, "ctr_run_rm_ms": s.rm_ms}
    for key in ("Rss", "Pss", "Private_Dirty", "Pss_Anon", "Pss_File", "VmHWM", "Threads", "idle_cpu_ms"):
        out[key] = stats([x[key] for x in ok if key in x])
    out["processes"] = stats([len(x["shim_pids"]) for x in ok])
    out["ctr_run_d"] = stats(s.start_ms)
    out["ctr_run_rm"] = stats(s.rm_ms)
    out["tasks_not_running"] = [x["id"] for x in s.samples if x["task_status"] != "RUNNING"]
    out["without_shim"] = [x["id"] for x in s.samples if not x.get("shim_pids")]
    out["cgroup_procs"] = sorted({x.get("cgroup_procs") for x in s.samples}, key=lambda v: (v is None, v))
    return out


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: dict | None, b: dict | None, key: str) -> str:
    if not a or not b or not b[key]:
        return "-"
    return f"{a[key] / b[key]:.2f}"


def print_report(info: dict, keel: dict, runc: dict) -> None:
    print("# Idle shim memory: containerd-shim-keel-v2 vs containerd-shim-runc-v2\n")
    print(f"{info['date']}; kernel {info['kernel']}, {info['cpus']} CPUs, {info['mem_total_mib']} MiB RAM, "
          f"cgroups {info['cgroups']}; {info['containerd']}; {info['runc']}.\n")
    print(f"- keel shim: `{info['shim_built']}` ({info['shim_size_bytes'] / 1e6:.1f} MB, "
          f"{'static' if info['shim_static'] else 'dynamic'}, built {info['shim_mtime']}); runtime "
          f"`{info['keel_runtime_built']}` ({'static' if info['keel_runtime_static'] else 'dynamic'}, "
          f"built {info['keel_runtime_mtime']})")
    print(f"- runc shim: `{info['runc_shim']}` ({info['runc_shim_size_bytes'] / 1e6:.1f} MB, "
          f"{'static' if info['runc_shim_static'] else 'dynamic'}), `--runc-binary {info['runc_path']}`")
    print(f"- {info['count']} `/bin/sleep 3600` containers per shim (busybox rootfs, `ctr run -d`, "
          f"{'--null-io' if info['null_io'] else 'stdio through FIFOs'}), started alternately; "
          f"measured after {info['settle_s']:.0f} s idle, CPU over the next {info['idle_window_s']:.0f} s; "
          f"containerd log level {info['log_level']}")
    print(f"- load average at start {' '.join(info['loadavg_start'])}, at end {' '.join(info['loadavg_end'])}\n")

    print("## Per idle shim (smaps_rollup; a container's shim = all its shim processes, summed)\n")
    print("| per shim | keel mean | keel median | keel max | runc mean | runc median | runc max "
          "| keel/runc mean | keel/runc median |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("Rss MiB", "Rss", mib), ("Pss MiB", "Pss", mib), ("Private_Dirty MiB", "Private_Dirty", mib),
            ("Pss_Anon MiB", "Pss_Anon", mib), ("Pss_File MiB", "Pss_File", mib),
            ("VmHWM (peak RSS) MiB", "VmHWM", mib),
            ("processes", "processes", lambda v: fmt(v, ".1f")), ("threads", "Threads", lambda v: fmt(v, ".1f")),
            (f"CPU ms while idle ({info['idle_window_s']:.0f} s)", "idle_cpu_ms", lambda v: fmt(v, ".1f"))]
    for label, key, f in rows:
        k, r = keel.get(key), runc.get(key)
        cells = [f(k[m]) if k else "-" for m in ("mean", "median", "max")]
        cells += [f(r[m]) if r else "-" for m in ("mean", "median", "max")]
        print(f"| {label} | " + " | ".join(cells) + f" | {ratio(k, r, 'mean')} | {ratio(k, r, 'median')} |")
    print(f"\nMeasured shims: keel {keel['measured']}/{info['count']}, runc {runc['measured']}/{info['count']}. "
          "Pss shares each page among the processes mapping it, so it falls as more shims of the same "
          "binary run; both shims have the same count here.\n")

    print("## Target (keel shim, per idle shim)\n")
    if keel.get("Rss") and keel.get("Pss"):
        for label, key, goal in (("RSS", "Rss", TARGET_RSS_MIB), ("PSS", "Pss", TARGET_PSS_MIB)):
            st = keel[key]
            med, mx = st["median"] / 1024, st["max"] / 1024
            every = "every shim within it" if mx <= goal else f"max {mx:.2f} MiB over"
            print(f"- target: {label} <= {goal:.0f} MiB: median {med:.2f} MiB, max {mx:.2f} MiB -> "
                  f"{'met' if med <= goal else 'NOT met'} ({every})")
    else:
        print("- target: not measured (no keel shim ran)")

    print("\n## `ctr run --rm ... true` wall time (cheap extra; alternating)\n")
    print("| shim | median ms | mean ms | min ms | max ms | runs | failures |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for d in (keel, runc):
        st = d.get("ctr_run_rm")
        print(f"| {d['shim']} | {fmt(st and st['median'], '.1f')} | {fmt(st and st['mean'], '.1f')} "
              f"| {fmt(st and st['min'], '.1f')} | {fmt(st and st['max'], '.1f')} | {len(d['ctr_run_rm_ms'])} "
              f"| {len(d['rm_failures'])} |")
    print(f"\nkeel/runc median: {ratio(keel.get('ctr_run_rm'), runc.get('ctr_run_rm'), 'median')}; "
          f"`ctr run -d sleep` (memory phase) median keel {fmt(keel['ctr_run_d'] and keel['ctr_run_d']['median'], '.1f')} ms, "
          f"runc {fmt(runc['ctr_run_d'] and runc['ctr_run_d']['median'], '.1f')} ms "
          f"(ratio {ratio(keel.get('ctr_run_d'), runc.get('ctr_run_d'), 'median')}).")

    print("\n## Checks\n")
    for d in (keel, runc):
        print(f"- {d['shim']}: tasks not RUNNING at measurement: {len(d['tasks_not_running'])}"
              f"{' (' + ', '.join(d['tasks_not_running'][:5]) + ')' if d['tasks_not_running'] else ''}; "
              f"containers without a shim process found: {len(d['without_shim'])}; processes in a "
              f"container's cgroup: {', '.join(str(v) for v in d['cgroup_procs']) or '-'}; shim processes "
              f"left after task delete: {len(d['shims_left_after_delete'])}; teardown errors: "
              f"{len(d['teardown_failures'])}")
    failures = [(d["shim"], what, f) for d in (keel, runc)
                for what, key in (("ctr run -d", "start_failures"), ("ctr run --rm", "rm_failures"),
                                  ("teardown", "teardown_failures"))
                for f in d[key]]
    if failures:
        print("\n## Failures\n")
        for shim, what, f in failures[:12]:
            print(f"### {shim}: {what} (exit {f['exit']})\n\n```\n$ {f['command']}\n{f['stderr']}\n```\n")
            if f.get("containerd_log"):
                print("containerd log:\n\n```\n" + "\n".join(f["containerd_log"]) + "\n```\n")
        if len(failures) > 12:
            print(f"... and {len(failures) - 12} more (see --json)")


def cgroup_layout() -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            kinds = {ln.split(" - ")[1].split()[0] for ln in f if "/sys/fs/cgroup" in ln.split()[4]}
    except (OSError, IndexError):
        return "?"
    if "cgroup" in kinds:
        return "v1 hybrid" if "cgroup2" in kinds else "v1"
    return "v2" if "cgroup2" in kinds else "?"


def versions(args: argparse.Namespace, bench: Bench) -> dict:
    def mtime(p: str) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(p)))
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_total = int(f.readline().split()[1]) // 1024
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "kernel": platform.release(), "cpus": os.cpu_count(),
        "mem_total_mib": mem_total, "cgroups": cgroup_layout(),
        "containerd": first_line([args.containerd, "--version"]), "ctr": first_line([args.ctr, "--version"]),
        "runc": first_line([args.runc, "--version"]), "runc_path": args.runc,
        "shim_built": args.shim, "shim_size_bytes": os.path.getsize(args.shim),
        "shim_static": is_static_elf(args.shim), "shim_mtime": mtime(args.shim),
        "keel_runtime_built": args.keel_runtime, "keel_runtime_static": is_static_elf(args.keel_runtime),
        "keel_runtime_mtime": mtime(args.keel_runtime),
        "runc_shim": args.runc_shim, "runc_shim_size_bytes": os.path.getsize(args.runc_shim),
        "runc_shim_static": is_static_elf(args.runc_shim),
        "count": args.count, "runs": args.runs, "null_io": args.null_io,
        "log_level": "debug" if args.debug else "info", "namespace": bench.ns,
    }


# --------------------------------------------------------------------------------------------


def default_binary(*candidates: Path) -> str:
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c)
    return str(candidates[-1])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20, help="idle containers per shim (default 20)")
    p.add_argument("--runs", type=int, default=10,
                   help="timed `ctr run --rm true` per shim (default 10; 0 = skip)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait after the last start before reading memory (default 3)")
    p.add_argument("--idle-window", type=float, default=2.0,
                   help="seconds over which the shims' CPU time is read while idle (default 2)")
    p.add_argument("--json", metavar="FILE", help="write every shim's numbers and every run as JSON")
    p.add_argument("--null-io", action="store_true",
                   help="ctr run --null-io (default: stdio through FIFOs in the temp dir, as dockerd does)")
    p.add_argument("--debug", action="store_true",
                   help="containerd at log level debug (its shims then run with -debug); default info")
    p.add_argument("--timeout", type=float, default=60, help="seconds any one ctr command may take (default 60)")
    p.add_argument("--shim", default=default_binary(REPO / "target/release-static" / KEEL_SHIM,
                                                    REPO / "target/release" / KEEL_SHIM),
                   help="containerd-shim-keel-v2 (default: target/release-static, else target/release)")
    p.add_argument("--keel-runtime", default=default_binary(REPO / "target/release-static/keel-runtime",
                                                            REPO / "target/release/keel-runtime"),
                   help="keel-runtime the keel shim runs (default: target/release-static, else target/release)")
    p.add_argument("--runc", default=rb.which("runc"))
    p.add_argument("--runc-shim", default=rb.which(RUNC_SHIM))
    p.add_argument("--containerd", default=rb.which("containerd"))
    p.add_argument("--ctr", default=rb.which("ctr"))
    a = p.parse_args()
    if a.count < 1:
        p.error("--count must be at least 1")
    for what in ("shim", "keel_runtime", "runc", "runc_shim", "containerd", "ctr"):
        if getattr(a, what):
            setattr(a, what, os.path.abspath(getattr(a, what)))
    return a


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, rb.on_signal)
    signal.signal(signal.SIGHUP, rb.on_signal)
    if os.geteuid() != 0:
        sys.exit("run as root (containers need it)")
    args = parse_args()
    for what, hint in (("shim", "cargo build --release -p keel-shim"),
                       ("keel_runtime", "scripts/build-release.sh"), ("runc", "apt-get install runc"),
                       ("runc_shim", "apt-get install containerd"), ("containerd", "apt-get install containerd"),
                       ("ctr", "apt-get install containerd")):
        path = getattr(args, what)
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what.replace('_', '-')} not found ({path}): {hint}, or pass --{what.replace('_', '-')}")
    bench = Bench(args)
    keel = Shim("keel", KEEL_RUNTIME_NAME, os.path.join(bench.bindir, KEEL_SHIM))
    runc = Shim("runc", RUNC_RUNTIME_NAME, args.runc_shim,
                extra=["--runc-binary", args.runc, "--runc-root", bench.runc_root])
    shims = [keel, runc]
    try:
        info = versions(args, bench)
        info["loadavg_start"] = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        rb.busybox_rootfs(Path(bench.rootfs))
        os.mkdir(os.path.join(bench.rootfs, "run"))
        log(f"containerd in {bench.tmp} (namespace {bench.ns})")
        bench.start_containerd()
        log(f"starting {args.count} sleep containers per shim")
        start_phase(bench, shims)
        info.update(measure_phase(bench, shims))
        log("deleting the idle containers")
        teardown_phase(bench, shims)
        timing_phase(bench, shims)
        info["loadavg_end"] = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
        k, r = summarize(keel), summarize(runc)
        print_report(info, k, r)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump({"info": info, "keel": k, "runc": r}, f, indent=1)
            log(f"raw numbers written to {args.json}")
        return 0 if k["measured"] and r["measured"] else 1
    except (KeyboardInterrupt, rb.Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    except RuntimeError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())

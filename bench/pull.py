#!/usr/bin/env python3
"""`ctr images pull` of a ~200 MB layer: keel-containerd against containerd 1.6.

Builds an OCI image with one big layer of realistic content (a few hundred files, half random
bytes, half text made of words), compressed twice: gzip (`tag gzip`) and zstd (`tag zstd`), and
pushes both to a Debian `docker-registry` of its own (127.0.0.1, a free port, storage in the temp
dir) through the registry's HTTP API. Then, for each variant, times

    ctr --address SOCK --namespace NS images pull --plain-http 127.0.0.1:PORT/bench/pull:TAG

(which fetches every blob through the daemon's Content.Write stream, then unpacks the layer through
Snapshots.Prepare + Diff.Apply + Snapshots.Commit) against keel-containerd and containerd 1.6,
each run on a FRESH daemon (new temp dir: root, state, socket; started before the clock starts and
stopped after it stops), the daemons taking turns (containerd on gzip twice when `unpigz` is
installed: with Go's gzip, CONTAINERD_DISABLE_PIGZ=1, and with unpigz, its default then), after one untimed warm-up run each whose
unpacked tree is checked file by file against what was generated. ctr prints `done: D` after the
unpack, D being the unpack's own time, so each run splits into fetch+write (total - D) and unpack
(D). Prints medians, MB/s (compressed layer size / time, MB = 10^6 bytes) and keel/containerd.

Everything it made is undone on success, failure, Ctrl-C, SIGTERM and SIGHUP: daemons stopped,
the registry stopped, temp dirs removed.

Python 3 standard library plus the `zstd` command. Must run as root (overlay snapshots). See
bench/README.md ("What `pull.py` measures").
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.dont_write_bytecode = True  # no bench/__pycache__ from the imports
sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtime as rb  # noqa: E402  (which, signals, safe_rmtree, Interrupted)
import shim_memory as sm  # noqa: E402  (the hermetic containerd: config, ctr, cleanup)

REPO = sm.REPO
TARGET_RATIO = 0.5
REPO_NAME = "bench/pull"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
SNAPSHOTS = "io.containerd.snapshotter.v1.overlayfs/snapshots"


def log(msg: str) -> None:
    print(f"[pull-bench] {msg}", file=sys.stderr, flush=True)


# ---- the image ---------------------------------------------------------------------------------


def text_corpus(rng: random.Random, size: int) -> bytes:
    """Lines of words from a small vocabulary: compresses about as well as source or docs."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(4000)]
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choices(vocab, k=rng.randint(4, 14))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def make_layer(tmp: str, size_mb: int, files: int, seed: int) -> dict:
    """layer.tar in `tmp`: `files` files (even ones random, odd ones text) of `size_mb` MB in
    all, under a few directories. Returns its diff_id and each file's (size, sha256)."""
    rng = random.Random(seed)
    corpus = text_corpus(rng, 8 << 20)
    avg = size_mb * 1_000_000 // files
    expected: dict[str, tuple[int, str]] = {}
    path = os.path.join(tmp, "layer.tar")
    with open(path, "wb") as raw:
        hasher = _HashingWriter(raw)
        with tarfile.open(fileobj=hasher, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for d in range(8):
                add_dir(tar, f"data/d{d}")
            for i in range(files):
                size = rng.randint(avg // 4, avg * 7 // 4)
                if i % 2 == 0:
                    body = rng.randbytes(size)
                else:
                    parts, n = [], 0
                    while n < size:
                        at = rng.randrange(0, len(corpus) - 65536)
                        chunk = corpus[at:at + rng.randint(4096, 65536)]
                        parts.append(chunk)
                        n += len(chunk)
                    body = b"".join(parts)[:size]
                name = f"data/d{i % 8}/f{i:04d}.{'bin' if i % 2 == 0 else 'txt'}"
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(body), 0o644, 1_700_000_000
                tar.addfile(info, _Bytes(body))
                expected[name] = (len(body), hashlib.sha256(body).hexdigest())
    return {"tar": path, "diff_id": "sha256:" + hasher.h.hexdigest(), "size": hasher.n,
            "files": expected}


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
    tar.addfile(info)


class _Bytes:
    """A file object over bytes for tarfile.addfile (no copy into a BytesIO)."""

    def __init__(self, data: bytes):
        self.data, self.at = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.at + n)
        out = self.data[self.at:end].tobytes()
        self.at = end
        return out


class _HashingWriter:
    """Writes through to `raw`, hashing and counting: the layer's diff_id on the way."""

    def __init__(self, raw):
        self.raw, self.h, self.n = raw, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.h.update(data)
        self.n += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.n


def compress(layer: dict, kind: str, tmp: str) -> str:
    """The layer compressed as `kind` (gzip level 6 as Go's and docker's default; zstd -3)."""
    out = os.path.join(tmp, f"layer.tar.{kind}")
    if kind == "gzip":
        with open(layer["tar"], "rb") as src, open(out, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
    else:
        zstd = rb.which("zstd")
        if not zstd:
            raise RuntimeError("the zstd command is needed for the zstd variant (apt-get install zstd)")
        subprocess.run([zstd, "-q", "-3", "-T0", "-f", layer["tar"], "-o", out], check=True)
    return out


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# ---- the registry ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry on 127.0.0.1:PORT, its config and storage in `tmp`."""

    def __init__(self, binary: str, tmp: str):
        self.binary, self.tmp = binary, tmp
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        for _ in range(3):  # the free port may be taken meanwhile
            self.port = free_port()
            cfg = os.path.join(self.tmp, "registry.yml")
            with open(cfg, "w", encoding="utf-8") as f:
                f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                        f"    rootdirectory: {self.tmp}/storage\n  delete:\n    enabled: true\n"
                        f"http:\n  addr: 127.0.0.1:{self.port}\n")
            logf = open(os.path.join(self.tmp, "registry.log"), "ab")
            self.proc = subprocess.Popen([self.binary, "serve", cfg], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            logf.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.request("GET", "/v2/")[0] == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.1)
            self.stop()
        raise RuntimeError("docker-registry did not come up; see its log in " + self.tmp)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def push_blob(self, path: str, digest: str) -> None:
        status, headers, body = self.request("POST", f"/v2/{REPO_NAME}/blobs/uploads/")
        if status != 202:
            raise RuntimeError(f"starting a blob upload: HTTP {status} {body[:200]!r}")
        loc = urlsplit(headers["Location"])
        target = f"{loc.path}?{loc.query + '&' if loc.query else ''}digest={digest}"
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            status, _, body = self.request("PUT", target, body=f, headers={
                "Content-Length": str(size), "Content-Type": "application/octet-stream"})
        if status != 201:
            raise RuntimeError(f"uploading {digest}: HTTP {status} {body[:200]!r}")

    def push_manifest(self, tag: str, manifest: bytes) -> None:
        status, _, body = self.request("PUT", f"/v2/{REPO_NAME}/manifests/{tag}", body=manifest,
                                       headers={"Content-Type": OCI_MANIFEST})
        if status != 201:
            raise RuntimeError(f"pushing manifest {tag}: HTTP {status} {body[:200]!r}")


def go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def push_image(reg: Registry, layer: dict, blobs: dict[str, str], tmp: str) -> dict[str, dict]:
    """One manifest per compression, sharing the config; returns per tag its layer's size."""
    config = json.dumps({"architecture": go_arch(), "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]}}).encode()
    config_path = os.path.join(tmp, "config.json")
    with open(config_path, "wb") as f:
        f.write(config)
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    reg.push_blob(config_path, config_digest)
    out = {}
    for tag, path in blobs.items():
        digest, size = file_digest(path), os.path.getsize(path)
        reg.push_blob(path, digest)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPES[tag], "digest": digest, "size": size}],
        }).encode()
        reg.push_manifest(tag, manifest)
        out[tag] = {"layer_digest": digest, "layer_bytes": size}
    return out


# ---- the daemons -------------------------------------------------------------------------------


class Daemon(sm.Bench):
    """One fresh daemon in a temp dir of its own (shim_memory's Bench: config.toml, ctr,
    cleanup), started on the generated config; no shim or runtime is needed to pull."""

    def __init__(self, args: argparse.Namespace, name: str, binary: str, env: dict[str, str]):
        super().__init__(args)
        self.name, self.binary, self.extra_env = name, binary, env
        self.ns = f"keelpull-{os.getpid()}"

    def start(self) -> None:
        cfg = os.path.join(self.tmp, "config.toml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(sm.config_toml(self.tmp, self.args.debug))
        env = {k: v for k, v in os.environ.items()
               if k not in ("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "KEEL_SHIM_RUNTIME",
                            "CONTAINERD_DISABLE_PIGZ")}
        env.update(self.extra_env)
        self.containerd_log = open(self.log_path, "ab")
        self.containerd = subprocess.Popen([self.binary, "--config", cfg], env=env,
                                           stdin=subprocess.DEVNULL, stdout=self.containerd_log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.containerd.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.containerd.returncode}; its log ends:\n"
                                   + self.log_tail(20))
            if os.path.exists(self.address) and self.ctr(["version"], timeout=5, namespace=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within 30 s; its log ends:\n" + self.log_tail(20))

    def snapshot_trees(self) -> list[str]:
        base = os.path.join(self.tmp, "root", SNAPSHOTS)
        return [os.path.join(base, d, "fs") for d in sorted(os.listdir(base))] if os.path.isdir(base) else []


DONE = re.compile(r"^done: ([0-9.]+)(h|m|s|ms|µs|us|ns)?", re.M)
GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}


def go_duration(text: str) -> float | None:
    """Seconds of a Go duration like `1m2.5s`, `850.1ms`, `3.2s`."""
    total, found = 0.0, False
    for value, unit in re.findall(r"([0-9.]+)(h|ms|µs|us|ns|m|s)", text):
        total += float(value) * GO_UNITS[unit]
        found = True
    return total if found else None


def pull_once(args: argparse.Namespace, daemon: tuple, ref: str, check: dict | None) -> dict:
    """One pull on a fresh daemon: {'total', 'unpack', 'fetch'} seconds, or {'error'}."""
    d = Daemon(args, *daemon)
    try:
        d.start()
        subprocess.run(["sync"], check=False)  # the last run's writeback does not land in this one
        cpu0 = daemon_cpu(d)
        t0 = time.perf_counter()
        r = d.ctr(["images", "pull", "--plain-http", ref])
        total = time.perf_counter() - t0
        cpu1 = daemon_cpu(d)
        if r.returncode != 0:
            return {"error": f"exit {r.returncode}: {r.stderr.strip()[-400:]}; log: {d.log_tail(5)}"}
        m = DONE.search(r.stdout)
        unpack = go_duration(r.stdout[m.start():].split()[1]) if m else None
        result = {"total": total, "unpack": unpack,
                  "fetch": total - unpack if unpack is not None else None,
                  "cpu": cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None}
        if check is not None:
            result["check"] = check_tree(d, check)
        return result
    finally:
        d.cleanup()


def daemon_cpu(d: Daemon) -> float | None:
    """CPU seconds the daemon used so far, its reaped children (containerd's unpigz) included:
    less sensitive than wall time to other load on the machine."""
    pid = d.containerd.pid if d.containerd is not None else None
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return sum(int(x) for x in fields[11:15]) / sm.CLK_TCK  # utime stime cutime cstime
    except (OSError, ValueError, IndexError, TypeError):
        return None


def check_tree(d: Daemon, files: dict) -> str:
    """'ok' if one snapshot holds exactly the generated files with their content."""
    trees = d.snapshot_trees()
    if len(trees) != 1:
        return f"{len(trees)} snapshots, expected 1"
    root = trees[0]
    seen = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                seen[os.path.relpath(p, root)] = (os.fstat(f.fileno()).st_size,
                                                  hashlib.file_digest(f, "sha256").hexdigest())
    if seen == files:
        return "ok"
    missing = sorted(set(files) - set(seen))[:3]
    extra = sorted(set(seen) - set(files))[:3]
    differ = sorted(k for k in set(files) & set(seen) if files[k] != seen[k])[:3]
    return f"MISMATCH: missing {missing}, extra {extra}, different {differ}"


# ---- report ------------------------------------------------------------------------------------


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    return {key: med([r[key] for r in ok if r.get(key) is not None]) for key in ("total", "fetch", "unpack", "cpu")} | {
        "min": min((r["total"] for r in ok), default=None), "runs": len(ok),
        "failures": [r["error"] for r in runs if "error" in r]}


def print_report(info: dict, results: dict) -> None:
    print(f"# ctr images pull: keel-containerd vs containerd 1.6 ({info['date']})\n")
    print(f"kernel {info['kernel']}, {info['cpus']} CPUs ({info['cpu']}), sha_ni: {info['sha_ni']}, "
          f"pigz/unpigz on PATH: {info['unpigz'] or 'no'}; {info['containerd']}; keel-containerd "
          f"{info['keel_containerd']}; load average {' '.join(info['loadavg_start'])} → "
          f"{' '.join(info['loadavg_end'])}\n")
    print(f"layer: {info['files']} files, {info['tar_bytes'] / 1e6:.1f} MB uncompressed; "
          + ", ".join(f"{t} {v['layer_bytes'] / 1e6:.1f} MB" for t, v in info["tags"].items())
          + f"; {info['runs']} timed runs per daemon and variant, each on a fresh daemon, alternating\n")
    print("| variant | daemon | total median (min) | MB/s | fetch+write | unpack | unpack MB/s | daemon CPU | keel/ctrd |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for tag, per in results.items():
        mb = info["tags"][tag]["layer_bytes"] / 1e6
        ctrd = per["containerd"]["summary"]["total"]
        for name, res in per.items():
            s = res["summary"]
            rate = mb / s["total"] if s["total"] else None
            urate = mb / s["unpack"] if s["unpack"] else None
            ratio = s["total"] / ctrd if s["total"] and ctrd else None
            print(f"| {tag} | {name} | {fmt(s['total'])} s ({fmt(s['min'])}) | {fmt(rate, '.0f')} | "
                  f"{fmt(s['fetch'])} s | {fmt(s['unpack'])} s | {fmt(urate, '.0f')} | "
                  f"{fmt(s['cpu'])} s | {fmt(ratio) if name != 'containerd' else '1'} |")
    print("\n(containerd: Go's gzip, CONTAINERD_DISABLE_PIGZ=1; containerd+unpigz: unpigz on PATH, "
          "containerd's default when pigz is installed)")
    print()
    for tag, per in results.items():
        keel = per["keel-containerd"]["summary"]["total"]
        for ref_name in ("containerd", "containerd+unpigz"):
            ctrd = per.get(ref_name, {}).get("summary", {}).get("total")
            if keel and ctrd:
                verdict = "met" if keel / ctrd <= TARGET_RATIO else "NOT met"
                print(f"- target ({tag}): keel ≤ {TARGET_RATIO} × {ref_name}'s time: {keel / ctrd:.2f}, {verdict}")
        for name, res in per.items():
            for f in res["summary"]["failures"]:
                print(f"- {tag} {name} FAILED: {f}")
            print(f"- {tag} {name}: unpacked tree check on the warm-up run: {res['check']}")


# ---- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed pulls per daemon and variant (default 5; ≥ 5)")
    p.add_argument("--size-mb", type=int, default=280,
                   help="uncompressed layer size in MB (default 280: ~200 MB gzip-compressed)")
    p.add_argument("--files", type=int, default=300, help="files in the layer (default 300)")
    p.add_argument("--variants", default="gzip,zstd", help="comma-separated: gzip, zstd")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--json", metavar="FILE", help="write every run as JSON")
    p.add_argument("--debug", action="store_true", help="daemons at log level debug")
    p.add_argument("--timeout", type=float, default=600, help="seconds one ctr command may take")
    p.add_argument("--keel-containerd", default=str(REPO / "target/release/keel-containerd"))
    p.add_argument("--keel-baseline", metavar="PATH",
                   help="another keel-containerd build timed alongside (e.g. before a change)")
    p.add_argument("--containerd", default=rb.which("containerd"))
    p.add_argument("--no-unpigz", action="store_true",
                   help="do not also time containerd with unpigz on gzip (when unpigz is installed)")
    p.add_argument("--ctr", default=rb.which("ctr"))
    p.add_argument("--registry", default=rb.which("docker-registry") or "/usr/bin/docker-registry")
    p.add_argument("--build", action="store_true", help="cargo build --release -p keel-containerd first")
    a = p.parse_args()
    a.variants = [v for v in a.variants.split(",") if v]
    if any(v not in LAYER_TYPES for v in a.variants) or not a.variants:
        p.error("--variants: gzip and/or zstd")
    if a.runs < 1:
        p.error("--runs must be at least 1")
    a.null_io = False  # what sm.Bench reads
    return a


def machine_info(args: argparse.Namespace) -> dict:
    cpuinfo = open("/proc/cpuinfo", encoding="utf-8").read()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    st = os.stat(args.keel_containerd)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "kernel": platform.release(),
            "cpus": os.cpu_count(), "cpu": model.group(1) if model else "?",
            "sha_ni": " sha_ni" in cpuinfo, "unpigz": rb.which("unpigz"),
            "containerd": sm.first_line([args.containerd, "--version"]),
            "keel_containerd": f"{args.keel_containerd} ({st.st_size / 1e6:.1f} MB, built "
                               f"{time.strftime('%H:%M', time.localtime(st.st_mtime))})",
            "loadavg_start": open("/proc/loadavg", encoding="utf-8").read().split()[:3],
            "runs": args.runs, "files": args.files}


def daemons_for(args: argparse.Namespace, tag: str) -> list[tuple[str, str, dict[str, str]]]:
    """(name, binary, extra env) of each daemon timed on `tag`. containerd decompresses gzip
    with `unpigz` when it finds it on PATH, else with Go's gzip: with unpigz installed, gzip is
    timed both ways (CONTAINERD_DISABLE_PIGZ=1 turns it off); the reference is Go's gzip."""
    daemons = [("keel-containerd", args.keel_containerd, {}),
               ("containerd", args.containerd, {"CONTAINERD_DISABLE_PIGZ": "1"})]
    if tag == "gzip" and rb.which("unpigz") and not args.no_unpigz:
        daemons.append(("containerd+unpigz", args.containerd, {}))
    if args.keel_baseline:
        daemons.append(("keel-baseline", args.keel_baseline, {}))
    return daemons


def run(args: argparse.Namespace, janitor: rb.Janitor) -> int:
    tmp = janitor.mkdtemp(prefix="keel-pull-")
    info = machine_info(args)
    log(f"building the layer ({args.size_mb} MB, {args.files} files) in {tmp}")
    layer = make_layer(tmp, args.size_mb, args.files, args.seed)
    blobs = {v: compress(layer, v, tmp) for v in args.variants}
    os.unlink(layer["tar"])
    info["tar_bytes"] = layer["size"]
    reg = Registry(args.registry, os.path.join(tmp, "registry"))
    os.mkdir(reg.tmp)
    try:
        reg.start()
        info["tags"] = push_image(reg, layer, blobs, tmp)
        for path in blobs.values():
            os.unlink(path)
        results: dict = {}
        for tag in args.variants:
            ref = f"127.0.0.1:{reg.port}/{REPO_NAME}:{tag}"
            daemons = daemons_for(args, tag)
            per = {d[0]: {"runs": [], "check": None} for d in daemons}
            for d in daemons:  # warm-up: registry pages cached, tree checked
                r = pull_once(args, d, ref, layer["files"])
                per[d[0]]["check"] = r.get("check") or r.get("error")
                log(f"{tag} {d[0]} warm-up: {r}")
            for i in range(args.runs):
                k = i % len(daemons)  # who goes first rotates
                for d in daemons[k:] + daemons[:k]:
                    r = pull_once(args, d, ref, None)
                    per[d[0]]["runs"].append(r)
                    log(f"{tag} {d[0]} run {i}: {r}")
            for name in per:
                per[name]["summary"] = summarize(per[name]["runs"])
            results[tag] = per
    finally:
        reg.stop()
    info["loadavg_end"] = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
    print_report(info, results)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
    ok = all(p["check"] == "ok" and p["summary"]["runs"] for per in results.values() for p in per.values())
    return 0 if ok else 1


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, rb.on_signal)
    signal.signal(signal.SIGHUP, rb.on_signal)
    if os.geteuid() != 0:
        sys.exit("run as root (overlay snapshots need it)")
    args = parse_args()
    if args.build:
        argv = ["cargo", "build", "--release", "-p", "keel-containerd"]
        if subprocess.run(argv, cwd=REPO).returncode != 0:
            sys.exit(f"{' '.join(argv)} failed")
    for what in ("keel_containerd", "containerd", "ctr", "registry"):
        path = getattr(args, what)
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what.replace('_', '-')} not found ({path}); pass --{what.replace('_', '-')}")
    janitor = rb.Janitor()
    try:
        return run(args, janitor)
    except (KeyboardInterrupt, rb.Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        janitor.cleanup()


if __name__ == "__main__":
    sys.exit(main())

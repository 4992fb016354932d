// Drives a tessera daemon's IPFS Cluster REST API with @nftstorage/ipfs-cluster (the IPFS Cluster JS
// client), unchanged.
// Usage: node cluster-client-check.mjs http://127.0.0.1:PORT [timeout-seconds]
// Prints one JSON summary line and exits 0 when every answer is what the client expects; otherwise
// exits 1 with the failing step on stderr.
import { Cluster } from '@nftstorage/ipfs-cluster'
import assert from 'node:assert/strict'

const url = process.argv[2]
if (!url) {
  console.error('usage: node cluster-client-check.mjs <REST API URL> [timeout-seconds]')
  process.exit(2)
}
const timeoutMs = Number(process.argv[3] || 60) * 1000
const cluster = new Cluster(url)

// In IPFS Cluster 1.1 a CID is a JSON string; accept the older {"/": cid} form too, so that a
// mismatch is reported by the assertions below rather than as "[object Object]".
const cidString = (c) => (c && typeof c === 'object' && '/' in c ? c['/'] : c)

const step = async (name, fn) => {
  try {
    const out = await fn()
    console.error(`ok ${name}`)
    return out
  } catch (e) {
    console.error(`FAILED ${name}: ${e.stack || e}`)
    if (e.response) {
      try {
        console.error(`  answer: ${e.response.status} ${await e.response.text()}`)
      } catch {}
    }
    process.exit(1)
  }
}

// Waits for `check` to return a truthy value, polling until the deadline; never sleeps and hopes.
const waitFor = async (what, check) => {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    last = await check()
    if (last.done) return last.value
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; last: ${JSON.stringify(last.value)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

const peers = await step('peerList', async () => {
  const list = await cluster.peerList()
  assert.ok(Array.isArray(list) && list.length > 0, 'at least this peer')
  for (const p of list) {
    assert.equal(typeof p.id, 'string', 'peer id is a string')
    assert.ok(Array.isArray(p.addresses), 'addresses is an array')
    assert.ok(!p.error, `peer ${p.id} reports an error: ${p.error}`)
  }
  return list
})

// Unique content per run, so that the pin made here is new to the cluster.
const content = `tessera cluster client check ${Date.now()} ${Math.random()}\n`
const added = await step('add', async () => {
  const file = new File([content], 'check.txt')
  const res = await cluster.add(file) // the client's defaults: CIDv1, raw leaves, one JSON array
  const cid = cidString(res.cid)
  assert.equal(typeof cid, 'string', `cid is a string: ${JSON.stringify(res)}`)
  // One chunk with raw leaves is a single raw block: a CIDv1 with the raw codec, base32.
  assert.ok(cid.startsWith('bafkrei'), `CIDv1 raw leaf, got ${cid}`)
  assert.equal(res.name, 'check.txt')
  return { ...res, cid }
})

const name = 'tessera-cluster-client-check'
const replication = Math.min(peers.length, 2)
const pinned = await step('pin', async () => {
  const res = await cluster.pin(added.cid, {
    name,
    replicationFactorMin: 1,
    replicationFactorMax: replication,
    metadata: { check: 'yes' }
  })
  assert.equal(cidString(res.cid), added.cid)
  assert.equal(res.name, name)
  assert.equal(res.replicationFactorMin, 1)
  assert.equal(res.replicationFactorMax, replication)
  assert.equal(res.mode, 'recursive')
  assert.equal(res.maxDepth, -1)
  assert.deepEqual(res.metadata, { check: 'yes' })
  assert.ok(Array.isArray(res.allocations), 'allocations is an array')
  assert.ok(res.allocations.length >= 1 && res.allocations.length <= replication, `allocations: ${res.allocations}`)
  return res
})

const status = await step('status until every allocated peer has pinned', async () =>
  waitFor('pinned on every allocation', async () => {
    const s = await cluster.status(added.cid)
    assert.equal(cidString(s.cid), added.cid)
    assert.equal(s.name, name)
    const states = pinned.allocations.map((p) => s.peerMap?.[p]?.status)
    for (const [peer, info] of Object.entries(s.peerMap || {})) {
      assert.ok(!['pin_error', 'cluster_error', 'unexpectedly_unpinned'].includes(info.status),
        `peer ${peer} reports ${info.status}: ${info.error}`)
      assert.ok(!Number.isNaN(info.timestamp.getTime()), `timestamp of ${peer} is a date`)
    }
    return { done: states.every((st) => st === 'pinned'), value: s }
  })
)

await step('statusAll contains the pin', async () => {
  const all = await cluster.statusAll()
  const mine = all.find((s) => cidString(s.cid) === added.cid)
  assert.ok(mine, `${added.cid} is listed among ${all.length} statuses`)
  const pinnedOnly = await cluster.statusAll({ filter: ['pinned'] })
  assert.ok(pinnedOnly.some((s) => cidString(s.cid) === added.cid), 'filter=pinned keeps it')
  const byCid = await cluster.statusAll({ cids: [added.cid] })
  assert.equal(byCid.length, 1)
  assert.equal(cidString(byCid[0].cid), added.cid)
})

await step('allocation', async () => {
  const a = await cluster.allocation(added.cid)
  assert.equal(cidString(a.cid), added.cid)
  assert.equal(a.name, name)
  assert.deepEqual([...a.allocations].sort(), [...pinned.allocations].sort())
  assert.equal(a.type, 'pin')
})

await step('unpin', async () => {
  const res = await cluster.unpin(added.cid)
  assert.equal(cidString(res.cid), added.cid)
  await assert.rejects(() => cluster.allocation(added.cid), (e) => e.response?.status === 404,
    'the allocation is gone (404)')
})

console.log(JSON.stringify({
  ok: true,
  peers: peers.length,
  cid: added.cid,
  allocations: pinned.allocations,
  statuses: Object.fromEntries(Object.entries(status.peerMap).map(([p, i]) => [p, i.status]))
}))

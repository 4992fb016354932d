// Drives a tessera daemon with kubo-rpc-client (the Kubo JS client), unchanged.
// Usage: node kubo-rpc-client-check.mjs http://127.0.0.1:PORT
// Exits non-zero, with the failing step on stderr, if any answer differs from what the client expects.
import { create } from 'kubo-rpc-client'
import assert from 'node:assert/strict'

const url = process.argv[2]
const ipfs = create({ url })

async function collect (it) {
  const chunks = []
  for await (const c of it) chunks.push(c)
  return Buffer.concat(chunks.map(c => Buffer.from(c)))
}

const step = async (name, fn) => {
  try {
    await fn()
    console.log(`ok ${name}`)
  } catch (e) {
    console.error(`FAILED ${name}: ${e.stack || e}`)
    process.exit(1)
  }
}

let fileCid
await step('version', async () => {
  const v = await ipfs.version()
  assert.ok(v.version, 'version has a version field')
})
await step('id', async () => {
  const id = await ipfs.id()
  assert.ok(id.id.toString().startsWith('12D3Koo'))
})
await step('add + cat', async () => {
  const res = await ipfs.add(new TextEncoder().encode('hello world\n'))
  fileCid = res.cid
  assert.equal(res.cid.toString(), 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o')
  assert.equal(res.size, 20)
  const data = await collect(ipfs.cat(res.cid))
  assert.equal(data.toString(), 'hello world\n')
})
await step('add with cidVersion 1 and offset/length cat', async () => {
  const bytes = new Uint8Array(600000).map((_, i) => (i * 7) & 0xff)
  const res = await ipfs.add(bytes, { cidVersion: 1 })
  assert.ok(res.cid.toString().startsWith('bafy'))
  const part = await collect(ipfs.cat(res.cid, { offset: 262140, length: 10 }))
  assert.deepEqual([...part], [...bytes.slice(262140, 262150)])
})
await step('addAll directory + ls', async () => {
  const files = [
    { path: 'dir/a.txt', content: new TextEncoder().encode('A') },
    { path: 'dir/sub/b.txt', content: new TextEncoder().encode('BB') }
  ]
  let root
  for await (const r of ipfs.addAll(files)) root = r
  assert.equal(root.path, 'dir')
  const entries = []
  for await (const e of ipfs.ls(root.cid)) entries.push(e)
  assert.deepEqual(entries.map(e => [e.name, e.type]), [['a.txt', 'file'], ['sub', 'dir']])
  const b = await collect(ipfs.cat(`/ipfs/${root.cid}/sub/b.txt`))
  assert.equal(b.toString(), 'BB')
})
await step('pin ls / rm / add', async () => {
  const pins = []
  for await (const p of ipfs.pin.ls({ type: 'recursive' })) pins.push(p.cid.toString())
  assert.ok(pins.includes(fileCid.toString()))
  await ipfs.pin.rm(fileCid)
  await ipfs.pin.add(fileCid)
})
await step('block put/get/stat', async () => {
  const cid = await ipfs.block.put(new TextEncoder().encode('raw!'))
  assert.equal(cid.code, 0x55)
  const data = await ipfs.block.get(cid)
  assert.equal(Buffer.from(data).toString(), 'raw!')
  const st = await ipfs.block.stat(cid)
  assert.equal(st.size, 4)
})
await step('dag put/get', async () => {
  const cid = await ipfs.dag.put({ hello: 'world', n: 1, link: fileCid }, { storeCodec: 'dag-cbor', hashAlg: 'sha2-256' })
  const got = await ipfs.dag.get(cid)
  assert.equal(got.value.hello, 'world')
  assert.equal(got.value.link.toString(), fileCid.toString())
})
await step('refs', async () => {
  const refs = []
  for await (const r of ipfs.refs(fileCid, { recursive: true })) refs.push(r)
  assert.equal(refs.length, 0)
})
await step('repo stat', async () => {
  const s = await ipfs.repo.stat()
  assert.ok(s.numObjects > 0n)
})
await step('errors come back as errors', async () => {
  await assert.rejects(() => collect(ipfs.cat('not-a-cid')))
})
console.log('all kubo-rpc-client checks passed')

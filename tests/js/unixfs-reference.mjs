// The reference CIDs for tessera's UnixFS importer (tests/t15_unixfs_reference.rs).
//
// ipfs-unixfs-importer reproduces Kubo's CIDs when given Kubo's options
// (cidVersion 0, rawLeaves false, 262144-byte chunks, balanced layout of 174
// links). This script imports files and directory trees from disk with the
// options each case names and prints every entry's CID and cumulative size.
//
// stdin:  {"cases": [{"id": ID, "path": ABSOLUTE_PATH, "options": {
//           "cidVersion": 0|1, "rawLeaves": bool, "chunkSize": N,
//           "maxChildrenPerNode": N, "shardSplitThresholdBytes": N }}]}
// stdout: {ID: {"root": CID, "entries": {RELATIVE_PATH: {"cid": CID, "size": N}}}}
//
// Paths in "entries" start with the basename of the case's path, as `ipfs add -r`
// prints them. Hidden files are imported too: the tests create none.

import { createReadStream } from 'node:fs'
import { readFile, readdir, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

async function * entries (abs, rel) {
  const st = await stat(abs)
  if (st.isDirectory()) {
    const names = await readdir(abs)
    if (names.length === 0) {
      yield { path: rel }
    }
    for (const name of names) {
      yield * entries(join(abs, name), `${rel}/${name}`)
    }
  } else if (st.size < (1 << 20)) {
    // Small files whole: opening a stream per file dominates the HAMT cases.
    yield { path: rel, content: await readFile(abs) }
  } else {
    yield { path: rel, content: createReadStream(abs, { highWaterMark: 1 << 20 }) }
  }
}

async function importCase ({ path, options }) {
  const name = basename(path)
  const out = { root: null, entries: {} }
  const source = entries(path, name)
  for await (const entry of importer(source, new BlackHoleBlockstore(), {
    cidVersion: options.cidVersion ?? 0,
    rawLeaves: options.rawLeaves ?? false,
    chunker: fixedSize({ chunkSize: options.chunkSize ?? 262144 }),
    layout: balanced({ maxChildrenPerNode: options.maxChildrenPerNode ?? 174 }),
    shardSplitThresholdBytes: options.shardSplitThresholdBytes ?? 262144,
    shardSplitStrategy: 'links-bytes',
    reduceSingleLeafToSelf: true,
    leafType: 'file',
    wrapWithDirectory: false,
    // One file at a time keeps memory flat for the 45 MB cases.
    fileImportConcurrency: 1
  })) {
    out.entries[entry.path] = { cid: entry.cid.toString(), size: Number(entry.size) }
    if (entry.path === name) {
      out.root = entry.cid.toString()
    }
  }
  if (out.root == null) {
    throw new Error(`no root entry for ${path}`)
  }
  return out
}

let input = ''
for await (const chunk of process.stdin) {
  input += chunk
}
const { cases } = JSON.parse(input)
const results = {}
for (const c of cases) {
  results[c.id] = await importCase(c)
}
process.stdout.write(JSON.stringify(results) + '\n')

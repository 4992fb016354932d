//! Routing of cells to column holders, and the whole pipeline between in-process swarms.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tessera_bitswap_ec::Manifest;
use tessera_blockstore::{DAG_PB, RAW};
use tessera_node::ipld::{MemoryBlocks, PbLink, PbNode};

use super::*;
use crate::allocator::Candidate;
use crate::ec::blocks::tests::{TestPeer, connected_peers, members};

fn leaf(i: usize, len: usize) -> Block {
    let data: Vec<u8> = (0..len).map(|j| (i * 7 + j * 13) as u8).collect();
    Block::from_data_v1(RAW, Bytes::from(data))
}

fn node(children: &[&Block]) -> Block {
    let links = children
        .iter()
        .map(|b| PbLink {
            cid: *b.cid(),
            name: Some(String::new()),
            tsize: Some(b.data().len() as u64),
        })
        .collect();
    Block::from_data_v1(DAG_PB, PbNode { links, data: None }.encode())
}

/// A two-level DAG over `leaves`, `fanout` links per node. Returns the root and every block.
fn dag(leaves: Vec<Block>, fanout: usize) -> (Cid, Vec<Block>) {
    let mut all = leaves.clone();
    let mids: Vec<Block> = leaves
        .chunks(fanout)
        .map(|c| node(&c.iter().collect::<Vec<_>>()))
        .collect();
    let root = node(&mids.iter().collect::<Vec<_>>());
    all.extend(mids);
    all.push(root.clone());
    (*root.cid(), all)
}

fn candidates(peers: &[PeerId]) -> Vec<Candidate> {
    peers
        .iter()
        .map(|p| Candidate {
            peer: *p,
            freespace: 1 << 30,
            tags: BTreeMap::new(),
        })
        .collect()
}

/// Layout with small groups, so that a small DAG spans several.
fn small_groups(k: usize, m: usize, shard_size: u64) -> Layout {
    Layout {
        data_shards: k,
        parity_shards: m,
        shard_size,
    }
}

#[test]
fn each_cell_goes_to_its_column_holder_and_interior_blocks_to_m_plus_one_peers() {
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    let placement = Placement::new(&candidates(&peers), 2, 1).unwrap();
    let mut router = Router::new(&placement);
    let mut enc = StripeEncoder::new(small_groups(2, 1, 250)).unwrap();
    let mut emitted = Vec::new();
    for i in 0..7 {
        emitted.extend(enc.push(leaf(i, 100), BlockKind::Leaf).unwrap());
    }
    let interior = node(&[&leaf(0, 100)]);
    emitted.extend(enc.push(interior.clone(), BlockKind::Interior).unwrap());
    let finished = enc.finish(*interior.cid()).unwrap();
    emitted.extend(finished.emitted);

    let mut groups_seen = HashSet::new();
    let mut cells = 0;
    for e in emitted {
        match &e {
            Emitted::Stripe(s) => {
                let g = s.stripe().group as usize;
                groups_seen.insert(g);
                let want: Vec<(PeerId, Cid)> = s
                    .cells()
                    .map(|(col, b)| (placement.group(g)[col], *b.cid()))
                    .collect();
                let got: Vec<(PeerId, Cid)> = router
                    .route(e.clone())
                    .unwrap()
                    .into_iter()
                    .map(|(p, b)| (p, *b.cid()))
                    .collect();
                assert_eq!(got, want);
                cells += got.len();
            }
            Emitted::Interior(b) | Emitted::Manifest(b) => {
                let got = router.route(e.clone()).unwrap();
                let to: Vec<PeerId> = got.iter().map(|(p, _)| *p).collect();
                assert_eq!(to, placement.interior());
                assert_eq!(to.len(), 2, "m + 1 copies");
                assert!(got.iter().all(|(_, c)| c == b));
            }
        }
    }
    // 7 leaves in 2+1 stripes: 4 stripes (the last one short), 2 stripes of 200 bytes per group.
    assert_eq!(cells, 7 + 4);
    assert_eq!(groups_seen.len(), 2);
    // Groups rotate over the 4 peers.
    assert_ne!(placement.group(0), placement.group(1));
}

/// Reads a peer's blockstore as a manifest source.
fn from_store(store: &Blockstore) -> impl Fn(&Cid) -> Result<Bytes, String> + '_ {
    move |cid| {
        store
            .get(cid)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{cid} is not here"))
    }
}

async fn encode_on(
    peers: &[TestPeer],
    source: &MemoryBlocks,
    root: Cid,
    layout: Layout,
) -> Result<EncodeOutcome, EncodeError> {
    let ids: Vec<PeerId> = peers.iter().map(|p| p.peer).collect();
    let placement =
        Placement::new(&candidates(&ids), layout.data_shards, layout.parity_shards).unwrap();
    let announced = Mutex::new(Vec::new());
    let announce = |cids: Vec<Cid>| announced.lock().unwrap().extend(cids);
    let sinks = Sinks::new(
        peers[0].client(),
        peers[0].peer,
        peers[0].store.clone(),
        &announce,
    );
    let outcome = distribute(source, layout, root, &placement, sinks).await?;
    // Bitswap hears of exactly the blocks stored locally.
    for c in announced.lock().unwrap().iter() {
        assert!(peers[0].has(c));
    }
    Ok(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_is_coded_placed_and_described_by_its_manifest() {
    // 6 peers for 5 columns: one peer holds no column of each group.
    let peers = connected_peers(6, members()).await;
    // 21 leaves of uneven sizes with one repeated (stored once), under a two-level tree.
    let mut leaves: Vec<Block> = (0..20).map(|i| leaf(i, 500 + i * 37)).collect();
    leaves.push(leaves[3].clone());
    let (root, blocks) = dag(leaves, 6);
    let source: MemoryBlocks = blocks.iter().cloned().collect();
    let (k, m) = (3, 2);
    let outcome = encode_on(&peers, &source, root, small_groups(k, m, 3000))
        .await
        .unwrap();

    let layout = &outcome.layout;
    assert_eq!((layout.k, layout.m), (3, 2));
    assert_eq!(outcome.leaves, 20);
    assert_eq!(layout.interior.len(), 3);
    let holder = peers.iter().find(|p| p.peer == layout.interior[0]).unwrap();
    let manifest = Manifest::load(from_store(&holder.store), &layout.manifest).unwrap();
    assert_eq!(manifest.header.root, root);
    assert_eq!(manifest.header.leaves, 20);
    assert_eq!(layout.columns.len() as u64, manifest.header.groups);
    assert!(
        layout.columns.len() > 1,
        "the shard size cuts several groups"
    );

    // Every cell is at the holder of its column, and not on the peer outside the group.
    let by_peer = |p: &PeerId| peers.iter().find(|t| t.peer == *p).unwrap();
    let mut expected_bytes = 0u64;
    for s in &manifest.stripes {
        let holders = &layout.columns[s.group as usize];
        assert_eq!(holders.len(), k + m);
        for (column, holder) in holders.iter().enumerate() {
            let Some(cid) = s.cid(k, column) else {
                continue;
            };
            assert!(
                by_peer(holder).has(cid),
                "stripe {} column {column}",
                s.index
            );
            expected_bytes += s.len_of(k, column).unwrap();
            for other in peers.iter().filter(|t| !holders.contains(&t.peer)) {
                assert!(!other.has(cid));
            }
        }
    }
    // Interior blocks and the whole manifest are on each interior peer.
    for p in &layout.interior {
        let t = by_peer(p);
        assert!(Manifest::load(from_store(&t.store), &layout.manifest).is_ok());
        for c in &manifest.interior {
            assert!(t.has(c));
        }
    }
    let interior_bytes: u64 = blocks
        .iter()
        .filter(|b| b.cid().codec() == DAG_PB)
        .map(|b| b.data().len() as u64)
        .sum();
    expected_bytes += interior_bytes * 3;
    assert!(
        outcome.stored_bytes > expected_bytes,
        "cells and interior blocks, plus the manifest's copies"
    );
    assert_eq!(
        outcome.leaf_bytes,
        (0..20).map(|i| 500 + i as u64 * 37).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_leaf_dag_is_one_short_stripe() {
    let peers = connected_peers(3, members()).await;
    let only = leaf(1, 1000);
    let source: MemoryBlocks = [only.clone()].into_iter().collect();
    let outcome = encode_on(&peers, &source, *only.cid(), Layout::new(6, 3))
        .await
        .unwrap();
    assert_eq!(outcome.leaves, 1);
    assert_eq!(outcome.layout.columns.len(), 1);
    let holder = outcome.layout.columns[0][0];
    assert!(
        peers
            .iter()
            .find(|p| p.peer == holder)
            .unwrap()
            .has(only.cid())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_returned_and_nothing_claims_success() {
    // A missing block ends the walk.
    let peers = connected_peers(3, members()).await;
    let leaves: Vec<Block> = (0..10).map(|i| leaf(i, 100)).collect();
    let (root, blocks) = dag(leaves.clone(), 4);
    let mut source: MemoryBlocks = blocks.iter().cloned().collect();
    source.remove(leaves[5].cid());
    let err = encode_on(&peers, &source, root, Layout::new(2, 1))
        .await
        .unwrap_err();
    assert!(matches!(&err, EncodeError::Walk { .. }), "{err}");

    // A leaf over the cell limit is refused by the encoder.
    let big = leaf(1, (16 << 20) + 1);
    let (root, blocks) = dag(vec![big], 4);
    let source: MemoryBlocks = blocks.into_iter().collect();
    let err = encode_on(&peers, &source, root, Layout::new(2, 1))
        .await
        .unwrap_err();
    assert!(matches!(&err, EncodeError::Encode(_)), "{err}");

    // Bad parameters.
    let err = encode_on(&peers, &source, root, Layout::new(200, 100))
        .await
        .unwrap_err();
    assert!(matches!(&err, EncodeError::Layout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refusing_its_blocks_fails_the_encode() {
    let banned: Arc<Mutex<Option<PeerId>>> = Arc::default();
    let gate = banned.clone();
    let peers = connected_peers(3, Arc::new(move |p| Some(*p) != *gate.lock().unwrap())).await;
    *banned.lock().unwrap() = Some(peers[0].peer);
    let leaves: Vec<Block> = (0..12).map(|i| leaf(i, 1000)).collect();
    let (root, blocks) = dag(leaves, 4);
    let source: MemoryBlocks = blocks.into_iter().collect();
    let err = encode_on(&peers, &source, root, Layout::new(2, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            EncodeError::Push(BlockError::Refused { .. } | BlockError::Broken { .. })
        ),
        "{err}"
    );
}

/// Encode + push throughput: 9 in-process peers, 256 MiB of 256 KiB leaves read from the local
/// blockstore, 6+3. Not a benchmark (everything shares this machine's cores and the test
/// profile), but a cheap order of magnitude:
/// `cargo test -p tessera-cluster --lib ec::encode::tests::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn throughput() {
    let mib: usize = std::env::var("TESSERA_EC_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let peers = connected_peers(9, members()).await;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let leaves: Vec<Block> = (0..mib * 4)
        .map(|_| {
            let data: Vec<u8> = (0..(256 << 10) / 8)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .collect();
            Block::from_data_v1(RAW, Bytes::from(data))
        })
        .collect();
    let (root, blocks) = dag(leaves, 174);
    peers[0].store.put_many(&blocks).unwrap();
    drop(blocks);
    let source = tessera_node::DagService::local(peers[0].store.clone());
    let ids: Vec<PeerId> = peers.iter().map(|p| p.peer).collect();
    let placement = Placement::new(&candidates(&ids), 6, 3).unwrap();
    let announce = |_: Vec<Cid>| {};
    let sinks = Sinks::new(
        peers[0].client(),
        peers[0].peer,
        peers[0].store.clone(),
        &announce,
    );
    let start = Instant::now();
    let outcome = distribute(source, Layout::new(6, 3), root, &placement, sinks)
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mib} MiB in {secs:.2} s: {:.0} MiB/s of DAG, {:.0} MiB/s stored ({} groups)",
        outcome.leaf_bytes as f64 / secs / 1048576.0,
        outcome.stored_bytes as f64 / secs / 1048576.0,
        outcome.layout.columns.len()
    );
}

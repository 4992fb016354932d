//! A real erasure-coded pin in-process: leaves encoded with the `StripeEncoder`, each peer a
//! temporary blockstore, the network a map from peer to store. The index and scrub tests use the
//! same fixture.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::future::BoxFuture;
use libp2p::PeerId;
use tempfile::TempDir;
use tessera_bitswap_ec::{
    BlockKind, Emitted, Layout, Manifest, ManifestReader, Reconstructor, StripeEncoder,
};
use tessera_blockstore::{Block, Blockstore, DAG_PB, RAW};

use super::*;
use crate::ec::index::{EcIndex, group_stripes, load_manifest};
use crate::pin::{EcLayout, Pin};

/// 6+3 over 33 leaves with a 700-byte shard size: five full stripes and a short last one of three
/// cells (so data columns 3..6 of the last group have no cell there), in groups of stripes
/// {0, 1}, {2, 3, 4} and {5} (cell lengths 300, 200 | 310, 25, 261 | 150), two empty leaves
/// (identical blocks, one CID in two places) and a 1-byte leaf.
pub(crate) const SIZES_6_3: &[usize] = &[
    120, 0, 250, 33, 1, 300, // stripe 0
    200, 180, 0, 90, 77, 64, // stripe 1: the second empty leaf
    310, 12, 45, 299, 150, 151, // stripe 2
    20, 21, 22, 23, 24, 25, // stripe 3
    260, 261, 100, 5, 6, 7, // stripe 4
    130, 140, 150, // stripe 5: short
];

/// 2+1 over seven leaves with a 40-byte shard size: three full stripes and a short last one (one
/// data cell, rebuilt from parity alone).
pub(crate) const SIZES_2_1: &[usize] = &[10, 11, 12, 20, 19, 3, 17];

/// Makes the leaves of each fixture differ from every other's.
static SALT: AtomicU8 = AtomicU8::new(1);

fn leaf(salt: u8, i: usize, len: usize) -> Block {
    let bytes: Vec<u8> = (0..len)
        .map(|p| (p * 31 + i * 7) as u8 ^ salt.wrapping_mul(13))
        .collect();
    Block::from_data_v1(RAW, Bytes::from(bytes))
}

pub(crate) fn empty_store() -> (TempDir, Blockstore) {
    let dir = tempfile::tempdir().unwrap();
    let config = tessera_blockstore::Config {
        // Every block in a pack file, so that a test can rot its bytes.
        inline_threshold: 0,
        ..Default::default()
    };
    let store = Blockstore::open(dir.path(), config).unwrap();
    (dir, store)
}

/// Peers as stores. `dead` peers are down for the monitor (the rebuilder must not ask them);
/// `unreachable` ones fail when asked; `silent` ones never answer.
#[derive(Default)]
pub(crate) struct FakeRemote {
    stores: HashMap<PeerId, Blockstore>,
    dead: Mutex<HashSet<PeerId>>,
    unreachable: Mutex<HashSet<PeerId>>,
    silent: Mutex<HashSet<PeerId>>,
    /// Every request: peer and CIDs asked.
    pub(crate) asked: Mutex<Vec<(PeerId, Vec<Cid>)>>,
}

impl FakeRemote {
    pub(crate) fn set_down(&self, peer: PeerId, down: bool) {
        toggle(&self.unreachable, peer, down);
    }

    pub(crate) fn set_dead(&self, peer: PeerId, dead: bool) {
        toggle(&self.dead, peer, dead);
    }

    pub(crate) fn set_silent(&self, peer: PeerId, silent: bool) {
        toggle(&self.silent, peer, silent);
    }

    pub(crate) fn is_alive(&self, peer: &PeerId) -> bool {
        !self.dead.lock().unwrap().contains(peer)
    }

    pub(crate) fn asked_peers(&self) -> Vec<PeerId> {
        self.asked.lock().unwrap().iter().map(|(p, _)| *p).collect()
    }

    /// Cells asked for, over every request.
    pub(crate) fn asked_cells(&self) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.len())
            .sum()
    }
}

fn toggle(set: &Mutex<HashSet<PeerId>>, peer: PeerId, on: bool) {
    let mut set = set.lock().unwrap();
    if on {
        set.insert(peer);
    } else {
        set.remove(&peer);
    }
}

impl RemoteBlocks for FakeRemote {
    fn fetch(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
    ) -> BoxFuture<'static, Result<Vec<Block>, String>> {
        self.asked.lock().unwrap().push((peer, cids.clone()));
        let silent = self.silent.lock().unwrap().contains(&peer);
        let result = if self.unreachable.lock().unwrap().contains(&peer) {
            Err("connection refused".to_owned())
        } else if let Some(store) = self.stores.get(&peer) {
            Ok(cids
                .iter()
                .filter_map(|c| {
                    let bytes = store.get_verified(c).ok().flatten()?;
                    Some(Block::new_unchecked(*c, bytes))
                })
                .collect())
        } else {
            Err("no route to peer".to_owned())
        };
        Box::pin(async move {
            if silent {
                futures::future::pending::<()>().await;
            }
            result
        })
    }
}

pub(crate) struct Fixture {
    pub(crate) root: Cid,
    pub(crate) pin: Pin,
    pub(crate) layout: EcLayout,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) manifest_blocks: Vec<Cid>,
    /// Every block of the pin, by CID.
    pub(crate) blocks: HashMap<Cid, Bytes>,
    /// `k + m + 1` peers: one more than a group needs, to take over a column in a repair.
    pub(crate) peers: Vec<PeerId>,
    pub(crate) stores: Vec<Blockstore>,
    pub(crate) index: Arc<EcIndex>,
    pub(crate) remote: Arc<FakeRemote>,
    _dirs: Vec<TempDir>,
}

impl Fixture {
    /// Encodes leaves of `sizes` (an interior node after every fourth, and a root node), deals
    /// column `j` of group `g` to peer `(g + j) % peers`, the interior and manifest blocks to the
    /// first `m + 1` peers, and indexes the pin.
    pub(crate) fn new(k: usize, m: usize, shard_size: u64, sizes: &[usize]) -> Fixture {
        let n = k + m + 1;
        let mut dirs = Vec::new();
        let mut stores = Vec::new();
        for _ in 0..n {
            let (dir, store) = empty_store();
            dirs.push(dir);
            stores.push(store);
        }
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        let mut f = Fixture::on(k, m, shard_size, sizes, peers, stores);
        f._dirs = dirs;
        f
    }

    /// The same over given peers and their stores (`k + m + 1` of them).
    pub(crate) fn on(
        k: usize,
        m: usize,
        shard_size: u64,
        sizes: &[usize],
        peers: Vec<PeerId>,
        stores: Vec<Blockstore>,
    ) -> Fixture {
        let n = k + m + 1;
        assert_eq!((peers.len(), stores.len()), (n, n));
        let salt = SALT.fetch_add(1, Ordering::Relaxed);
        let mut enc = StripeEncoder::new(Layout {
            data_shards: k,
            parity_shards: m,
            shard_size,
        })
        .unwrap();
        let mut emitted = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            emitted.extend(enc.push(leaf(salt, i, len), BlockKind::Leaf).unwrap());
            if i % 4 == 3 {
                let node = Block::from_data_v1(DAG_PB, Bytes::from(vec![i as u8, salt, 0xaa]));
                emitted.extend(enc.push(node, BlockKind::Interior).unwrap());
            }
        }
        let root_block = Block::from_data_v1(DAG_PB, Bytes::from(vec![b'r', salt]));
        let root = *root_block.cid();
        emitted.extend(enc.push(root_block, BlockKind::Interior).unwrap());
        let finished = enc.finish(root).unwrap();
        emitted.extend(finished.emitted);

        let mut blocks = HashMap::new();
        let mut replicated = Vec::new();
        let mut cells: Vec<(u64, usize, Block)> = Vec::new();
        for e in emitted {
            match e {
                Emitted::Stripe(s) => {
                    let (stripe, parts) = s.into_parts();
                    for (column, b) in parts {
                        blocks.insert(*b.cid(), b.data().clone());
                        cells.push((stripe.group, column, b));
                    }
                }
                Emitted::Interior(b) | Emitted::Manifest(b) => {
                    blocks.insert(*b.cid(), b.data().clone());
                    replicated.push(b);
                }
            }
        }
        let manifest = Manifest::load(
            |c: &Cid| blocks.get(c).cloned().ok_or("missing"),
            &finished.manifest,
        )
        .unwrap();
        let manifest_blocks = ManifestReader::open(
            |c: &Cid| blocks.get(c).cloned().ok_or("missing"),
            &finished.manifest,
        )
        .unwrap()
        .manifest_blocks()
        .unwrap();
        let columns: Vec<Vec<PeerId>> = (0..manifest.groups.len())
            .map(|g| (0..k + m).map(|j| peers[(g + j) % n]).collect())
            .collect();
        for (g, column, b) in cells {
            let p = (g as usize + column) % n;
            stores[p].put(&b).unwrap();
        }
        for store in &stores[..=m] {
            store.put_many(&replicated).unwrap();
        }
        let layout = EcLayout {
            k: k as u8,
            m: m as u8,
            manifest: finished.manifest,
            columns,
            interior: peers[..=m].to_vec(),
        };
        let mut pin = Pin::new(root, -1, -1);
        pin.ec = Some(layout.clone());
        let manifest = Arc::new(manifest);
        let index = Arc::new(EcIndex::default());
        index.insert(&pin, manifest.clone(), manifest_blocks.clone());
        let remote = Arc::new(FakeRemote {
            stores: peers.iter().copied().zip(stores.iter().cloned()).collect(),
            ..FakeRemote::default()
        });
        Fixture {
            root,
            pin,
            layout,
            manifest,
            manifest_blocks,
            blocks,
            peers,
            stores,
            index,
            remote,
            _dirs: Vec::new(),
        }
    }

    pub(crate) fn index_into(&self, index: &EcIndex) {
        index.insert(
            &self.pin,
            self.manifest.clone(),
            self.manifest_blocks.clone(),
        );
    }

    pub(crate) fn peer_index(&self, peer: &PeerId) -> usize {
        self.peers.iter().position(|p| p == peer).unwrap()
    }

    /// A rebuilder running on peer `p`.
    pub(crate) fn rebuilder(&self, p: usize) -> Rebuilder {
        let remote = self.remote.clone();
        let alive: Alive = Arc::new(move |peer: &PeerId| remote.is_alive(peer));
        Rebuilder::with_remote(
            self.stores[p].clone(),
            self.remote.clone(),
            self.index.clone(),
            self.peers[p],
            alive,
        )
        .with_hedge(Duration::from_millis(50))
    }

    pub(crate) fn holder(&self, stripe: usize, column: usize) -> PeerId {
        let g = self.manifest.stripes[stripe].group as usize;
        self.layout.columns[g][column]
    }

    /// A peer that holds no column of `stripe`'s group (the spare).
    pub(crate) fn outsider(&self, stripe: usize) -> usize {
        let g = self.manifest.stripes[stripe].group as usize;
        (0..self.peers.len())
            .find(|&p| !self.layout.columns[g].contains(&self.peers[p]))
            .unwrap()
    }
}

#[tokio::test]
async fn every_cell_of_a_dead_holder_is_rebuilt_from_the_others() {
    for (k, m, shard, sizes) in [(6, 3, 700, SIZES_6_3), (2, 1, 40, SIZES_2_1)] {
        let f = Fixture::new(k, m, shard, sizes);
        for (s, stripe) in f.manifest.stripes.iter().enumerate() {
            for column in 0..k + m {
                let Some(cid) = stripe.cid(k, column) else {
                    continue;
                };
                // Cells occurring twice are located at their first place; test them there.
                if f.index.locate(cid).unwrap().role
                    != (Role::Cell {
                        group: stripe.group as usize,
                        stripe: s,
                        column,
                    })
                {
                    continue;
                }
                let dead = f.holder(s, column);
                f.remote.set_dead(dead, true);
                f.remote.asked.lock().unwrap().clear();
                let r = f.rebuilder(f.outsider(s));
                let got = r.produce(*cid).await.unwrap();
                assert_eq!(&got, &f.blocks[cid], "{k}+{m} stripe {s} column {column}");
                assert!(!f.remote.asked_peers().contains(&dead));
                // Exactly the cells needed were asked for: `d` of them (known zeros fill the
                // rest of a short stripe).
                let asked = f.remote.asked_cells();
                assert_eq!(
                    asked,
                    stripe.data.len(),
                    "{k}+{m} stripe {s} column {column}"
                );
                f.remote.set_dead(dead, false);
            }
        }
    }
}

#[tokio::test]
async fn a_live_holder_gives_its_cell_directly() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let cid = f.manifest.stripes[2].parity[1];
    let r = f.rebuilder(f.outsider(2));
    assert_eq!(r.produce(cid).await.unwrap(), f.blocks[&cid]);
    assert_eq!(f.remote.asked_peers(), vec![f.holder(2, 7)]);
}

#[tokio::test]
async fn unreachable_and_silent_holders_are_worked_around() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let cid = f.manifest.stripes[0].data[0];
    // The holder fails, one helper fails, one never answers: the rest (3 more holders) suffice,
    // the silent one overtaken by the hedge.
    f.remote.set_down(f.holder(0, 0), true);
    f.remote.set_down(f.holder(0, 1), true);
    f.remote.set_silent(f.holder(0, 2), true);
    let r = f.rebuilder(f.outsider(0));
    let got = tokio::time::timeout(Duration::from_secs(10), r.produce(cid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, f.blocks[&cid]);

    // A holder the monitor counts as up but that never answers: the read does not wait for it.
    let cid = f.manifest.stripes[3].parity[0];
    f.remote.set_silent(f.holder(3, 6), true);
    let r = f.rebuilder(f.outsider(3));
    let got = tokio::time::timeout(Duration::from_secs(10), r.produce(cid))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, f.blocks[&cid]);
}

#[tokio::test]
async fn too_few_cells_name_the_missing_ones_and_their_holders() {
    let f = Fixture::new(2, 1, 40, SIZES_2_1);
    let cid = f.manifest.stripes[1].data[0];
    let (dead, lacking) = (f.holder(1, 0), f.holder(1, 1));
    let parity_holder = f.holder(1, 2);
    f.remote.set_dead(dead, true);
    f.remote.set_down(parity_holder, true);
    f.stores[f.peer_index(&lacking)]
        .delete(&f.manifest.stripes[1].data[1])
        .unwrap();
    let err = f.rebuilder(f.outsider(1)).produce(cid).await.unwrap_err();
    match &err {
        RebuildError::TooFewCells {
            stripe,
            column,
            have,
            need,
            missing,
            ..
        } => {
            assert_eq!((*stripe, *column, *have, *need), (1, 0, 0, 2));
            assert_eq!(
                missing,
                &vec![
                    MissingCell {
                        column: 1,
                        holder: Some(lacking),
                        why: Absence::NotThere
                    },
                    MissingCell {
                        column: 2,
                        holder: Some(parity_holder),
                        why: Absence::Unreachable("connection refused".into())
                    },
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&lacking.to_string()), "{msg}");
    assert!(msg.contains(&parity_holder.to_string()), "{msg}");
    assert!(msg.contains("does not have it"), "{msg}");
    // Through the node's hook, the same words reach a reader.
    let via_hook = tessera_node::Producer::produce(&f.rebuilder(f.outsider(1)), cid)
        .await
        .unwrap_err();
    assert!(via_hook.contains("connection refused"), "{via_hook}");
}

#[tokio::test]
async fn interior_and_manifest_blocks_come_from_any_interior_holder() {
    let f = Fixture::new(2, 1, 40, SIZES_2_1);
    // Interior holders are peers 0 and 1; run on peer 3.
    f.remote.set_down(f.peers[0], true);
    let r = f.rebuilder(3);
    for cid in f.manifest.interior.iter().chain(&f.manifest_blocks) {
        assert_eq!(r.produce(*cid).await.unwrap(), f.blocks[cid]);
    }
    f.remote.set_dead(f.peers[1], true);
    let err = r.produce(f.root).await.unwrap_err();
    assert!(matches!(&err, RebuildError::Unavailable { holders, .. } if holders.len() == 2));
    let msg = err.to_string();
    assert!(
        msg.contains("connection refused") && msg.contains("down"),
        "{msg}"
    );
    let stranger = Block::from_data_v1(RAW, Bytes::from_static(b"not ours"));
    assert!(matches!(
        r.produce(*stranger.cid()).await,
        Err(RebuildError::UnknownBlock { .. })
    ));
}

#[tokio::test]
async fn producer_hook_knows_exactly_the_pins_blocks() {
    let f = Fixture::new(2, 1, 40, SIZES_2_1);
    let r = f.rebuilder(3);
    let hook: &dyn tessera_node::Producer = &r;
    for cid in f.blocks.keys() {
        assert!(hook.can_produce(cid));
    }
    let stranger = Block::from_data_v1(RAW, Bytes::from_static(b"not ours"));
    assert!(!hook.can_produce(stranger.cid()));
    let cid = f.manifest.stripes[0].parity[0];
    assert_eq!(hook.produce(cid).await.unwrap(), f.blocks[&cid]);
}

/// Moves column `column` of `group` to the spare peer (whose store lacks it) and kills the old
/// holder, as a repair would.
fn reallocate(f: &Fixture, group: usize, column: usize) -> usize {
    let spare = (0..f.peers.len())
        .find(|&p| !f.layout.columns[group].contains(&f.peers[p]))
        .unwrap();
    f.remote.set_dead(f.layout.columns[group][column], true);
    let mut pin = f.pin.clone();
    if let Some(ec) = &mut pin.ec {
        ec.columns[group][column] = f.peers[spare];
    }
    f.index.update_layout(&pin);
    spare
}

#[tokio::test]
async fn a_lost_column_is_rebuilt_in_batches_and_stored() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let k = 6;
    // The last group holds only the short stripe, which has cells in columns 0..3 and 6..9: a
    // data column, a data column without cells (nothing to do), and a parity column.
    let last = f.manifest.groups.len() - 1;
    for column in [1, 4, 8] {
        let spare = reallocate(&f, last, column);
        let r = f.rebuilder(spare);
        r.set_stripes_in_flight(1);
        let g = f.manifest.groups[last];
        let cells: Vec<Cid> = group_stripes(&f.manifest, g.first_stripe, g.stripes)
            .iter()
            .filter_map(|s| s.cid(k, column).copied())
            .collect();
        let stored = r.rebuild_column(&f.root, last, column).await.unwrap();
        assert_eq!(stored, cells.len() as u64, "column {column}");
        for cid in &cells {
            assert_eq!(
                f.stores[spare].get_verified(cid).unwrap().as_ref(),
                Some(&f.blocks[cid])
            );
        }
        // Nothing left to do the second time.
        assert_eq!(r.rebuild_column(&f.root, last, column).await.unwrap(), 0);
        f.remote.set_dead(f.layout.columns[last][column], false);
        f.index.update_layout(&f.pin);
    }
    // A group of three stripes at the default throttle: one batch of several stripes.
    let spare = reallocate(&f, 1, 2);
    let r = f.rebuilder(spare);
    assert_eq!(r.rebuild_column(&f.root, 1, 2).await.unwrap(), 3);
    assert!(matches!(
        r.rebuild_column(&f.root, 0, 9).await,
        Err(RebuildError::NoSuchColumn { .. })
    ));
    assert!(matches!(
        r.rebuild_column(&f.manifest_blocks[0], 0, 0).await,
        Err(RebuildError::UnknownPin { .. })
    ));
}

#[tokio::test]
async fn a_repair_keeps_what_it_could_rebuild_before_failing() {
    let f = Fixture::new(2, 1, 40, SIZES_2_1);
    // Group 0 holds stripes 0 and 1; column 0 moves to the spare, and stripe 1's other data cell
    // is gone from its holder, so only stripe 0 can be rebuilt.
    let g = f.manifest.groups[0];
    assert_eq!((g.first_stripe, g.stripes), (0, 2));
    let spare = reallocate(&f, 0, 0);
    let lacking = f.holder(1, 1);
    f.stores[f.peer_index(&lacking)]
        .delete(&f.manifest.stripes[1].data[1])
        .unwrap();
    let r = f.rebuilder(spare);
    r.set_stripes_in_flight(1);
    let err = r.rebuild_column(&f.root, 0, 0).await.unwrap_err();
    assert!(
        matches!(&err, RebuildError::TooFewCells { stripe: 1, missing, .. } if missing.len() == 1)
    );
    assert!(f.stores[spare].has(&f.manifest.stripes[0].data[0]).unwrap());
    assert!(!f.stores[spare].has(&f.manifest.stripes[1].data[0]).unwrap());
}

#[test]
fn decode_rebuilds_from_any_k_cells_and_ignores_a_corrupt_one() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let rec = Reconstructor::for_manifest(&f.manifest.header).unwrap();
    let k = 6;
    let cells_of = |s: usize| -> Vec<Option<Bytes>> {
        let stripe = &f.manifest.stripes[s];
        (0..9)
            .map(|c| stripe.cid(k, c).map(|cid| f.blocks[cid].clone()))
            .collect()
    };
    // Stripe 2, column 3 lost along with two more: exactly k cells left, one of them rotten
    // would be one too many, so rot one only when a spare exists (drop two instead of three).
    let stripe = f.manifest.stripes[2].clone();
    let mut cells = cells_of(2);
    cells[3] = None;
    cells[0] = None;
    cells[7] = None;
    let out = decode(&rec, 3, &[(stripe.clone(), cells.clone())]);
    assert_eq!(
        out[0].as_ref().unwrap().as_ref().unwrap().data(),
        &f.blocks[&stripe.data[3]]
    );
    cells[0] = cells_of(2)[0].clone();
    let mut rotten = cells[1].clone().unwrap().to_vec();
    rotten[0] ^= 1;
    cells[1] = Some(Bytes::from(rotten));
    let out = decode(&rec, 3, &[(stripe.clone(), cells)]);
    assert_eq!(
        out[0].as_ref().unwrap().as_ref().unwrap().data(),
        &f.blocks[&stripe.data[3]]
    );

    // The short last stripe: three data cells, so any three of its six real cells do, and a
    // batch answers `None` for a column it has no cell in.
    let last = f.manifest.stripes.len() - 1;
    let short = f.manifest.stripes[last].clone();
    assert_eq!(short.data.len(), 3);
    let mut cells = cells_of(last);
    for c in [0, 1, 6] {
        cells[c] = None;
    }
    let mut full = cells_of(4);
    full[1] = None;
    let batch = vec![
        (short.clone(), cells.clone()),
        (f.manifest.stripes[4].clone(), full),
    ];
    let out = decode(&rec, 1, &batch);
    assert_eq!(
        out[0].as_ref().unwrap().as_ref().unwrap().data(),
        &f.blocks[&short.data[1]]
    );
    assert_eq!(
        out[1].as_ref().unwrap().as_ref().unwrap().data(),
        &f.blocks[&f.manifest.stripes[4].data[1]]
    );
    assert!(matches!(
        decode(&rec, 4, &[(short.clone(), cells.clone())])[0],
        Ok(None)
    ));
    cells[2] = None;
    assert!(matches!(
        decode(&rec, 1, &[(short, cells)])[0],
        Err(ReconstructError::TooFewCells {
            have: 2,
            need: 3,
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_block_protocol_cells_are_rebuilt_and_manifests_loaded() {
    use crate::ec::blocks::tests::{connected_peers, members};

    let net = connected_peers(4, members()).await;
    let f = Fixture::on(
        2,
        1,
        40,
        SIZES_2_1,
        net.iter().map(|p| p.peer).collect(),
        net.iter().map(|p| p.store.clone()).collect(),
    );
    // Peer 3 holds no column of group 0 and is no interior holder. The holder of column 0 is down.
    let me = &net[3];
    let dead = f.holder(0, 0);
    let alive: Alive = Arc::new(move |p: &PeerId| *p != dead);
    let dir = tempfile::tempdir().unwrap();
    let repo = tessera_node::Repo::init(dir.path()).unwrap();
    let node = tessera_node::Node::new(
        repo.root(),
        repo.config().clone(),
        me.store.clone(),
        tessera_node::DagService::local(me.store.clone()),
        repo.keypair().unwrap().public(),
    );
    let r = Rebuilder::new(node.clone(), me.client(), f.index.clone(), me.peer, alive);
    for cid in [
        f.manifest.stripes[0].data[0],
        f.manifest.stripes[0].data[1],
        f.manifest.stripes[1].parity[0],
    ] {
        assert_eq!(r.produce(cid).await.unwrap(), f.blocks[&cid]);
    }
    assert_eq!(r.produce(f.root).await.unwrap(), f.blocks[&f.root]);

    let (manifest, blocks) = load_manifest(&node, &me.client(), &f.layout).await.unwrap();
    assert_eq!(manifest, *f.manifest);
    assert_eq!(blocks, f.manifest_blocks);
}

#[tokio::test]
async fn identical_stripes_are_rebuilt_once() {
    // Six empty leaves: three identical stripes of empty cells (one data CID, one parity CID),
    // all in one group since their columns hold 0 bytes.
    let f = Fixture::new(2, 1, 40, &[0; 6]);
    assert_eq!(f.manifest.groups.len(), 1);
    let spare = reallocate(&f, 0, 2);
    let r = f.rebuilder(spare);
    assert_eq!(r.rebuild_column(&f.root, 0, 2).await.unwrap(), 1);
    let parity = f.manifest.stripes[2].parity[0];
    assert_eq!(
        f.stores[spare].get_verified(&parity).unwrap(),
        Some(Bytes::new())
    );
    assert_eq!(r.rebuild_column(&f.root, 0, 2).await.unwrap(), 0);
}

#[tokio::test]
async fn readers_of_one_stripe_share_one_gather() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let stripe = &f.manifest.stripes[2];
    // Three data columns dead, their cells asked for at once, as a reader's read-ahead does.
    for column in 0..3 {
        f.remote.set_dead(f.holder(2, column), true);
    }
    f.remote.asked.lock().unwrap().clear();
    let r = f.rebuilder(f.outsider(2));
    // Every data cell, the living ones included: they come from the same gather.
    let wanted: Vec<Cid> = stripe.data.clone();
    let got = futures::future::join_all(wanted.iter().map(|c| r.produce(*c))).await;
    for (cid, got) in wanted.iter().zip(got) {
        assert_eq!(got.unwrap(), f.blocks[cid]);
    }
    // One gather of k cells for the six, not k for each dead one plus one for each living one.
    let asked = f.remote.asked_cells();
    assert_eq!(asked, 6);
    assert_eq!(
        r.inner
            .stripe_reads
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        r.inner.reads.lock().unwrap().is_empty(),
        "the shared read left its table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_read_gathers_nothing() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    let stripe = &f.manifest.stripes[2];
    let r = f.rebuilder(f.outsider(2));
    for cid in &stripe.data {
        assert_eq!(r.produce(*cid).await.unwrap(), f.blocks[cid]);
    }
    assert_eq!(
        r.inner
            .stripe_reads
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a healthy read started a stripe read"
    );
    let asked = f.remote.asked_cells();
    assert_eq!(
        asked,
        stripe.data.len(),
        "one fetch per cell, from its holder"
    );
}

#[tokio::test]
async fn a_holder_that_failed_is_not_asked_again_for_a_while() {
    let f = Fixture::new(6, 3, 700, SIZES_6_3);
    // The monitor still counts the holder up (it died a moment ago), but it refuses.
    let dead = f.holder(0, 0);
    f.remote.set_down(dead, true);
    let r = f.rebuilder(f.outsider(0));
    let first = f.manifest.stripes[0].data[0];
    assert_eq!(r.produce(first).await.unwrap(), f.blocks[&first]);
    let asked_dead = |f: &Fixture| {
        f.remote
            .asked_peers()
            .iter()
            .filter(|p| **p == dead)
            .count()
    };
    let after_first = asked_dead(&f);
    assert!(after_first >= 1, "the first read asks it and learns");
    // The next reads of its cells go straight to reconstruction.
    for s in 1..f.manifest.stripes.len() {
        if f.holder(s, 0) != dead {
            continue;
        }
        let cid = f.manifest.stripes[s].data[0];
        assert_eq!(r.produce(cid).await.unwrap(), f.blocks[&cid]);
    }
    assert_eq!(
        asked_dead(&f),
        after_first,
        "not asked again within UNREACHABLE_FOR"
    );
}

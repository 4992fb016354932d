//! Random sequences of operations against a model of what the store must
//! hold. Failure seeds land in `proptest-regressions/` and are kept in git.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use tessera_blockstore::{Block, Blockstore, Cid, Config, PinMode};

use crate::dag::{leaf, links, node};

/// The universe of blocks a test case draws from: leaves of sizes around the
/// small inline threshold and pack limit used below, and nodes linking to
/// blocks with a higher index (so the graph has no cycle).
fn universe() -> Vec<Block> {
    let sizes = [0usize, 1, 63, 64, 65, 700, 3000, 5000, 9000];
    let mut blocks: Vec<Block> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| leaf(n, 1000 + i as u64))
        .collect();
    // Nodes over the leaves, then over other nodes.
    let n2 = node(
        &[*blocks[0].cid(), *blocks[4].cid(), *blocks[8].cid()],
        &[7; 100],
    );
    let n1 = node(&[*blocks[5].cid(), *n2.cid()], b"n1");
    let n0 = node(&[*n1.cid(), *blocks[2].cid()], &[1; 2000]);
    blocks.extend([n2, n1, n0]);
    blocks
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<usize>, bool),
    Delete(usize),
    Pin(usize, bool),
    Unpin(usize, bool),
    Gc,
    Compact,
    Reopen,
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec(0..n, 1..5), any::<bool>())
            .prop_map(|(ix, cold)| Op::Put(ix, cold)),
        2 => (0..n).prop_map(Op::Delete),
        2 => (0..n, any::<bool>()).prop_map(|(i, r)| Op::Pin(i, r)),
        1 => (0..n, any::<bool>()).prop_map(|(i, r)| Op::Unpin(i, r)),
        1 => Just(Op::Gc),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn mode(recursive: bool) -> PinMode {
    if recursive {
        PinMode::Recursive
    } else {
        PinMode::Direct
    }
}

#[derive(Default)]
struct Model {
    present: HashSet<Cid>,
    pins: HashMap<Cid, PinMode>,
}

impl Model {
    fn gc(&mut self, by_cid: &HashMap<Cid, Block>) {
        let mut keep = HashSet::new();
        let mut stack = Vec::new();
        for (cid, m) in &self.pins {
            match m {
                PinMode::Direct => {
                    if self.present.contains(cid) {
                        keep.insert(*cid);
                    }
                }
                PinMode::Recursive => stack.push(*cid),
            }
        }
        while let Some(cid) = stack.pop() {
            if !self.present.contains(&cid) || !keep.insert(cid) {
                continue;
            }
            let b = &by_cid[&cid];
            stack.extend(links(b.cid(), b.data()).unwrap());
        }
        self.present.retain(|c| keep.contains(c));
    }
}

fn config() -> Config {
    Config {
        inline_threshold: 64,
        pack_size_limit: 8192,
        compact_threshold: 0.3,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(12), 1..40)) {
        let blocks = universe();
        assert_eq!(blocks.len(), 12);
        let by_cid: HashMap<Cid, Block> = blocks.iter().map(|b| (*b.cid(), b.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut store = Blockstore::open(dir.path(), config()).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Put(ix, cold) => {
                    let batch: Vec<Block> = ix.iter().map(|&i| blocks[i].clone()).collect();
                    if cold {
                        store.put_many_cold(&batch).unwrap();
                    } else {
                        store.put_many(&batch).unwrap();
                    }
                    model.present.extend(batch.iter().map(|b| *b.cid()));
                }
                Op::Delete(i) => {
                    let cid = blocks[i].cid();
                    prop_assert_eq!(store.delete(cid).unwrap(), model.present.remove(cid));
                }
                Op::Pin(i, r) => {
                    let cid = *blocks[i].cid();
                    store.pin(&cid, mode(r)).unwrap();
                    let cur = model.pins.get(&cid).copied();
                    if cur != Some(PinMode::Recursive) {
                        model.pins.insert(cid, mode(r));
                    }
                }
                Op::Unpin(i, r) => {
                    let cid = *blocks[i].cid();
                    let cur = model.pins.get(&cid).copied();
                    let expect = match (cur, mode(r)) {
                        (None, _) => false,
                        (Some(_), PinMode::Recursive) => true,
                        (Some(PinMode::Direct), PinMode::Direct) => true,
                        (Some(PinMode::Recursive), PinMode::Direct) => false,
                    };
                    if expect {
                        model.pins.remove(&cid);
                    }
                    prop_assert_eq!(store.unpin(&cid, mode(r)).unwrap(), expect);
                }
                Op::Gc => {
                    store.gc(&links).unwrap();
                    model.gc(&by_cid);
                }
                Op::Compact => {
                    store.compact().unwrap();
                }
                Op::Reopen => {
                    drop(store);
                    store = Blockstore::open(dir.path(), config()).unwrap();
                }
            }
            // After every step the store holds exactly the model's blocks.
            for b in &blocks {
                let got = store.get_verified(b.cid()).unwrap();
                if model.present.contains(b.cid()) {
                    prop_assert_eq!(got.as_ref(), Some(b.data()));
                } else {
                    prop_assert_eq!(got, None);
                }
            }
            let stat = store.stat().unwrap();
            prop_assert_eq!(stat.blocks, model.present.len() as u64);
            let bytes: u64 = model.present.iter().map(|c| by_cid[c].data().len() as u64).sum();
            prop_assert_eq!(stat.block_bytes, bytes);
            for (cid, m) in &model.pins {
                prop_assert_eq!(store.pin_mode(cid).unwrap(), Some(*m));
            }
            prop_assert_eq!(store.pins().unwrap().len(), model.pins.len());
        }
    }
}

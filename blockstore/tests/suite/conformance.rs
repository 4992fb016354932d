//! One suite of behaviours, run against every shape of store the config
//! allows: all blocks in packs, most inline, a pack per block, tiny batches,
//! and verification off.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use bytes::Bytes;
use tessera_blockstore::{Block, Blockstore, Cid, Config, GetError, PinMode};

use crate::dag::{leaf, links, node};

macro_rules! suite {
    ($($name:ident => $config:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            fn config() -> Config {
                $config
            }

            #[test]
            fn boundary_sizes_round_trip() {
                super::boundary_sizes_round_trip(config());
            }
            #[test]
            fn cold_and_ordinary_puts_interleave() {
                super::cold_and_ordinary_puts_interleave(config());
            }
            #[test]
            fn put_and_pin_records_the_pin_with_the_blocks() {
                super::put_and_pin_records_the_pin_with_the_blocks(config());
            }
            #[test]
            fn everything_survives_reopen() {
                super::everything_survives_reopen(config());
            }
            #[test]
            fn delete_then_put_again() {
                super::delete_then_put_again(config());
            }
            #[test]
            fn gc_keeps_what_pins_reach() {
                super::gc_keeps_what_pins_reach(config());
            }
            #[test]
            fn gc_keeps_leased_blocks_until_the_lease_ends() {
                super::gc_keeps_leased_blocks_until_the_lease_ends(config());
            }
            #[test]
            fn gc_tolerates_incomplete_dags_and_bad_links() {
                super::gc_tolerates_incomplete_dags_and_bad_links(config());
            }
            #[test]
            fn gc_waits_for_guards() {
                super::gc_waits_for_guards(config());
            }
            #[test]
            fn compaction_reclaims_space_and_keeps_live_blocks() {
                super::compaction_reclaims_space_and_keeps_live_blocks(config());
            }
            #[test]
            fn reads_during_compaction_always_see_the_block() {
                super::reads_during_compaction_always_see_the_block(config());
            }
            #[test]
            fn corrupt_pack_bytes_are_never_returned() {
                super::corrupt_pack_bytes_are_never_returned(config());
            }
        }
    )*};
}

suite! {
    default => Config::default(),
    all_packed => Config { inline_threshold: 0, ..Config::default() },
    mostly_inline => Config { inline_threshold: 65_536, ..Config::default() },
    pack_per_block => Config {
        inline_threshold: 64,
        pack_size_limit: 4096,
        ..Config::default()
    },
    tiny_batches => Config {
        max_batch_bytes: 1,
        write_queue_depth: 1,
        max_open_packs: 1,
        ..Config::default()
    },
    unverified_reads => Config { verify_on_read: false, ..Config::default() },
}

/// Sizes where something changes, each with why.
fn interesting_sizes(config: &Config) -> Vec<usize> {
    let t = config.inline_threshold;
    let mut sizes = vec![
        0,       // the empty block: zero-length record or inline value
        1,       // the smallest non-empty block
        262_144, // Kubo's default chunk: the common leaf
        1 << 20, // Helia's default chunk and the Bitswap block limit
        2 << 20, // past any batch or pack boundary a small config sets
    ];
    // Either side of the inline threshold: the last inline block, the first
    // packed one, and one past it.
    sizes.extend([t.saturating_sub(1), t, t + 1]);
    sizes
}

fn open(dir: &std::path::Path, config: &Config) -> Blockstore {
    Blockstore::open(dir, config.clone()).expect("open")
}

fn boundary_sizes_round_trip(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let blocks: Vec<Block> = interesting_sizes(&config)
        .into_iter()
        .enumerate()
        .map(|(i, n)| leaf(n, i as u64))
        .collect();
    for b in &blocks {
        store.put(b).unwrap();
        assert_eq!(
            store.get(b.cid()).unwrap().as_ref(),
            Some(b.data()),
            "{}",
            b.data().len()
        );
        assert_eq!(
            store.get_verified(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
        assert_eq!(store.size_of(b.cid()).unwrap(), Some(b.data().len() as u64));
    }
    let unique: HashSet<&Cid> = blocks.iter().map(|b| b.cid()).collect();
    let stat = store.stat().unwrap();
    assert_eq!(stat.blocks, unique.len() as u64);
}

fn everything_survives_reopen(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let blocks: Vec<Block> = (0..40).map(|i| leaf(100 + i * 997, i as u64)).collect();
    let root = node(&[*blocks[0].cid()], b"root");
    {
        let store = open(dir.path(), &config);
        store.put_many(&blocks).unwrap();
        store.put(&root).unwrap();
        store.pin(root.cid(), PinMode::Recursive).unwrap();
    }
    let store = open(dir.path(), &config);
    for b in blocks.iter().chain([&root]) {
        assert_eq!(
            store.get_verified(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
    }
    assert_eq!(
        store.pin_mode(root.cid()).unwrap(),
        Some(PinMode::Recursive)
    );
    let stat = store.stat().unwrap();
    assert_eq!(stat.blocks, 41);
    assert_eq!(
        stat.block_bytes,
        blocks
            .iter()
            .chain([&root])
            .map(|b| b.data().len() as u64)
            .sum::<u64>()
    );
}

/// Cold puts write past the page cache in aligned pieces, re-writing the partial block at a
/// pack's end: every record before, between and after them must read back, before and after a
/// reopen, whatever sizes and whichever order.
fn cold_and_ordinary_puts_interleave(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [1usize, 4095, 4096, 4097, 262_144, 5_000_000, 777, 65_537];
    let blocks: Vec<Block> = (0..24)
        .map(|i| leaf(sizes[i % sizes.len()], 7000 + i as u64))
        .collect();
    let put = |store: &Blockstore, i: usize| {
        let b = std::slice::from_ref(&blocks[i]);
        if i.is_multiple_of(3) {
            store.put_many(b).unwrap();
        } else {
            store.put_many_cold(b).unwrap();
        }
    };
    let check = |store: &Blockstore, upto: usize| {
        for b in &blocks[..upto] {
            assert_eq!(
                store.get_verified(b.cid()).unwrap().as_ref(),
                Some(b.data()),
                "block of {} bytes",
                b.data().len()
            );
        }
    };
    {
        let store = open(dir.path(), &config);
        for i in 0..12 {
            put(&store, i);
            check(&store, i + 1);
        }
        // Several cold blocks in one call: one batch, several aligned pieces.
        store.put_many_cold(&blocks[12..18]).unwrap();
        check(&store, 18);
    }
    let store = open(dir.path(), &config);
    check(&store, 18);
    for i in 18..24 {
        put(&store, i);
    }
    check(&store, 24);
    drop(store);
    let store = open(dir.path(), &config);
    check(&store, 24);
    assert_eq!(store.stat().unwrap().blocks, 24);
}

/// `put_many_cold_and_pin` stores the blocks and pins the root together, whatever the batch
/// size, also when every block is already there; GC then keeps the whole DAG.
fn put_and_pin_records_the_pin_with_the_blocks(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let leaves: Vec<Block> = (0..6)
        .map(|i| leaf(70_000 + i * 1000, 900 + i as u64))
        .collect();
    let cids: Vec<Cid> = leaves.iter().map(|b| *b.cid()).collect();
    let root = node(&cids, b"put and pin");
    let mut all = leaves.clone();
    all.push(root.clone());
    store
        .put_many_cold_and_pin(&all, root.cid(), PinMode::Recursive)
        .unwrap();
    assert_eq!(
        store.pin_mode(root.cid()).unwrap(),
        Some(PinMode::Recursive)
    );
    let junk = leaf(5000, 999);
    store.put(&junk).unwrap();
    store.gc(&links).unwrap();
    for b in &all {
        assert_eq!(
            store.get_verified(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
    }
    assert_eq!(store.get(junk.cid()).unwrap(), None);
    // Everything already stored: the pin alone is recorded.
    store
        .put_many_cold_and_pin(&leaves[..1], leaves[0].cid(), PinMode::Direct)
        .unwrap();
    assert_eq!(
        store.pin_mode(leaves[0].cid()).unwrap(),
        Some(PinMode::Direct)
    );
    drop(store);
    let store = open(dir.path(), &config);
    assert_eq!(
        store.pin_mode(root.cid()).unwrap(),
        Some(PinMode::Recursive)
    );
}

fn delete_then_put_again(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let b = leaf(5000, 1);
    store.put(&b).unwrap();
    assert!(store.delete(b.cid()).unwrap());
    assert_eq!(store.get(b.cid()).unwrap(), None);
    store.put(&b).unwrap();
    assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    drop(store);
    let store = open(dir.path(), &config);
    assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
}

fn gc_keeps_what_pins_reach(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    // root -> {mid -> {l1, l2}, l3}; mid2 -> l4 pinned directly (l4 goes);
    // shared is linked from both root and an unpinned node.
    let (l1, l2, l3, l4, shared) = (
        leaf(3000, 1),
        leaf(10, 2),
        leaf(70_000, 3),
        leaf(5, 4),
        leaf(9000, 5),
    );
    let mid = node(&[*l1.cid(), *l2.cid()], b"mid");
    let root = node(&[*mid.cid(), *l3.cid(), *shared.cid()], b"root");
    let mid2 = node(&[*l4.cid()], b"mid2");
    let stray = node(&[*shared.cid()], b"stray");
    let junk: Vec<Block> = (10..30).map(|i| leaf(4000, i)).collect();
    let all: Vec<Block> = [&l1, &l2, &l3, &l4, &shared, &mid, &root, &mid2, &stray]
        .into_iter()
        .cloned()
        .chain(junk.iter().cloned())
        .collect();
    store.put_many(&all).unwrap();
    store.pin(root.cid(), PinMode::Recursive).unwrap();
    store.pin(mid2.cid(), PinMode::Direct).unwrap();

    let report = store.gc(&links).unwrap();
    let kept = [&l1, &l2, &l3, &shared, &mid, &root, &mid2];
    for b in kept {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    for b in [&l4, &stray].into_iter().chain(&junk) {
        assert!(!store.has(b.cid()).unwrap(), "should be gone");
    }
    assert_eq!(report.blocks_kept, kept.len() as u64);
    assert_eq!(report.blocks_removed, (all.len() - kept.len()) as u64);
    assert_eq!(report.missing, 0);
    assert_eq!(store.stat().unwrap().blocks, kept.len() as u64);
    // A second GC finds nothing to do.
    let again = store.gc(&links).unwrap();
    assert_eq!(again.blocks_removed, 0);

    // Unpinning lets GC take the DAG.
    store.unpin(root.cid(), PinMode::Recursive).unwrap();
    store.unpin(mid2.cid(), PinMode::Direct).unwrap();
    store.gc(&links).unwrap();
    assert_eq!(store.stat().unwrap().blocks, 0);
}

fn gc_keeps_leased_blocks_until_the_lease_ends(config: Config) {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let (a, b, c, d) = (leaf(3000, 1), leaf(70_000, 2), leaf(10, 3), leaf(500, 4));
    store
        .put_many(&[a.clone(), b.clone(), c.clone(), d.clone()])
        .unwrap();
    let hour = Instant::now() + Duration::from_secs(3600);
    store.lease(&[*a.cid(), *b.cid()], hour);
    // Already over: kept by nothing.
    store.lease(&[*c.cid()], Instant::now());
    // Leased before it arrives, as a push may be.
    let late = leaf(900, 5);
    store.lease(&[*late.cid()], hour);
    store.put(&late).unwrap();
    let report = store.gc(&links).unwrap();
    assert_eq!(report.blocks_removed, 2, "{report:?}");
    for kept in [&a, &b, &late] {
        assert_eq!(store.get(kept.cid()).unwrap().as_ref(), Some(kept.data()));
    }
    assert!(!store.has(c.cid()).unwrap() && !store.has(d.cid()).unwrap());
    // Released (pinned elsewhere, or given up): the next GC takes it.
    store.release(&[*a.cid()]);
    store.gc(&links).unwrap();
    assert!(!store.has(a.cid()).unwrap());
    assert!(store.has(b.cid()).unwrap());
    assert_eq!(store.leased(), 2);
}

fn gc_tolerates_incomplete_dags_and_bad_links(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let absent = leaf(100, 99);
    let present = leaf(100, 98);
    let partial = node(&[*absent.cid(), *present.cid()], b"partial");
    // A node whose link section is garbage: the extractor refuses it.
    let broken = Block::from_data_v1(tessera_blockstore::DAG_CBOR, Bytes::from_static(&[5, 200]));
    let orphan_of_broken = leaf(100, 97);
    store
        .put_many(&[
            partial.clone(),
            present.clone(),
            broken.clone(),
            orphan_of_broken.clone(),
        ])
        .unwrap();
    store.pin(partial.cid(), PinMode::Recursive).unwrap();
    store.pin(broken.cid(), PinMode::Recursive).unwrap();
    // A recursive pin of a root that is not stored at all.
    store.pin(leaf(1, 1000).cid(), PinMode::Recursive).unwrap();

    let report = store.gc(&links).unwrap();
    assert_eq!(report.missing, 2, "{report:?}");
    assert_eq!(report.unfollowed, 1, "{report:?}");
    for b in [&partial, &present, &broken] {
        assert!(store.has(b.cid()).unwrap());
    }
    assert!(!store.has(orphan_of_broken.cid()).unwrap());
}

fn gc_waits_for_guards(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let guard = store.gc_guard();
    // An add under the guard: blocks first, pin last.
    let b = leaf(1000, 1);
    store.put(&b).unwrap();
    let (done_tx, done_rx) = sync_channel(1);
    std::thread::scope(|s| {
        let store = &store;
        s.spawn(move || {
            let r = store.gc(&links).map(|r| r.blocks_removed);
            done_tx.send(r).unwrap();
        });
        // GC must not finish while the guard is held. This waits a bounded
        // time for something that must not happen.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        store.pin(b.cid(), PinMode::Direct).unwrap();
        drop(guard);
        let removed = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("gc finishes once the guard is dropped")
            .unwrap();
        assert_eq!(removed, 0);
    });
    assert!(store.has(b.cid()).unwrap());
}

fn compaction_reclaims_space_and_keeps_live_blocks(mut config: Config) {
    config.pack_size_limit = config.pack_size_limit.min(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    // Past the largest inline threshold: these live in packs.
    let blocks: Vec<Block> = (0..64).map(|i| leaf(70_000, i)).collect();
    store.put_many(&blocks).unwrap();
    let before = packs_disk_bytes(dir.path());
    // Keep every fourth block: three quarters of the packs are dead.
    let (keep, drop_): (Vec<_>, Vec<_>) = blocks.iter().enumerate().partition(|(i, _)| i % 4 == 0);
    for (_, b) in &keep {
        store.pin(b.cid(), PinMode::Direct).unwrap();
    }
    let report = store.gc(&links).unwrap();
    assert_eq!(report.blocks_removed, drop_.len() as u64);
    let after = store.stat().unwrap();
    for (_, b) in &keep {
        assert_eq!(
            store.get_verified(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
    }
    let packs_after = packs_disk_bytes(dir.path());
    assert!(
        packs_after < before / 2,
        "packs took {before} bytes, now {packs_after}; {after:?} {report:?}"
    );
    assert!(report.compaction.packs_deleted > 0, "{report:?}");
    // Whatever is dead now sits in the current pack, which is never
    // compacted; everything else was rewritten. (With a pack per block, the
    // current pack is one block bigger than the limit.)
    assert!(
        after.dead_bytes <= config.pack_size_limit.max(71_000),
        "{after:?}"
    );
    drop(store);
    let store = open(dir.path(), &config);
    for (_, b) in &keep {
        assert_eq!(
            store.get_verified(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
    }
}

fn reads_during_compaction_always_see_the_block(mut config: Config) {
    config.pack_size_limit = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    let blocks: Vec<Block> = (0..96).map(|i| leaf(70_000, i)).collect();
    store.put_many(&blocks).unwrap();
    let keep: Vec<&Block> = blocks.iter().step_by(3).collect();
    for b in &blocks {
        if !keep.contains(&b) {
            store.delete(b.cid()).unwrap();
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (store, keep, stop) = (&store, &keep, &stop);
                s.spawn(move || {
                    let mut reads = 0u64;
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) || reads < 50 {
                        let b = keep[i % keep.len()];
                        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
                        i += 1;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let report = store.compact().unwrap();
        assert!(report.blocks_moved > 0, "{report:?}");
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() >= 50);
        }
    });
}

fn corrupt_pack_bytes_are_never_returned(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), &config);
    // Larger than any inline threshold: it lives in a pack.
    let b = leaf(100_000, 7);
    let other = leaf(100_000, 8);
    store.put_many(&[b.clone(), other.clone()]).unwrap();
    // Find the pack holding the block by its bytes and flip one in the middle.
    let packs = dir.path().join("packs");
    let mut flipped = false;
    for entry in std::fs::read_dir(&packs).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(pos) = bytes
            .windows(64)
            .position(|w| w == &b.data()[50_000..50_064])
        {
            bytes[pos + 10] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            flipped = true;
        }
    }
    assert!(flipped);
    let err = store.get_verified(b.cid()).unwrap_err();
    assert!(
        matches!(err, GetError::Corrupt { cid } if cid == *b.cid()),
        "{err}"
    );
    assert_eq!(store.get(b.cid()).unwrap(), None);
    assert_eq!(store.corrupt_blocks().unwrap().len(), 1);
    // Its neighbour is untouched.
    assert_eq!(
        store.get_verified(other.cid()).unwrap().as_ref(),
        Some(other.data())
    );
}

/// Bytes the pack files take on disk.
fn packs_disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

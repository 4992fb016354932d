//! Scrub: re-hashing stored blocks at a bounded rate, so that rot is found before a reader or a
//! repair trips on it, and healing the cells and replicated blocks this peer must hold by
//! rebuilding them as a repair would.
//!
//! The cursor lives in memory: after a restart the scrub starts again from the first block, which
//! costs one extra pass and loses nothing.

use std::time::Duration;

use cid::Cid;
use futures::stream::{self, StreamExt};
use tessera_blockstore::{Block, Blockstore};
use tokio::sync::watch;

use super::rebuild::Rebuilder;

/// Blocks re-hashed per step.
const STEP: usize = 64;
/// Budget a block costs on top of its bytes: reading its index entry and seeking to it costs
/// about as much as hashing a KiB, and without it a store of tiny blocks would be scrubbed in a
/// tight loop.
const PER_BLOCK: u64 = 1024;
/// Least time between two passes, so that a small store is not re-read continuously.
const PASS_PAUSE: Duration = Duration::from_secs(60);
/// Wait before retrying a step that failed (a store error is rarely gone sooner).
const ERROR_PAUSE: Duration = Duration::from_secs(30);
/// Blocks healed at once; each may gather `k` cells from other peers.
const HEAL_CONCURRENCY: usize = 4;

/// Re-hashes stored blocks forever at `bytes_per_sec` at most (0 turns the scrub off), starting
/// over after the last block; each corrupt block found (moved aside by the store) goes to
/// `on_corrupt`. Returns when `shutdown` turns true or its sender goes away.
pub(crate) async fn scrub_loop(
    store: Blockstore,
    bytes_per_sec: u64,
    on_corrupt: impl Fn(Vec<Cid>) + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut after: Option<Cid> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pause = if bytes_per_sec == 0 {
            Duration::MAX
        } else {
            let s = store.clone();
            let from = after;
            match tokio::task::spawn_blocking(move || s.scrub_step(from.as_ref(), STEP)).await {
                Ok(Ok(step)) => {
                    if !step.corrupt.is_empty() {
                        tracing::warn!(blocks = step.corrupt.len(), "scrub found corrupt blocks");
                        on_corrupt(step.corrupt);
                    }
                    after = step.next;
                    let cost = step.bytes.saturating_add(
                        (step.checked.saturating_add(step.unverifiable)).saturating_mul(PER_BLOCK),
                    );
                    let pause = Duration::from_secs_f64(cost as f64 / bytes_per_sec as f64);
                    if after.is_none() {
                        tracing::debug!("scrub pass complete");
                        pause.max(PASS_PAUSE)
                    } else {
                        pause
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "scrub step failed; retrying");
                    ERROR_PAUSE
                }
                Err(e) => {
                    tracing::warn!(error = %e, "scrub step stopped; retrying");
                    ERROR_PAUSE
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Rebuilds and stores again the blocks among `cids` (usually [`Blockstore::corrupt_blocks`])
/// that an EC pin makes this peer hold. Others are left alone: a replicated pin's block is
/// fetched again by the pin tracker, and a block no pin needs is not worth a rebuild. Returns
/// how many were healed and how many could not be.
pub(crate) async fn heal(rebuilder: &Rebuilder, store: &Blockstore, cids: Vec<Cid>) -> (u64, u64) {
    let index = rebuilder.index();
    let local = rebuilder.local();
    let mine: Vec<Cid> = cids
        .into_iter()
        .filter(|c| index.must_hold(c, &local))
        .collect();
    let results: Vec<bool> = stream::iter(mine)
        .map(|cid| async move {
            let bytes = match rebuilder.produce(cid).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%cid, error = %e, "could not heal a corrupt block");
                    return false;
                }
            };
            let store = store.clone();
            // `produce` checked the bytes against the CID.
            let block = Block::new_unchecked(cid, bytes);
            match tokio::task::spawn_blocking(move || store.put(&block)).await {
                Ok(Ok(())) => {
                    tracing::info!(%cid, "corrupt block rebuilt");
                    true
                }
                Ok(Err(e)) => {
                    tracing::warn!(%cid, error = %e, "could not store a healed block");
                    false
                }
                Err(e) => {
                    tracing::warn!(%cid, error = %e, "could not store a healed block");
                    false
                }
            }
        })
        .buffer_unordered(HEAL_CONCURRENCY)
        .collect()
        .await;
    let healed = results.iter().filter(|ok| **ok).count() as u64;
    (healed, results.len() as u64 - healed)
}

#[cfg(test)]
mod tests {
    use tokio::time::timeout;

    use super::*;
    use crate::ec::rebuild::tests::{Fixture, SIZES_2_1, SIZES_6_3};

    /// Flips a byte of `bytes` where the store's pack files hold them.
    fn rot(store: &Blockstore, bytes: &[u8]) {
        let mut hits = Vec::new();
        for entry in std::fs::read_dir(store.dir().join("packs")).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            for (pos, _) in data
                .windows(bytes.len())
                .enumerate()
                .filter(|(_, w)| *w == bytes)
            {
                hits.push((path.clone(), pos));
            }
        }
        assert_eq!(
            hits.len(),
            1,
            "the block's bytes must occur once in the packs"
        );
        let (path, pos) = &hits[0];
        let mut data = std::fs::read(path).unwrap();
        data[pos + bytes.len() / 2] ^= 0xff;
        std::fs::write(path, data).unwrap();
    }

    #[tokio::test]
    async fn scrub_finds_a_rotten_cell_and_heal_rebuilds_it() {
        let f = Fixture::new(6, 3, 700, SIZES_6_3);
        // Peer 0 holds column 0 of group 0: stripe 0's first leaf (120 bytes).
        let store = f.stores[0].clone();
        let victim = f.manifest.stripes[0].data[0];
        rot(&store, &f.blocks[&victim]);

        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let (stop, shutdown) = watch::channel(false);
        let on_corrupt = move |cids: Vec<Cid>| {
            let _ = tx.try_send(cids);
        };
        let task = tokio::spawn(scrub_loop(store.clone(), 1 << 30, on_corrupt, shutdown));
        let found = timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
        assert_eq!(found, Some(vec![victim]));
        stop.send(true).unwrap();
        timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert!(!store.has(&victim).unwrap());

        let corrupt: Vec<Cid> = store
            .corrupt_blocks()
            .unwrap()
            .into_iter()
            .map(|c| c.cid)
            .collect();
        assert_eq!(corrupt, vec![victim]);
        assert_eq!(heal(&f.rebuilder(0), &store, corrupt).await, (1, 0));
        assert_eq!(
            store.get_verified(&victim).unwrap().as_ref(),
            Some(&f.blocks[&victim])
        );
        assert!(store.corrupt_blocks().unwrap().is_empty());
    }

    #[tokio::test]
    async fn heal_rebuilds_only_what_this_peer_holds_and_counts_failures() {
        let f = Fixture::new(2, 1, 40, SIZES_2_1);
        let r = f.rebuilder(0);
        let store = &f.stores[0];
        // Peer 0 holds column 0 of group 0, and the interior blocks (it is an interior holder).
        let mine = f.manifest.stripes[0].data[0];
        let interior = f.root;
        let theirs = f.manifest.stripes[0].data[1];
        let stranger = *Block::from_data_v1(tessera_blockstore::RAW, "x".into()).cid();
        for cid in [mine, interior] {
            store.delete(&cid).unwrap();
        }
        let got = heal(&r, store, vec![mine, interior, theirs, stranger]).await;
        assert_eq!(got, (2, 0));
        assert!(store.has(&mine).unwrap() && store.has(&interior).unwrap());
        assert!(!store.has(&theirs).unwrap());

        // Both other cells of the stripe out of reach: the heal fails and says so.
        store.delete(&mine).unwrap();
        f.remote.set_dead(f.holder(0, 1), true);
        f.remote.set_down(f.holder(0, 2), true);
        assert_eq!(heal(&r, store, vec![mine]).await, (0, 1));
    }

    #[tokio::test]
    async fn a_scrub_at_rate_zero_only_waits_for_shutdown() {
        let f = Fixture::new(2, 1, 40, SIZES_2_1);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(scrub_loop(
            f.stores[0].clone(),
            0,
            |_| panic!("no scrub at rate 0"),
            shutdown,
        ));
        stop.send(true).unwrap();
        timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}

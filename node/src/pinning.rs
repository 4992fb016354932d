//! Pinning on this node, and the hook through which a cluster takes pin requests over.
//!
//! [`fetch_dag`] and [`pin_complete`] are what `ipfs pin add` does locally; the cluster's pin tracker
//! calls the same code through [`Node::pin_local`]. A [`Pinner`] installed with [`Node::set_pinner`]
//! receives the Kubo API's `pin/add` and `pin/rm` instead, so that they become cluster pins (as
//! IPFS Cluster's IPFS proxy does) while the node stays ignorant of the cluster.

use cid::Cid;
use futures::StreamExt;
use futures::future::BoxFuture;
use tessera_blockstore::{Block, PinMode};

use crate::ipld::{BlockSource, walk};
use crate::node::Node;

/// Takes `pin/add` and `pin/rm` of the Kubo API when installed (the cluster peer implements it).
pub trait Pinner: Send + Sync + 'static {
    /// Pins `root` (recursively or not) the way the pinner decides, returning when it is pinned
    /// where it must be, or with why not.
    fn pin(&self, root: Cid, recursive: bool) -> BoxFuture<'static, Result<(), String>>;
    /// Removes the pin of `root`.
    fn unpin(&self, root: Cid) -> BoxFuture<'static, Result<(), String>>;
}

/// Extra Prometheus text that the layer above the node adds to `/debug/metrics/prometheus`.
pub trait MetricsSource: Send + Sync + 'static {
    /// Prometheus exposition text (with `# HELP` and `# TYPE` lines).
    fn render(&self) -> BoxFuture<'static, String>;
}

impl Node {
    /// Fetches the whole DAG under `root` (or the root block alone when not `recursive`) and pins
    /// it in this node's blockstore. Returns the number of blocks the pin covers.
    pub async fn pin_local(&self, root: Cid, recursive: bool) -> Result<usize, String> {
        let (fetched, mode) = if recursive {
            (fetch_dag(self, root).await?, PinMode::Recursive)
        } else {
            self.dag().get(&root).await.map_err(|e| e.to_string())?;
            (
                Fetched {
                    cids: vec![root],
                    last: Vec::new(),
                },
                PinMode::Direct,
            )
        };
        let n = fetched.cids.len();
        pin_complete(self, root, fetched.cids, mode, fetched.last).await?;
        Ok(n)
    }

    /// Removes this node's pin of `root`, whichever its mode; false if it was not pinned.
    pub async fn unpin_local(&self, root: Cid) -> Result<bool, String> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || -> Result<bool, String> {
            match store.pin_mode(&root).map_err(|e| e.to_string())? {
                None => Ok(false),
                Some(mode) => store
                    .unpin(&root, mode)
                    .map(|_| true)
                    .map_err(|e| e.to_string()),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether `root` is pinned here, and how.
    pub async fn pin_mode(&self, root: Cid) -> Result<Option<PinMode>, String> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || store.pin_mode(&root).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Blocks fetched for a pin are stored in batches of about this many bytes: one fsync each.
const PIN_BATCH_BYTES: usize = 16 << 20;
/// Blocks fetched at once while walking a DAG to pin it.
const PIN_READ_AHEAD: usize = 64;

/// What [`fetch_dag`] found: every CID of the DAG, and the last batch of blocks, not stored yet so
/// that [`pin_complete`] stores it in the pin's own transaction.
pub(crate) struct Fetched {
    pub(crate) cids: Vec<Cid>,
    pub(crate) last: Vec<Block>,
}

/// Walks the DAG under `root`, fetching what is missing from the network and storing it in
/// large durable batches (all but the last), and returns every CID in it.
///
/// A batch is stored while the next one is fetched: the walk's fetches only move while it is
/// polled, so waiting for each fsync in line left the network idle for a third of a transfer.
/// At most one batch is being stored at a time, which bounds memory to two batches.
pub(crate) async fn fetch_dag(node: &Node, root: Cid) -> Result<Fetched, String> {
    let mut blocks = Box::pin(walk(node.dag().without_storing(), root, PIN_READ_AHEAD));
    let mut cids = Vec::new();
    let mut batch: Vec<Block> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut storing: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let stored = |task: Option<tokio::task::JoinHandle<Result<(), String>>>| async move {
        match task {
            Some(t) => t.await.map_err(|e| format!("store task failed: {e}"))?,
            None => Ok(()),
        }
    };
    while let Some(b) = blocks.next().await {
        let b = b.map_err(|e| e.to_string())?;
        cids.push(b.cid);
        batch_bytes += b.data.len();
        // Blocks that were already here are cheap no-ops for put_many.
        batch.push(Block::new_unchecked(b.cid, b.data));
        if batch_bytes >= PIN_BATCH_BYTES {
            stored(storing.take()).await?;
            let full = std::mem::take(&mut batch);
            storing = Some(tokio::spawn(store_batch(node.clone(), full)));
            batch_bytes = 0;
        }
    }
    stored(storing.take()).await?;
    Ok(Fetched { cids, last: batch })
}

async fn store_batch(node: Node, batch: Vec<Block>) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let cids: Vec<Cid> = batch.iter().map(|b| *b.cid()).collect();
    let store = node.store().clone();
    tokio::task::spawn_blocking(move || store.put_many_cold(&batch))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    node.announce(cids);
    Ok(())
}

/// Records a pin once every block of `cids` is in the store, with GC held off while checking.
/// `last` (blocks fetched and not stored yet) is stored in the pin's own transaction: pinning a
/// small DAG from the network costs one fsync, which is what bounds a cluster's pins per second.
pub(crate) async fn pin_complete(
    node: &Node,
    root: Cid,
    cids: Vec<Cid>,
    mode: PinMode,
    last: Vec<Block>,
) -> Result<(), String> {
    let store = node.store().clone();
    let announce: Vec<Cid> = last.iter().map(|b| *b.cid()).collect();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let _guard = store.gc_guard();
        let coming: std::collections::HashSet<&Cid> = last.iter().map(|b| b.cid()).collect();
        for c in cids.iter().filter(|c| !coming.contains(c)) {
            if !store.has(c).map_err(|e| e.to_string())? {
                return Err(format!(
                    "block {c} of {root} disappeared before the pin was recorded; retry"
                ));
            }
        }
        store
            .put_many_cold_and_pin(&last, &root, mode)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    node.announce(announce);
    node.provide_roots(vec![root]);
    Ok(())
}

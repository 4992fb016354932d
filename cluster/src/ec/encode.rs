//! Erasure-codes a DAG and distributes it: the Add flow of an EC pin up to, not including, the
//! consensus commit.
//!
//! Three stages run at once, joined by bounded channels so that memory stays bounded whatever
//! the DAG's size:
//!
//! ```text
//! walk (async: local store, else network) ──► StripeEncoder (blocking thread, rayon inside)
//!     ──► router (async) ──► one PushSession per peer (own task, 32 MiB window each)
//!                        └─► local blockstore (put_many in 16 MiB batches)
//! ```
//!
//! An add feeds the same stages from its import instead of a walk ([`Source::Import`]): blocks in
//! the order the importer makes them, children before parents, each distinct one once.
//!
//! The walk gives each distinct block once, in depth-first pre-order; blocks without links are
//! leaves (data cells), the others interior blocks. Identity-hash CIDs carry their bytes inside
//! the CID, are never fetched, and are neither striped nor replicated.

use std::collections::{HashMap, HashSet};

use cid::Cid;
use futures::StreamExt;
use libp2p::PeerId;
use tessera_bitswap_ec::{BlockKind, Emitted, Layout, ManifestHeader, StripeEncoder};
use tessera_blockstore::{Block, Blockstore, IDENTITY};
use tessera_node::ipld::{BlockSource, walk};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::blocks::{BlockClient, BlockError};
use super::placement::Placement;
use crate::pin::EcLayout;

/// Blocks the walk fetches ahead of the encoder.
const READ_AHEAD: usize = 64;
/// Blocks waiting for the encoder: a little over one 6+3 stripe.
const ENCODER_INPUT: usize = 16;
/// Encoded stripes (and passed-through blocks) waiting to be routed.
const ENCODER_OUTPUT: usize = 4;
/// Blocks queued for one peer's session, on top of its window.
const PEER_QUEUE: usize = 32;
/// The import hands its blocks to the encoder in batches of about this many bytes.
const IMPORT_BATCH_BYTES: usize = 1 << 20;
/// Local blocks are stored in batches of this many bytes: one fsync each.
const LOCAL_BATCH_BYTES: usize = 16 << 20;

/// What an encode produced: the layout to commit in the pin, and the totals.
#[derive(Debug, Clone)]
pub(crate) struct EncodeOutcome {
    /// The DAG's root.
    pub(crate) root: Cid,
    pub(crate) layout: EcLayout,
    /// Data cells (distinct leaves of the DAG).
    pub(crate) leaves: u64,
    /// Their bytes, unpadded.
    pub(crate) leaf_bytes: u64,
    /// Every byte pushed or stored locally: cells, parity, and each copy of the interior and
    /// manifest blocks.
    pub(crate) stored_bytes: u64,
}

/// Why an encode stopped; nothing of it may be committed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum EncodeError {
    /// `k` or `m` cannot be used.
    #[error("cannot erasure-code with {k}+{m}: {reason}")]
    Layout { k: usize, m: usize, reason: String },
    /// A block of the DAG could not be had or read.
    #[error("cannot read the DAG under {root}: {reason}")]
    Walk { root: Cid, reason: String },
    /// The encoder refused the DAG (a leaf over 16 MiB, a manifest that cannot be written).
    #[error(transparent)]
    Encode(#[from] tessera_bitswap_ec::EncodeError),
    /// A column holder did not take its blocks.
    #[error(transparent)]
    Push(#[from] BlockError),
    /// This peer's own blockstore did not take its blocks.
    #[error("cannot store erasure-coded blocks locally: {0}")]
    Store(String),
    /// A stage stopped because another one failed; the other one's error is the cause.
    #[error("the erasure-coding pipeline stopped: {0}")]
    Stopped(&'static str),
}

/// Where the blocks to erasure-code come from.
pub(crate) enum Source {
    /// A DAG already in IPFS, walked from its root: the local store first, else the network.
    Dag(Cid),
    /// A DAG being imported right now: its blocks as they are made, then its root. The adding
    /// peer never stores the whole import (only its own share, like any holder), and encoding and
    /// pushing overlap the upload.
    Import(mpsc::Receiver<Imported>),
}

/// Erasure-codes the DAG that `source` gives `k`+`m` (groups cut at `shard_size` bytes per
/// column) and sends each cell to the holder of its column, interior and manifest blocks to each
/// peer of [`Placement::interior`]. Returns once every peer acknowledged that its blocks are
/// durable. Touches neither consensus nor pins: on error the caller commits nothing.
// The arguments are the brief's API plus the shard size; a struct for them would only be built
// and taken apart again at the one call site.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn encode_and_distribute(
    node: &tessera_node::Node,
    blocks: &BlockClient,
    source: Source,
    k: usize,
    m: usize,
    shard_size: u64,
    placement: &Placement,
    local: PeerId,
) -> Result<EncodeOutcome, EncodeError> {
    let announce = |cids: Vec<Cid>| node.announce(cids);
    let sinks = Sinks::new(blocks.clone(), local, node.store().clone(), &announce);
    let layout = Layout {
        shard_size,
        ..Layout::new(k, m)
    };
    match source {
        Source::Dag(root) => {
            distribute(node.dag().without_storing(), layout, root, placement, sinks).await
        }
        Source::Import(import) => {
            pipeline(layout, placement, sinks, |tx| feed_import(import, tx)).await
        }
    }
}

/// [`encode_and_distribute`] over any block source and layout (tests use small shard sizes).
pub(crate) async fn distribute<S>(
    source: S,
    layout: Layout,
    root: Cid,
    placement: &Placement,
    sinks: Sinks<'_>,
) -> Result<EncodeOutcome, EncodeError>
where
    S: BlockSource + Clone + Send + Sync,
{
    pipeline(layout, placement, sinks, |tx| feed(source, root, tx)).await
}

/// The three stages, with `feed` giving the encoder its blocks and, last, the DAG's root.
async fn pipeline<F, Fut>(
    layout: Layout,
    placement: &Placement,
    mut sinks: Sinks<'_>,
    feed: F,
) -> Result<EncodeOutcome, EncodeError>
where
    F: FnOnce(mpsc::Sender<Input>) -> Fut,
    Fut: std::future::Future<Output = Result<(), EncodeError>>,
{
    let (k, m) = (layout.data_shards, layout.parity_shards);
    let bad = |reason: String| EncodeError::Layout { k, m, reason };
    layout.validate().map_err(|e| bad(e.to_string()))?;
    let (k8, m8) = match (u8::try_from(k), u8::try_from(m)) {
        (Ok(k8), Ok(m8)) => (k8, m8),
        _ => return Err(bad("at most 255 shards of each kind".into())),
    };
    let encoder = StripeEncoder::new(layout)?;

    let (in_tx, in_rx) = mpsc::channel(ENCODER_INPUT);
    let (out_tx, out_rx) = mpsc::channel(ENCODER_OUTPUT);
    let encoding = tokio::task::spawn_blocking(move || run_encoder(encoder, in_rx, out_tx));
    let mut router = Router::new(placement);
    let routed = tokio::try_join!(feed(in_tx), async {
        route(out_rx, &mut router, &mut sinks).await
    });
    // The encoder ends soon after either channel closes; its own error explains a stopped stage.
    let encoded = encoding
        .await
        .map_err(|_| EncodeError::Stopped("the encoder thread panicked"))?;
    let (root, manifest, header) = match (routed, encoded) {
        (Ok(((), done)), Ok(())) => done,
        (Err(EncodeError::Stopped(_)), Err(e)) | (Ok(_), Err(e)) => return Err(e),
        (Err(e), _) => return Err(e),
    };
    let stored_bytes = sinks.finish().await?;
    let groups = usize::try_from(header.groups)
        .map_err(|_| bad("more groups than this machine can count".into()))?;
    Ok(EncodeOutcome {
        root,
        layout: EcLayout {
            k: k8,
            m: m8,
            manifest,
            columns: (0..groups).map(|g| placement.group(g)).collect(),
            interior: placement.interior(),
        },
        leaves: header.leaves,
        leaf_bytes: header.leaf_bytes,
        stored_bytes,
    })
}

/// What an import hands [`Source::Import`]: its blocks in batches as they are made (children before
/// parents, duplicates possible), then the root of the DAG to pin.
#[derive(Debug)]
pub(crate) enum Imported {
    Blocks(Vec<Block>),
    Root(Cid),
}

/// The import's side of an erasure-coded add: a sink of the node's add pipeline that sends each
/// batch on to the stripe encoder. A full pipeline blocks the import, and so the upload.
pub struct ImportSink {
    tx: mpsc::Sender<Imported>,
}

impl ImportSink {
    pub(crate) fn new(tx: mpsc::Sender<Imported>) -> Self {
        ImportSink { tx }
    }
}

impl tessera_node::adder::BlockSink for ImportSink {
    fn put(&mut self, blocks: Vec<Block>) -> Result<(), String> {
        self.tx
            .blocking_send(Imported::Blocks(blocks))
            .map_err(|_| STOPPED.to_string())
    }

    /// Small batches: nothing is fsynced per batch here, and the encoder's own queues do the
    /// buffering, so the import holds little memory.
    fn batch_bytes(&self) -> usize {
        IMPORT_BATCH_BYTES
    }

    fn finish(&mut self, roots: Vec<Cid>) -> Result<(), String> {
        let [root] = roots[..] else {
            return Err(format!(
                "an erasure-coded add makes one pin, and this upload has {} top-level entries: \
                 add one file or one directory, or wrap them with wrap-with-directory",
                roots.len()
            ));
        };
        self.tx
            .blocking_send(Imported::Root(root))
            .map_err(|_| STOPPED.to_string())
    }
}

/// What the import is told when the encoding side stopped; the add reports the encoder's error.
pub(crate) const STOPPED: &str = "the erasure-coding pipeline stopped";

async fn feed_import(
    mut import: mpsc::Receiver<Imported>,
    tx: mpsc::Sender<Input>,
) -> Result<(), EncodeError> {
    let stopped = |_| EncodeError::Stopped("the encoder stopped taking blocks");
    // An import repeats a block whose content repeats; the encoder takes each block once, as the
    // walk gives it. The set grows with the DAG: about 100 bytes per block, 400 MB for a TiB of
    // 256 KiB leaves, as the walk's own set of visited blocks does.
    let mut seen = HashSet::new();
    while let Some(item) = import.recv().await {
        match item {
            Imported::Blocks(blocks) => {
                for b in blocks {
                    let cid = *b.cid();
                    if cid.hash().code() == IDENTITY || !seen.insert(cid) {
                        continue;
                    }
                    let links = tessera_node::ipld::links(&cid, b.data()).map_err(|e| {
                        EncodeError::Walk {
                            root: cid,
                            reason: e.to_string(),
                        }
                    })?;
                    let kind = if links.is_empty() {
                        BlockKind::Leaf
                    } else {
                        BlockKind::Interior
                    };
                    tx.send(Input::Block(b, kind)).await.map_err(stopped)?;
                }
            }
            Imported::Root(root) => return tx.send(Input::End(root)).await.map_err(stopped),
        }
    }
    Err(EncodeError::Stopped(
        "the import ended before it was complete",
    ))
}

/// What the walk gives the encoder; the input ends with `End` only when the walk completed, so
/// that a failed walk never yields a manifest.
enum Input {
    Block(Block, BlockKind),
    /// The walk or import is complete; the DAG's root.
    End(Cid),
}

/// What the encoder gives the router.
enum Output {
    Block(Emitted),
    /// The DAG's root, the manifest's root, and its totals.
    Finished(Box<(Cid, Cid, ManifestHeader)>),
}

async fn feed<S>(source: S, root: Cid, tx: mpsc::Sender<Input>) -> Result<(), EncodeError>
where
    S: BlockSource + Clone + Send + Sync,
{
    let mut blocks = Box::pin(walk(source, root, READ_AHEAD));
    while let Some(b) = blocks.next().await {
        let b = b.map_err(|e| EncodeError::Walk {
            root,
            reason: e.to_string(),
        })?;
        if b.cid.hash().code() == IDENTITY {
            continue;
        }
        let kind = if b.links.is_empty() {
            BlockKind::Leaf
        } else {
            BlockKind::Interior
        };
        tx.send(Input::Block(Block::new_unchecked(b.cid, b.data), kind))
            .await
            .map_err(|_| EncodeError::Stopped("the encoder stopped taking blocks"))?;
    }
    tx.send(Input::End(root))
        .await
        .map_err(|_| EncodeError::Stopped("the encoder stopped taking blocks"))
}

/// The encoder's thread: hashing and Reed-Solomon stay off the async runtime.
fn run_encoder(
    mut encoder: StripeEncoder,
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Output>,
) -> Result<(), EncodeError> {
    let send = |o: Output| {
        tx.blocking_send(o)
            .map_err(|_| EncodeError::Stopped("the router stopped taking stripes"))
    };
    let root = loop {
        match rx.blocking_recv() {
            Some(Input::Block(block, kind)) => {
                for e in encoder.push(block, kind)? {
                    send(Output::Block(e))?;
                }
            }
            Some(Input::End(root)) => break root,
            None => return Err(EncodeError::Stopped("the walk stopped")),
        }
    };
    let finished = encoder.finish(root)?;
    for e in finished.emitted {
        send(Output::Block(e))?;
    }
    send(Output::Finished(Box::new((
        root,
        finished.manifest,
        finished.header,
    ))))
}

/// Sends what the encoder emits to its holders; returns the manifest once every sink is done.
async fn route(
    mut rx: mpsc::Receiver<Output>,
    router: &mut Router<'_>,
    sinks: &mut Sinks<'_>,
) -> Result<(Cid, Cid, ManifestHeader), EncodeError> {
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(Output::Block(e)) => {
                    for (peer, block) in router.route(e)? {
                        sinks.send(peer, block).await?;
                    }
                }
                Some(Output::Finished(done)) => return Ok(*done),
                None => return Err(EncodeError::Stopped("the encoder stopped")),
            },
            // A session that ends before it is told to has failed: stop at once rather than at
            // the next block for that peer.
            Some(err) = sinks.failed() => return Err(err),
        }
    }
}

/// Which peer gets which emitted block.
pub(crate) struct Router<'a> {
    placement: &'a Placement,
    /// The last group's holders: stripes come group by group.
    group: Option<(u64, Vec<PeerId>)>,
    interior: Vec<PeerId>,
}

impl<'a> Router<'a> {
    pub(crate) fn new(placement: &'a Placement) -> Self {
        Router {
            placement,
            group: None,
            interior: placement.interior(),
        }
    }

    /// The destinations of one emitted item: each cell to its column's holder, interior and
    /// manifest blocks to every interior holder.
    pub(crate) fn route(&mut self, e: Emitted) -> Result<Vec<(PeerId, Block)>, EncodeError> {
        match e {
            Emitted::Stripe(s) => {
                let (stripe, cells) = s.into_parts();
                let holders = match &self.group {
                    Some((g, holders)) if *g == stripe.group => holders,
                    _ => {
                        let g = usize::try_from(stripe.group)
                            .map_err(|_| EncodeError::Stopped("a group index overflowed"))?;
                        &self.group.insert((stripe.group, self.placement.group(g))).1
                    }
                };
                cells
                    .into_iter()
                    .map(|(column, block)| {
                        holders
                            .get(column)
                            .map(|p| (*p, block))
                            .ok_or(EncodeError::Stopped("a stripe has more cells than columns"))
                    })
                    .collect()
            }
            Emitted::Interior(b) | Emitted::Manifest(b) => {
                Ok(self.interior.iter().map(|p| (*p, b.clone())).collect())
            }
        }
    }
}

/// Where blocks go: a push session per remote peer, in its own task so that pushes to different
/// peers proceed at once, and this peer's own blockstore.
pub(crate) struct Sinks<'a> {
    client: BlockClient,
    local: PeerId,
    store: Blockstore,
    announce: &'a (dyn Fn(Vec<Cid>) + Send + Sync),
    queues: HashMap<PeerId, mpsc::Sender<Block>>,
    /// Dropping the set aborts every session: an abandoned encode stops pushing.
    sessions: JoinSet<Result<u64, BlockError>>,
    batch: Vec<Block>,
    batch_bytes: usize,
    /// The previous local batch, stored while the next one fills.
    storing: Option<tokio::task::JoinHandle<Result<Vec<Cid>, String>>>,
    bytes: u64,
}

impl<'a> Sinks<'a> {
    pub(crate) fn new(
        client: BlockClient,
        local: PeerId,
        store: Blockstore,
        announce: &'a (dyn Fn(Vec<Cid>) + Send + Sync),
    ) -> Self {
        Sinks {
            client,
            local,
            store,
            announce,
            queues: HashMap::new(),
            sessions: JoinSet::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            storing: None,
            bytes: 0,
        }
    }

    async fn send(&mut self, peer: PeerId, block: Block) -> Result<(), EncodeError> {
        let len = block.data().len();
        self.bytes += len as u64;
        if peer == self.local {
            self.batch_bytes += len;
            self.batch.push(block);
            if self.batch_bytes >= LOCAL_BATCH_BYTES {
                self.store_batch().await?;
            }
            return Ok(());
        }
        let (client, sessions) = (&self.client, &mut self.sessions);
        let queue = self
            .queues
            .entry(peer)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                sessions.spawn(push_to(client.clone(), peer, rx));
                tx
            })
            .clone();
        if queue.send(block).await.is_err() {
            // Its session ended early, so it failed: report why.
            return Err(self
                .failed()
                .await
                .unwrap_or(EncodeError::Stopped("a push session ended early")));
        }
        Ok(())
    }

    /// The first failure of a session that has ended; pending forever while none has (sessions
    /// end only after their queue closes, in [`Sinks::finish`]).
    async fn failed(&mut self) -> Option<EncodeError> {
        loop {
            match self.sessions.join_next().await {
                Some(Ok(Ok(_))) => continue,
                Some(Ok(Err(e))) => return Some(e.into()),
                Some(Err(_)) => return Some(EncodeError::Stopped("a push session panicked")),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Stores the open local batch once the previous one is durable.
    async fn store_batch(&mut self) -> Result<(), EncodeError> {
        self.wait_local().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let store = self.store.clone();
        self.storing = Some(tokio::task::spawn_blocking(move || {
            super::blocks::lease(&store, &batch);
            store
                .put_many_cold(&batch)
                .map(|()| batch.iter().map(|b| *b.cid()).collect())
                .map_err(|e| e.to_string())
        }));
        Ok(())
    }

    async fn wait_local(&mut self) -> Result<(), EncodeError> {
        if let Some(task) = self.storing.take() {
            let cids = task
                .await
                .map_err(|e| EncodeError::Store(e.to_string()))?
                .map_err(EncodeError::Store)?;
            (self.announce)(cids);
        }
        Ok(())
    }

    /// Closes every queue and waits until every peer acknowledged its blocks as durable and the
    /// local ones are stored. Returns the bytes sent or stored.
    async fn finish(&mut self) -> Result<u64, EncodeError> {
        self.queues.clear();
        self.store_batch().await?;
        self.wait_local().await?;
        while let Some(done) = self.sessions.join_next().await {
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(EncodeError::Stopped("a push session panicked")),
            }
        }
        Ok(self.bytes)
    }
}

/// One peer's session: its queue in order, then the wait for its last acknowledgement.
async fn push_to(
    client: BlockClient,
    peer: PeerId,
    mut rx: mpsc::Receiver<Block>,
) -> Result<u64, BlockError> {
    let mut session = client.push(peer).await?;
    while let Some(block) = rx.recv().await {
        session.send(block).await?;
    }
    session.finish().await
}

#[cfg(test)]
mod tests;

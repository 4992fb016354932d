//! Making cells that no live store holds: one block for a read (the node's [`Producer`] hook, so
//! that Bitswap peers and `cat` get blocks of dead peers), or a whole column for a repair.
//!
//! A cell comes from its holder when that peer is up; otherwise from any `k` cells of its stripe
//! (local store first, then the other holders in parallel), decoded with the manifest's
//! [`Reconstructor`], which checks every result against its CID. Interior and manifest blocks are
//! replicated, so they come from any interior holder.
//!
//! [`Producer`]: tessera_node::Producer

// Errors name the pin and block at fault (CIDs are 96-byte values) so that a user sees which
// stripe failed and why. They are returned once per block or column, and boxing them would only
// make matching on them clumsier.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tessera_bitswap_ec::{Group, LoadError, Manifest, ReconstructError, Reconstructor, Stripe};
use tessera_blockstore::{Block, Blockstore};

use super::blocks::BlockClient;
use super::index::{EcIndex, Role, group_stripes, holder};
use crate::pin::EcLayout;

/// Whether the monitor believes a peer is up.
pub(crate) type Alive = Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;

/// Stripes rebuilt together by [`Rebuilder::rebuild_column`] unless changed at run time.
const DEFAULT_STRIPES_IN_FLIGHT: usize = 8;
/// Most cell bytes a repair batch gathers, whatever the setting above: 16 MiB cells would
/// otherwise make a batch of 8 stripes of 6+3 hold 768 MiB.
const BATCH_BYTES: u64 = 64 << 20;
/// After this long without an answer, one more holder is asked, so that one slow peer does not set
/// the pace of a read.
const HEDGE: Duration = Duration::from_secs(1);
/// A [`Gather`] that takes cells from every column.
const NO_COLUMN: usize = usize::MAX;
/// Stripes whose local presence is checked in one blocking call.
const SCAN: usize = 1024;
/// How long a holder that failed a fetch counts as down for reads. The monitor declares a dead
/// peer down only after its metrics have been missing a while; until then every read would ask it
/// again, and concurrent dials to a dead peer can hang until their timeout (libp2p-stream keeps
/// one dial request per peer and drops the others), stalling each stripe for a hedge interval.
const UNREACHABLE_FOR: Duration = Duration::from_secs(3);

/// Where other peers' blocks come from: the cluster's block protocol, or plain stores in tests.
///
/// # To ensure correctness
///
/// - Return only blocks among `cids`, verified against their CIDs; leave out those the peer lacks.
/// - Never reconstruct, and never ask Bitswap: the rebuilder runs on behalf of Bitswap requests.
pub(crate) trait RemoteBlocks: Send + Sync + 'static {
    fn fetch(&self, peer: PeerId, cids: Vec<Cid>)
    -> BoxFuture<'static, Result<Vec<Block>, String>>;
}

impl RemoteBlocks for BlockClient {
    fn fetch(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
    ) -> BoxFuture<'static, Result<Vec<Block>, String>> {
        let client = self.clone();
        Box::pin(async move {
            BlockClient::fetch(&client, peer, &cids)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Why a cell could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Absence {
    /// The monitor says its holder is down, so it was not asked.
    Down,
    /// Asking failed.
    Unreachable(String),
    /// The holder answered without it.
    NotThere,
    /// This peer holds it and its store lacks it.
    NotStoredHere,
    /// The layout names no holder.
    NoHolder,
    /// Never asked (enough cells came from elsewhere first).
    NotAsked,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Absence::Down => f.write_str("down"),
            Absence::Unreachable(e) => write!(f, "unreachable: {e}"),
            Absence::NotThere => f.write_str("does not have it"),
            Absence::NotStoredHere => f.write_str("this peer, which lacks it"),
            Absence::NoHolder => f.write_str("no holder allocated"),
            Absence::NotAsked => f.write_str("not asked"),
        }
    }
}

/// A cell of a stripe that could not be had, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingCell {
    pub(crate) column: usize,
    pub(crate) holder: Option<PeerId>,
    pub(crate) why: Absence,
}

impl fmt::Display for MissingCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.holder {
            Some(p) => write!(f, "column {} on {p} ({})", self.column, self.why),
            None => write!(f, "column {} ({})", self.column, self.why),
        }
    }
}

/// A replicated block's holder that could not give it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerAbsence {
    pub(crate) peer: PeerId,
    pub(crate) why: Absence,
}

impl fmt::Display for PeerAbsence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.peer, self.why)
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a block or a column could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RebuildError {
    #[error(
        "block {cid} belongs to no erasure-coded pin this peer knows; it may have been unpinned"
    )]
    UnknownBlock { cid: Cid },
    #[error(
        "{root} is not an erasure-coded pin this peer knows; check the CID, or wait until the pinset reaches this peer"
    )]
    UnknownPin { root: Cid },
    #[error("pin {root} has no column {column} in group {group}")]
    NoSuchColumn {
        root: Cid,
        group: usize,
        column: usize,
    },
    #[error(
        "cannot rebuild column {column} of stripe {stripe} of pin {root}: {have} of the {need} cells needed could be had; missing {}. Bring one of those peers back; until then this stripe cannot be read",
        list(.missing)
    )]
    TooFewCells {
        root: Cid,
        stripe: u64,
        column: usize,
        have: usize,
        need: usize,
        missing: Vec<MissingCell>,
    },
    #[error(
        "no holder of pin {root} gave block {cid}: {}; bring one of them back",
        list(.holders)
    )]
    Unavailable {
        root: Cid,
        cid: Cid,
        holders: Vec<PeerAbsence>,
    },
    #[error("could not load the EC manifest: {0}")]
    Manifest(#[from] LoadError),
    #[error("pin {root}: {source}")]
    Reconstruct { root: Cid, source: ReconstructError },
    #[error("pin {root}: its manifest names a codec this build cannot use: {reason}")]
    Codec { root: Cid, reason: String },
    #[error("local blockstore failed: {reason}")]
    Store { reason: String },
    #[error("a rebuild task stopped: {reason}")]
    Task { reason: String },
    /// The error of a stripe read that several readers waited for.
    #[error(transparent)]
    Shared(Arc<RebuildError>),
}

/// Produces blocks of erasure-coded pins and rebuilds columns. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Rebuilder {
    inner: Arc<Inner>,
}

struct Inner {
    store: Blockstore,
    remote: Arc<dyn RemoteBlocks>,
    index: Arc<EcIndex>,
    local: PeerId,
    alive: Alive,
    stripes_in_flight: AtomicUsize,
    hedge: Duration,
    /// Stripes being read for reads, by pin and stripe index: one gather and one decode serve
    /// every reader of the stripe's cells at that moment (see [`Rebuilder::read_cell`]).
    reads: std::sync::Mutex<HashMap<(Cid, u64), StripeRead>>,
    /// Stripe reads started since start: reads that had to reconstruct.
    stripe_reads: std::sync::atomic::AtomicU64,
    /// Holders whose last fetch failed, and when (see [`UNREACHABLE_FOR`]).
    unreachable: std::sync::Mutex<HashMap<PeerId, (std::time::Instant, String)>>,
}

/// A stripe read that many readers may await: every data cell of the stripe by CID.
type StripeRead = Shared<BoxFuture<'static, Result<Arc<HashMap<Cid, Bytes>>, Arc<RebuildError>>>>;

impl Rebuilder {
    pub(crate) fn new(
        node: tessera_node::Node,
        blocks: BlockClient,
        index: Arc<EcIndex>,
        local: PeerId,
        alive: Alive,
    ) -> Self {
        Self::with_remote(node.store().clone(), Arc::new(blocks), index, local, alive)
    }

    /// A rebuilder over any source of other peers' blocks.
    pub(crate) fn with_remote(
        store: Blockstore,
        remote: Arc<dyn RemoteBlocks>,
        index: Arc<EcIndex>,
        local: PeerId,
        alive: Alive,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                remote,
                index,
                local,
                alive,
                stripes_in_flight: AtomicUsize::new(DEFAULT_STRIPES_IN_FLIGHT),
                hedge: HEDGE,
                reads: Default::default(),
                stripe_reads: Default::default(),
                unreachable: Default::default(),
            }),
        }
    }

    /// Shortens the wait before a slow holder gets company, so that a test need not wait a second.
    #[cfg(test)]
    pub(crate) fn with_hedge(mut self, hedge: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.hedge = hedge;
        }
        self
    }

    pub(crate) fn index(&self) -> &Arc<EcIndex> {
        &self.inner.index
    }

    pub(crate) fn local(&self) -> PeerId {
        self.inner.local
    }

    /// The repair throttle: stripes gathered and decoded together. Takes effect at the next batch,
    /// so an operator can slow a repair that starves reads without restarting it.
    #[cfg_attr(not(test), allow(dead_code, reason = "no config key sets it yet"))]
    pub(crate) fn set_stripes_in_flight(&self, stripes: usize) {
        self.inner
            .stripes_in_flight
            .store(stripes.max(1), Ordering::Relaxed);
    }

    pub(crate) fn stripes_in_flight(&self) -> usize {
        self.inner.stripes_in_flight.load(Ordering::Relaxed).max(1)
    }

    /// Whether reads should ask `peer`.
    fn up(&self, peer: &PeerId) -> bool {
        self.absent(peer).is_none()
    }

    /// Why reads should not ask `peer`, if they should not: the monitor counts it down, or a fetch
    /// from it failed in the last [`UNREACHABLE_FOR`] (with that failure's reason).
    fn absent(&self, peer: &PeerId) -> Option<Absence> {
        if !(self.inner.alive)(peer) {
            return Some(Absence::Down);
        }
        let mut failed = self
            .inner
            .unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match failed.get(peer) {
            Some((at, why)) if at.elapsed() < UNREACHABLE_FOR => {
                Some(Absence::Unreachable(why.clone()))
            }
            Some(_) => {
                failed.remove(peer);
                None
            }
            None => None,
        }
    }

    /// Asks `peer` for `cids`, and records how it went for [`Rebuilder::absent`].
    fn fetch_from(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
    ) -> BoxFuture<'static, Result<Vec<Block>, String>> {
        let fetch = self.inner.remote.fetch(peer, cids);
        let this = self.clone();
        Box::pin(async move {
            let got = fetch.await;
            let mut failed = this
                .inner
                .unreachable
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match &got {
                Ok(_) => {
                    failed.remove(&peer);
                }
                Err(e) => {
                    failed.insert(peer, (std::time::Instant::now(), e.clone()));
                }
            }
            drop(failed);
            got
        })
    }

    /// Produces one block of an EC pin, checked against its CID. A cell comes from its holder; if
    /// the holder is down, fails or lacks it, from its stripe, and if the holder is merely slow,
    /// from whichever answers first. Interior and manifest blocks come from any interior holder.
    pub(crate) async fn produce(&self, cid: Cid) -> Result<Bytes, RebuildError> {
        let i = &self.inner;
        let loc = i
            .index
            .locate(&cid)
            .ok_or(RebuildError::UnknownBlock { cid })?;
        let root = loc.root;
        let (layout, manifest) = i
            .index
            .get(&root)
            .ok_or(RebuildError::UnknownPin { root })?;
        let Role::Cell {
            group,
            stripe,
            column,
        } = loc.role
        else {
            return self.fetch_replicated(root, &layout, cid).await;
        };
        let stripe = manifest
            .stripes
            .get(stripe)
            .cloned()
            .ok_or(RebuildError::UnknownBlock { cid })?;
        // A data cell of a stripe that has a dead data column: the read will rebuild that column
        // from `k` cells, these among them, so this cell joins that one shared stripe read rather
        // than be fetched twice (a third more traffic with 3 of 6 data columns dead).
        let k = manifest.header.layout.data_shards;
        let dead = |c: usize| {
            stripe.cid(k, c).is_some()
                && holder(&layout, group, c).is_none_or(|h| h != i.local && !self.up(&h))
        };
        if column < k && (0..k).any(dead) {
            return self
                .read_cell(root, layout.clone(), manifest, group, stripe, column, cid)
                .await;
        }
        // Lazy: `read_cell` starts a gather as soon as it is called, and a healthy read must not
        // start one unless the holder fails or is slow.
        let rebuild = {
            let layout = layout.clone();
            async move {
                self.read_cell(root, layout, manifest, group, stripe, column, cid)
                    .await
            }
        };
        match holder(&layout, group, column) {
            Some(h) if h != i.local && self.up(&h) => {
                hedged(self.fetch_cell(h, cid), rebuild, i.hedge).await
            }
            _ => rebuild.await,
        }
    }

    /// The cell from its holder, or `None` (logged) if the holder fails or lacks it.
    async fn fetch_cell(&self, holder: PeerId, cid: Cid) -> Option<Bytes> {
        match self.fetch_from(holder, vec![cid]).await {
            Ok(got) => {
                let found = got.into_iter().find(|b| *b.cid() == cid);
                if found.is_none() {
                    tracing::debug!(%cid, peer = %holder, "holder lacks its cell; reconstructing");
                }
                found.map(|b| b.into_parts().1)
            }
            Err(e) => {
                tracing::debug!(%cid, peer = %holder, error = %e, "holder unreachable; reconstructing");
                None
            }
        }
    }

    async fn fetch_replicated(
        &self,
        root: Cid,
        layout: &EcLayout,
        cid: Cid,
    ) -> Result<Bytes, RebuildError> {
        let i = &self.inner;
        let mut holders = Vec::new();
        for &peer in layout.interior.iter().filter(|p| **p != i.local) {
            if let Some(why) = self.absent(&peer) {
                holders.push(PeerAbsence { peer, why });
                continue;
            }
            let why = match self.fetch_from(peer, vec![cid]).await {
                Ok(got) => match got.into_iter().find(|b| *b.cid() == cid) {
                    Some(b) => return Ok(b.into_parts().1),
                    None => Absence::NotThere,
                },
                Err(e) => Absence::Unreachable(e),
            };
            holders.push(PeerAbsence { peer, why });
        }
        Err(RebuildError::Unavailable { root, cid, holders })
    }

    /// Rebuilds every cell of `column` in group `group` of pin `root` that the local store lacks,
    /// a batch of stripes at a time, and stores each batch. Returns how many cells were stored.
    /// A batch that fails still stores its good cells before the error returns, so a retry resumes
    /// where this one stopped.
    pub(crate) async fn rebuild_column(
        &self,
        root: &Cid,
        group: usize,
        column: usize,
    ) -> Result<u64, RebuildError> {
        let root = *root;
        let (layout, manifest) = self
            .inner
            .index
            .get(&root)
            .ok_or(RebuildError::UnknownPin { root })?;
        let no_such = RebuildError::NoSuchColumn {
            root,
            group,
            column,
        };
        if column >= manifest.header.layout.columns() {
            return Err(no_such);
        }
        let g = *manifest.groups.get(group).ok_or(no_such)?;
        let rec = reconstructor(&root, &manifest)?;
        let k = manifest.header.layout.data_shards;
        let count = group_stripes(&manifest, g.first_stripe, g.stripes).len();
        let mut stored = 0u64;
        // A cell that occurs in many stripes (the zero-filled leaves of a disk image make whole
        // stripes identical) is rebuilt once.
        let mut seen: HashSet<Cid> = HashSet::new();
        for start in (0..count).step_by(SCAN) {
            let end = (start + SCAN).min(count);
            let mut lacking = self
                .lacking(manifest.clone(), g, start..end, column)
                .await?;
            lacking.retain(|s| s.cid(k, column).is_some_and(|c| seen.insert(*c)));
            let mut rest = lacking.as_slice();
            while !rest.is_empty() {
                let take = self.batch_len(rest, k);
                let (batch, tail) = rest.split_at(take);
                rest = tail;
                let (blocks, error) = self
                    .rebuild_stripes(
                        root,
                        &layout,
                        &manifest,
                        group,
                        rec.clone(),
                        batch.to_vec(),
                        column,
                    )
                    .await;
                stored += blocks.len() as u64;
                if !blocks.is_empty() {
                    self.put(blocks).await?;
                }
                if let Some(e) = error {
                    return Err(e);
                }
                // Let reads that wait behind this repair run between batches.
                tokio::task::yield_now().await;
            }
        }
        tracing::info!(%root, group, column, stored, "column rebuilt");
        Ok(stored)
    }

    /// The stripes among `range` of a group whose cell in `column` the local store lacks.
    async fn lacking(
        &self,
        manifest: Arc<Manifest>,
        group: Group,
        range: std::ops::Range<usize>,
        column: usize,
    ) -> Result<Vec<Stripe>, RebuildError> {
        let store = self.inner.store.clone();
        blocking(move || {
            let k = manifest.header.layout.data_shards;
            let all = group_stripes(&manifest, group.first_stripe, group.stripes);
            let mut out = Vec::new();
            for s in all.get(range).unwrap_or(&[]) {
                let Some(cid) = s.cid(k, column) else {
                    continue;
                };
                let has = store.has(cid).map_err(|e| RebuildError::Store {
                    reason: e.to_string(),
                })?;
                if !has {
                    out.push(s.clone());
                }
            }
            Ok(out)
        })
        .await?
    }

    /// How many of `stripes` make the next batch: the throttle's count, fewer if their cells
    /// would pass the byte budget, at least one.
    fn batch_len(&self, stripes: &[Stripe], k: usize) -> usize {
        let most = self.stripes_in_flight();
        let mut bytes = 0u64;
        let mut n = 0;
        for s in stripes.iter().take(most) {
            bytes = bytes.saturating_add(s.cell_len().saturating_mul(k as u64));
            if n > 0 && bytes > BATCH_BYTES {
                break;
            }
            n += 1;
        }
        n.max(1)
    }

    async fn put(&self, blocks: Vec<Block>) -> Result<(), RebuildError> {
        let store = self.inner.store.clone();
        blocking(move || {
            // Kept from GC until the reconcile that asked for them pins them.
            super::blocks::lease(&store, &blocks);
            store
                .put_many_cold(&blocks)
                .map_err(|e| RebuildError::Store {
                    reason: e.to_string(),
                })
        })
        .await?
    }

    /// Gathers cells for `column` of each stripe (all of group `group`) and decodes those that got
    /// enough. Returns the rebuilt blocks, and the first failure if some stripe could not be made.
    #[allow(clippy::too_many_arguments)]
    async fn rebuild_stripes(
        &self,
        root: Cid,
        layout: &EcLayout,
        manifest: &Manifest,
        group: usize,
        rec: Arc<Reconstructor>,
        stripes: Vec<Stripe>,
        column: usize,
    ) -> (Vec<Block>, Option<RebuildError>) {
        let shape = manifest.header.layout;
        let gather = Gather::new(shape.data_shards, shape.columns(), column, stripes);
        let store = self.inner.store.clone();
        let mut gather = match blocking(move || {
            let mut g = gather;
            g.take_local(&store);
            g
        })
        .await
        {
            Ok(g) => g,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let absences = self.gather_remote(layout, group, &mut gather).await;
        let mut error = None;
        let mut batch = Vec::new();
        for (stripe, cells) in gather.stripes.into_iter().zip(gather.cells) {
            let have = cells.iter().flatten().count();
            let need = stripe.data.len();
            if have >= need {
                batch.push((stripe, cells));
                continue;
            }
            if error.is_none() {
                error = Some(too_few(
                    root,
                    layout,
                    group,
                    (shape.data_shards, shape.columns()),
                    &stripe,
                    column,
                    &cells,
                    &absences,
                ));
            }
        }
        if batch.is_empty() {
            return (Vec::new(), error);
        }
        let results = match blocking(move || decode(&rec, column, &batch)).await {
            Ok(r) => r,
            Err(e) => return (Vec::new(), error.or(Some(e))),
        };
        let mut blocks = Vec::new();
        for r in results {
            match r {
                Ok(Some(b)) => blocks.push(b),
                Ok(None) => {}
                Err(source) => {
                    error.get_or_insert(RebuildError::Reconstruct { root, source });
                }
            }
        }
        (blocks, error)
    }

    /// Cell `cid` (column `column` of `stripe`) rebuilt from its stripe, for a read.
    ///
    /// Why a shared stripe read: a reader asks for the cells of a file in order, many at once, so
    /// the cells of a stripe whose holders died are asked for together. Rebuilt one by one, each
    /// would gather `k` cells: with 3 of 6 data columns dead, 3.5 times the healthy traffic.
    /// Instead the first asker starts one task that gathers `k` cells and decodes every missing
    /// data cell; everyone asking for a cell of that stripe meanwhile waits for it. The task runs
    /// to its end even if its askers go away, and then leaves the table, so nothing stays behind.
    #[allow(clippy::too_many_arguments)]
    fn read_cell(
        &self,
        root: Cid,
        layout: EcLayout,
        manifest: Arc<Manifest>,
        group: usize,
        stripe: Stripe,
        column: usize,
        cid: Cid,
    ) -> impl Future<Output = Result<Bytes, RebuildError>> + Send + 'static {
        let key = (root, stripe.index);
        let (layout2, manifest2, stripe2) = (layout.clone(), manifest.clone(), stripe.clone());
        let flight = {
            let mut reads = self.inner.reads.lock().unwrap_or_else(|e| e.into_inner());
            match reads.get(&key) {
                Some(f) => f.clone(),
                None => {
                    self.inner.stripe_reads.fetch_add(1, Ordering::Relaxed);
                    let this = self.clone();
                    let task = tokio::spawn(async move {
                        let got = this
                            .read_stripe(root, &layout, &manifest, group, stripe, column)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new);
                        this.inner
                            .reads
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                        got
                    });
                    let f = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(RebuildError::Task {
                                reason: e.to_string(),
                            }))
                        })
                    }
                    .boxed()
                    .shared();
                    reads.insert(key, f.clone());
                    f
                }
            }
        };
        let this = self.clone();
        async move {
            match flight.await {
                Ok(cells) => match cells.get(&cid) {
                    Some(b) => Ok(b.clone()),
                    // A parity cell, and the shared read was for data cells: read it alone.
                    None => this
                        .read_stripe(root, &layout2, &manifest2, group, stripe2, column)
                        .await?
                        .remove(&cid)
                        .ok_or(RebuildError::UnknownBlock { cid }),
                },
                Err(e) => Err(Arc::try_unwrap(e).unwrap_or_else(RebuildError::Shared)),
            }
        }
    }

    /// Every data cell of `stripe`: gathered (local store, then the group's other holders) until
    /// `k` cells are in, and the data cells still missing decoded from them. `column` is the
    /// cell the first reader wants; its own holder is not asked (it failed or is down).
    async fn read_stripe(
        &self,
        root: Cid,
        layout: &EcLayout,
        manifest: &Manifest,
        group: usize,
        stripe: Stripe,
        column: usize,
    ) -> Result<HashMap<Cid, Bytes>, RebuildError> {
        let started = std::time::Instant::now();
        let index = stripe.index;
        let rec = reconstructor(&root, manifest)?;
        let shape = manifest.header.layout;
        let k = shape.data_shards;
        // Every column may help, the wanted one included: its holder may have failed a moment
        // ago (a connection closing under the stream) and answer now.
        let gather = Gather::new(k, shape.columns(), NO_COLUMN, vec![stripe]);
        let store = self.inner.store.clone();
        let mut gather = blocking(move || {
            let mut g = gather;
            g.take_local(&store);
            g
        })
        .await?;
        let local_done = started.elapsed();
        let absences = self.gather_remote(layout, group, &mut gather).await;
        let gathered = started.elapsed();
        let (Some(stripe), Some(cells)) = (gather.stripes.pop(), gather.cells.pop()) else {
            return Err(RebuildError::Task {
                reason: "the gather lost its stripe".into(),
            });
        };
        if cells.iter().flatten().count() < stripe.data.len() {
            return Err(too_few(
                root,
                layout,
                group,
                (k, shape.columns()),
                &stripe,
                column,
                &cells,
                &absences,
            ));
        }
        // The data cells not gathered, and the asked-for cell even if it is parity.
        let wanted: Vec<usize> = (0..shape.columns())
            .filter(|&c| (c < k || c == column) && cells[c].is_none() && stripe.cid(k, c).is_some())
            .collect();
        let mut out: HashMap<Cid, Bytes> = (0..k)
            .filter_map(|c| Some((*stripe.cid(k, c)?, cells[c].clone()?)))
            .collect();
        if !wanted.is_empty() {
            let rebuilt = blocking(move || rec.rebuild(&stripe, &cells, &wanted))
                .await?
                .map_err(|source| RebuildError::Reconstruct { root, source })?;
            out.extend(rebuilt.into_iter().map(|b| {
                let (cid, data) = b.into_parts();
                (cid, data)
            }));
        }
        tracing::debug!(%root, stripe = index, ?local_done, ?gathered, total = ?started.elapsed(), "stripe read");
        Ok(out)
    }

    /// Asks the other holders of the group for the cells the stripes still lack: as many holders
    /// at once as cells are missing, another when one fails or is slow, until every stripe has
    /// enough or no holder is left. Returns, per column, why its cells may be missing.
    async fn gather_remote(&self, layout: &EcLayout, group: usize, g: &mut Gather) -> Vec<Absence> {
        let i = &self.inner;
        let mut absences = vec![Absence::NotAsked; g.width];
        let mut candidates = Vec::new();
        for (c, why) in absences.iter_mut().enumerate() {
            if c == g.column {
                continue;
            }
            match holder(layout, group, c) {
                None => *why = Absence::NoHolder,
                Some(h) if h == i.local => *why = Absence::NotStoredHere,
                Some(h) => match self.absent(&h) {
                    Some(absence) => *why = absence,
                    None => candidates.push((c, h)),
                },
            }
        }
        type Answer = (usize, Result<Vec<Block>, String>);
        let mut pending: FuturesUnordered<BoxFuture<'static, Answer>> = FuturesUnordered::new();
        let mut in_flight: Vec<usize> = Vec::new();
        let mut hedge = false;
        loop {
            if g.done() {
                break;
            }
            while let Some(at) = g.next_candidate(&candidates, &in_flight, hedge) {
                hedge = false;
                let (c, peer) = candidates.remove(at);
                let cids = g.wants(c);
                let fetch = self.fetch_from(peer, cids);
                pending.push(Box::pin(async move { (c, fetch.await) }));
                in_flight.push(c);
            }
            hedge = false;
            if pending.is_empty() {
                break;
            }
            tokio::select! {
                Some((c, answer)) = pending.next() => {
                    in_flight.retain(|x| *x != c);
                    absences[c] = match answer {
                        Ok(blocks) => {
                            g.fill(c, blocks);
                            Absence::NotThere
                        }
                        Err(e) => Absence::Unreachable(e),
                    };
                }
                () = tokio::time::sleep(i.hedge) => hedge = true,
            }
        }
        absences
    }
}

/// The error of a stripe with fewer than the cells it needs: which columns are missing, held by
/// whom, and why.
#[allow(clippy::too_many_arguments)]
fn too_few(
    root: Cid,
    layout: &EcLayout,
    group: usize,
    (k, width): (usize, usize),
    stripe: &Stripe,
    column: usize,
    cells: &[Option<Bytes>],
    absences: &[Absence],
) -> RebuildError {
    let missing = (0..width)
        .filter(|&c| c != column && cells[c].is_none() && stripe.cid(k, c).is_some())
        .map(|c| MissingCell {
            column: c,
            holder: holder(layout, group, c),
            why: absences[c].clone(),
        })
        .collect();
    RebuildError::TooFewCells {
        root,
        stripe: stripe.index,
        column,
        have: cells.iter().flatten().count(),
        need: stripe.data.len(),
        missing,
    }
}

/// The holder's answer if it comes within `wait`; after that, whichever of the holder and the
/// reconstruction gives the block first. A holder the monitor still counts as up may hang until
/// the block protocol's timeout (minutes); a read should not wait for it that long.
async fn hedged(
    direct: impl Future<Output = Option<Bytes>>,
    rebuild: impl Future<Output = Result<Bytes, RebuildError>>,
    wait: Duration,
) -> Result<Bytes, RebuildError> {
    tokio::pin!(direct, rebuild);
    tokio::select! {
        got = &mut direct => return match got {
            Some(b) => Ok(b),
            None => rebuild.await,
        },
        () = tokio::time::sleep(wait) => {}
    }
    tokio::select! {
        got = &mut direct => match got {
            Some(b) => Ok(b),
            None => rebuild.await,
        },
        made = &mut rebuild => match made {
            Ok(b) => Ok(b),
            Err(e) => direct.await.ok_or(e),
        },
    }
}

fn reconstructor(root: &Cid, manifest: &Manifest) -> Result<Arc<Reconstructor>, RebuildError> {
    Reconstructor::for_manifest(&manifest.header)
        .map(Arc::new)
        .map_err(|e| RebuildError::Codec {
            root: *root,
            reason: e.to_string(),
        })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RebuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RebuildError::Task {
            reason: e.to_string(),
        })
}

/// Rebuilds `column` of each stripe from its gathered cells (`k + m` entries, `None` where
/// missing), each result checked against its CID; `Ok(None)` for a stripe without a cell there.
/// One stripe (a read, where latency counts) is decoded across all cores; a batch (a repair) one
/// stripe per core, sharing the inverted matrix of each erasure pattern.
pub(crate) fn decode(
    rec: &Reconstructor,
    column: usize,
    batch: &[(Stripe, Vec<Option<Bytes>>)],
) -> Vec<Result<Option<Block>, ReconstructError>> {
    if let [(stripe, cells)] = batch {
        let one = match rec.rebuild(stripe, cells, &[column]) {
            Ok(mut blocks) => Ok(blocks.pop()),
            Err(ReconstructError::NoSuchCell { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        return vec![one];
    }
    rec.rebuild_column(column, batch)
}

/// The cells gathered so far for rebuilding `column` of some stripes of one group.
struct Gather {
    k: usize,
    width: usize,
    column: usize,
    stripes: Vec<Stripe>,
    /// Per stripe, one entry per column.
    cells: Vec<Vec<Option<Bytes>>>,
}

impl Gather {
    fn new(k: usize, width: usize, column: usize, stripes: Vec<Stripe>) -> Self {
        let cells = vec![vec![None; width]; stripes.len()];
        Self {
            k,
            width,
            column,
            stripes,
            cells,
        }
    }

    /// Whether cell `c` of stripe `s` exists and may serve as an input.
    fn usable(&self, s: usize, c: usize) -> bool {
        c != self.column && self.stripes[s].cid(self.k, c).is_some()
    }

    /// Cells stripe `s` still lacks: a short stripe needs only as many as it has data cells,
    /// since the data cells it lacks are known zeros.
    fn deficit(&self, s: usize) -> usize {
        let have = self.cells[s].iter().flatten().count();
        self.stripes[s].data.len().saturating_sub(have)
    }

    fn done(&self) -> bool {
        (0..self.stripes.len()).all(|s| self.deficit(s) == 0)
    }

    /// Reads cells from the local store until each stripe has enough. A corrupt local cell is
    /// moved aside by the store, or (without verify-on-read) caught by the decoder's CID check.
    fn take_local(&mut self, store: &Blockstore) {
        for s in 0..self.stripes.len() {
            for c in 0..self.width {
                if self.deficit(s) == 0 {
                    break;
                }
                if !self.usable(s, c) {
                    continue;
                }
                if let Some(cid) = self.stripes[s].cid(self.k, c)
                    && let Ok(Some(bytes)) = store.get(cid)
                {
                    self.cells[s][c] = Some(bytes);
                }
            }
        }
    }

    /// The candidate to ask next: one whose column can help a stripe that lacks more cells than
    /// the requests in flight can bring, or with `hedge` any that can help a stripe still short.
    fn next_candidate(
        &self,
        candidates: &[(usize, PeerId)],
        in_flight: &[usize],
        hedge: bool,
    ) -> Option<usize> {
        let short: Vec<usize> = (0..self.stripes.len())
            .filter(|&s| {
                let coming = in_flight.iter().filter(|&&c| self.usable(s, c)).count();
                let deficit = self.deficit(s);
                deficit > 0 && (hedge || deficit > coming)
            })
            .collect();
        candidates.iter().position(|&(c, _)| {
            short
                .iter()
                .any(|&s| self.usable(s, c) && self.cells[s][c].is_none())
        })
    }

    /// The CIDs column `c` can still give to stripes that are short.
    fn wants(&self, c: usize) -> Vec<Cid> {
        (0..self.stripes.len())
            .filter(|&s| self.deficit(s) > 0 && self.usable(s, c) && self.cells[s][c].is_none())
            .filter_map(|s| self.stripes[s].cid(self.k, c).copied())
            .collect()
    }

    fn fill(&mut self, c: usize, blocks: Vec<Block>) {
        for b in blocks {
            for s in 0..self.stripes.len() {
                if self.stripes[s].cid(self.k, c) == Some(b.cid()) && c != self.column {
                    self.cells[s][c] = Some(b.data().clone());
                }
            }
        }
    }
}

impl tessera_node::Producer for Rebuilder {
    fn can_produce(&self, cid: &Cid) -> bool {
        self.inner.index.locate(cid).is_some()
    }

    fn produce(&self, cid: Cid) -> BoxFuture<'static, Result<Bytes, String>> {
        let this = self.clone();
        Box::pin(async move { this.produce(cid).await.map_err(|e| e.to_string()) })
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The pin tracker: makes this peer's blockstore hold what the pinset allocates to it, and nothing
//! the pinset took away (IPFS Cluster's stateless pin tracker, with statuses kept in memory).
//!
//! Every change the consensus applies, and a full pass at start or when the change feed lagged,
//! queues the CIDs involved. Workers (`Cluster.PinConcurrency` of them) compare the pinset with the
//! blockstore's pins and fetch, pin or unpin. A failed pin is retried with exponential backoff up to
//! `Cluster.PinRetries` attempts, then stays in `pin_error` until `recover`.
//!
//! Decision: the blockstore pins of a CID that is (or was) in the pinset follow the pinset. A peer
//! the pinset no longer lists (the pin was removed, or re-allocated while this peer was down)
//! unpins it locally, so that `repo gc` can free the space; pins of CIDs the cluster never knew
//! (`add`, `dag import`) are left alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use libp2p::PeerId;
use tessera_blockstore::PinMode as StoreMode;
use tessera_node::Node;
use tokio::sync::Notify;

use crate::consensus::{Applied, Consensus};
use crate::ec::holder::{EcHolder, Share};
use crate::metric::now_secs;
use crate::pin::{PinMode, PinsetOp};
use crate::status::{PeerPinInfo, PinStatus};

/// Status of one CID on this peer.
#[derive(Debug, Clone)]
struct Entry {
    status: PinStatus,
    error: String,
    attempts: u32,
    timestamp: u64,
}

pub(crate) struct Tracker {
    node: Node,
    consensus: Consensus,
    local: PeerId,
    peer_name: String,
    retries: u32,
    timeout: Duration,
    entries: Mutex<HashMap<Cid, Entry>>,
    /// CIDs waiting for a worker, each once: the queue is bounded by the pinset's size.
    queued: Mutex<(HashSet<Cid>, std::collections::VecDeque<Cid>)>,
    /// Wakes a worker when a CID is queued.
    work: Notify,
    /// Woken whenever a status changes (waiters re-check).
    changed: Notify,
    /// Shares of erasure-coded pins.
    ec: Arc<EcHolder>,
    /// A collection of the adding peer's import is scheduled and not started yet.
    gc_scheduled: std::sync::atomic::AtomicBool,
    /// Held by the collection that runs.
    gc_turn: tokio::sync::Mutex<()>,
}

impl Tracker {
    /// Starts the workers and the feed listener; they stop when `shutdown` turns true.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        node: Node,
        consensus: Consensus,
        ec: Arc<EcHolder>,
        peer_name: String,
        concurrency: usize,
        retries: u32,
        timeout: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Tracker> {
        let tracker = Arc::new(Tracker {
            local: node.peer_id(),
            node,
            consensus,
            peer_name,
            retries: retries.max(1),
            timeout,
            entries: Mutex::new(HashMap::new()),
            queued: Mutex::new(Default::default()),
            work: Notify::new(),
            changed: Notify::new(),
            ec,
            gc_scheduled: Default::default(),
            gc_turn: Default::default(),
        });
        for _ in 0..concurrency.max(1) {
            let t = tracker.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let next = {
                        let mut q = t.lock_queued();
                        let next = q.1.pop_front();
                        if let Some(c) = &next {
                            q.0.remove(c);
                        }
                        next
                    };
                    match next {
                        Some(cid) => t.reconcile(cid).await,
                        None => tokio::select! {
                            _ = t.work.notified() => {}
                            _ = stop.wait_for(|v| *v) => return,
                        },
                    }
                }
            });
        }
        let t = tracker.clone();
        let mut feed = t.consensus.subscribe();
        tokio::spawn(async move {
            t.enqueue_all();
            loop {
                let applied = tokio::select! {
                    a = feed.recv() => a,
                    _ = shutdown.wait_for(|v| *v) => return,
                };
                match applied {
                    Ok(Applied::Op { op, .. }) => t.enqueue_op(&op),
                    Ok(Applied::Snapshot { .. }) => t.enqueue_all(),
                    Ok(Applied::Membership { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => t.enqueue_all(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        tracker
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<Cid, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queued(
        &self,
    ) -> std::sync::MutexGuard<'_, (HashSet<Cid>, std::collections::VecDeque<Cid>)> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, cid: Cid) {
        let mut q = self.lock_queued();
        if q.0.insert(cid) {
            q.1.push_back(cid);
            drop(q);
            self.work.notify_one();
        }
    }

    fn enqueue_op(&self, op: &PinsetOp) {
        match op {
            PinsetOp::Pin(p) => {
                let queued = p.is_allocated_to(&self.local);
                self.set_if_new(
                    p.cid,
                    if queued {
                        PinStatus::PinQueued
                    } else {
                        PinStatus::Remote
                    },
                );
                self.enqueue(p.cid);
            }
            PinsetOp::Unpin(c) => self.enqueue(*c),
            PinsetOp::Batch(ops) => ops.iter().for_each(|o| self.enqueue_op(o)),
        }
    }

    /// Queues every CID of the pinset and every CID with a status here.
    fn enqueue_all(&self) {
        let mut after: Option<Cid> = None;
        loop {
            let page = match self.consensus.list(after.as_ref(), 1000) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the pinset to reconcile");
                    break;
                }
            };
            for p in &page {
                self.set_if_new(
                    p.cid,
                    if p.is_allocated_to(&self.local) {
                        PinStatus::PinQueued
                    } else {
                        PinStatus::Remote
                    },
                );
                self.enqueue(p.cid);
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.cid),
                _ => break,
            }
        }
        let known: Vec<Cid> = self.lock_entries().keys().copied().collect();
        for c in known {
            self.enqueue(c);
        }
    }

    fn set_if_new(&self, cid: Cid, status: PinStatus) {
        let mut e = self.lock_entries();
        e.entry(cid).or_insert_with(|| Entry {
            status,
            error: String::new(),
            attempts: 0,
            timestamp: now_secs(),
        });
    }

    fn set(&self, cid: Cid, status: PinStatus, error: String) {
        {
            let mut entries = self.lock_entries();
            let e = entries.entry(cid).or_insert_with(|| Entry {
                status,
                error: String::new(),
                attempts: 0,
                timestamp: 0,
            });
            e.status = status;
            e.error = error;
            e.timestamp = now_secs();
            if status == PinStatus::Pinned {
                e.attempts = 0;
            }
        }
        self.changed.notify_waiters();
    }

    fn forget(&self, cid: &Cid) {
        self.lock_entries().remove(cid);
        self.changed.notify_waiters();
    }

    async fn reconcile(self: &Arc<Self>, cid: Cid) {
        let pin = match self.consensus.get(&cid) {
            Ok(p) => p,
            Err(e) => {
                self.set(
                    cid,
                    PinStatus::ClusterError,
                    format!("cannot read the pinset: {e}"),
                );
                return;
            }
        };
        if let Some(p) = pin.as_ref().filter(|p| p.ec.is_some()) {
            self.reconcile_ec(p).await;
            return;
        }
        if pin.is_none() && self.ec.index.contains_pin(&cid) {
            self.set(cid, PinStatus::Unpinning, String::new());
            if let Err(e) = self.ec.release(&cid, None).await {
                self.set(cid, PinStatus::UnpinError, e);
                return;
            }
            self.forget(&cid);
            return;
        }
        let local = match self.node.pin_mode(cid).await {
            Ok(m) => m,
            Err(e) => {
                self.set(
                    cid,
                    PinStatus::PinError,
                    format!("cannot read the blockstore: {e}"),
                );
                return;
            }
        };
        match pin {
            Some(p) if p.is_allocated_to(&self.local) => {
                let wanted = match p.mode {
                    PinMode::Recursive => StoreMode::Recursive,
                    PinMode::Direct => StoreMode::Direct,
                };
                if local == Some(wanted) || local == Some(StoreMode::Recursive) {
                    self.set(cid, PinStatus::Pinned, String::new());
                    return;
                }
                if !self.begin_attempt(cid) {
                    // Stays in error until `recover`.
                    return;
                }
                self.set(cid, PinStatus::Pinning, String::new());
                let recursive = p.mode == PinMode::Recursive;
                let result =
                    tokio::time::timeout(self.timeout, self.node.pin_local(cid, recursive)).await;
                let error = match result {
                    Ok(Ok(_)) => {
                        self.set(cid, PinStatus::Pinned, String::new());
                        return;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => format!(
                        "pinning took longer than {:?} (Cluster.PinTimeout)",
                        self.timeout
                    ),
                };
                self.failed(cid, error);
            }
            Some(_) => {
                if local.is_some() {
                    self.set(cid, PinStatus::Unpinning, String::new());
                    if let Err(e) = self.node.unpin_local(cid).await {
                        self.set(cid, PinStatus::UnpinError, e);
                        return;
                    }
                }
                self.set(cid, PinStatus::Remote, String::new());
            }
            None => {
                if local.is_some() && self.lock_entries().contains_key(&cid) {
                    self.set(cid, PinStatus::Unpinning, String::new());
                    if let Err(e) = self.node.unpin_local(cid).await {
                        self.set(cid, PinStatus::UnpinError, e);
                        return;
                    }
                }
                self.forget(&cid);
            }
        }
    }

    /// An erasure-coded pin: hold this peer's share, and drop a whole-DAG pin of its root (the
    /// adding peer's import, or a pin that `pin add --ec` turned into an EC pin), then collect
    /// garbage so that the blocks that went to other peers leave this disk.
    async fn reconcile_ec(self: &Arc<Self>, p: &crate::pin::Pin) {
        let cid = p.cid;
        if !self.begin_attempt(cid) {
            return;
        }
        self.set(
            cid,
            if p.is_allocated_to(&self.local) {
                PinStatus::Pinning
            } else {
                PinStatus::Remote
            },
            String::new(),
        );
        match self.ec.reconcile(p).await {
            Ok(share) => {
                let status = match share {
                    Share::None { replaced_root_pin } => {
                        if replaced_root_pin {
                            self.collect_import();
                        }
                        PinStatus::Remote
                    }
                    Share::Complete {
                        replaced_root_pin, ..
                    } => {
                        if replaced_root_pin {
                            self.collect_import();
                        }
                        PinStatus::Pinned
                    }
                };
                self.set(cid, status, String::new());
            }
            Err(e) => self.failed(cid, e),
        }
    }

    /// Frees the adding peer's whole import of an EC pin, now that only its share is pinned: a
    /// GC soon, one at a time, and one for many adds that end together. Blocks other adds pushed
    /// here and not pinned yet are leased, so GC leaves them.
    fn collect_import(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.gc_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let t = self.clone();
        tokio::spawn(async move {
            let _one = t.gc_turn.lock().await;
            // From here on, another add that ends schedules a new collection.
            t.gc_scheduled.store(false, Ordering::Release);
            match t.node.collect_garbage().await {
                Ok(removed) => tracing::info!(
                    removed = removed.len(),
                    "freed the blocks of erasure-coded adds that other peers hold"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collection after an erasure-coded add failed")
                }
            }
        });
    }

    /// Counts an attempt; false when the CID stays in error until `recover`.
    fn begin_attempt(&self, cid: Cid) -> bool {
        let mut entries = self.lock_entries();
        let e = entries.entry(cid).or_insert_with(|| Entry {
            status: PinStatus::PinQueued,
            error: String::new(),
            attempts: 0,
            timestamp: now_secs(),
        });
        if e.status == PinStatus::PinError && e.attempts >= self.retries {
            return false;
        }
        e.attempts += 1;
        true
    }

    /// Records a failed attempt: queued again with backoff, or in error after the last one.
    fn failed(self: &Arc<Self>, cid: Cid, error: String) {
        let attempt = self.lock_entries().get(&cid).map_or(1, |e| e.attempts);
        tracing::warn!(%cid, attempt, error = %error, "pin failed");
        if attempt < self.retries {
            self.set(cid, PinStatus::PinQueued, error);
            let t = self.clone();
            let backoff = Duration::from_secs(1 << attempt.min(6));
            tokio::spawn(async move {
                tokio::time::sleep(backoff).await;
                t.enqueue(cid);
            });
        } else {
            self.set(cid, PinStatus::PinError, error);
        }
    }

    fn info(&self, status: PinStatus, error: String, attempts: u32, timestamp: u64) -> PeerPinInfo {
        PeerPinInfo {
            peer: self.local,
            peer_name: self.peer_name.clone(),
            status,
            error,
            timestamp,
            attempt_count: attempts,
            ipfs_addresses: self
                .node
                .listen_addrs()
                .iter()
                .map(|a| format!("{a}/p2p/{}", self.local))
                .collect(),
        }
    }

    /// This peer's status of `cid`. A `pinned` entry is checked against the blockstore, so that a
    /// pin removed behind the cluster's back shows as `unexpectedly_unpinned`.
    pub(crate) async fn status(&self, cid: Cid) -> PeerPinInfo {
        let entry = self.lock_entries().get(&cid).cloned();
        match entry {
            // An EC share is pinned block by block, not by its root.
            Some(e) if e.status == PinStatus::Pinned && !self.ec.index.contains_pin(&cid) => {
                if let Ok(None) = self.node.pin_mode(cid).await {
                    return self.info(
                        PinStatus::UnexpectedlyUnpinned,
                        "the pinset allocates it here but the blockstore does not pin it".into(),
                        e.attempts,
                        e.timestamp,
                    );
                }
                self.info(e.status, e.error, e.attempts, e.timestamp)
            }
            Some(e) => self.info(e.status, e.error, e.attempts, e.timestamp),
            None => match self.consensus.get(&cid) {
                Ok(Some(p)) if p.is_allocated_to(&self.local) => {
                    self.info(PinStatus::PinQueued, String::new(), 0, now_secs())
                }
                Ok(Some(_)) => self.info(PinStatus::Remote, String::new(), 0, now_secs()),
                Ok(None) => self.info(PinStatus::Unpinned, String::new(), 0, now_secs()),
                Err(e) => self.info(PinStatus::ClusterError, e.to_string(), 0, now_secs()),
            },
        }
    }

    /// Statuses of every CID with a status here.
    pub(crate) fn status_all(&self) -> Vec<(Cid, PeerPinInfo)> {
        let entries: Vec<(Cid, Entry)> = self
            .lock_entries()
            .iter()
            .map(|(c, e)| (*c, e.clone()))
            .collect();
        entries
            .into_iter()
            .map(|(c, e)| (c, self.info(e.status, e.error, e.attempts, e.timestamp)))
            .collect()
    }

    /// Retries `cid` if it is in error, and reconciles it again in any case (a repair re-checks
    /// that an erasure-coded share is whole).
    pub(crate) fn recover(&self, cid: Cid) {
        let retry = {
            let mut entries = self.lock_entries();
            match entries.get_mut(&cid) {
                Some(e)
                    if matches!(
                        e.status,
                        PinStatus::PinError | PinStatus::UnpinError | PinStatus::ClusterError
                    ) =>
                {
                    e.attempts = 0;
                    e.status = PinStatus::PinQueued;
                    true
                }
                // Reconciling is idempotent: a repair re-checks a pinned share too.
                Some(_) => true,
                None => true,
            }
        };
        if retry {
            self.enqueue(cid);
        }
    }

    /// Waits until `cid` is pinned here (true) or failed for good (the error), at most `limit`.
    pub(crate) async fn wait_pinned(&self, cid: Cid, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let entry = self.lock_entries().get(&cid).cloned();
            match entry {
                Some(e) if e.status == PinStatus::Pinned => return Ok(()),
                Some(e) if e.status == PinStatus::PinError => return Err(e.error),
                Some(e) if e.status == PinStatus::Remote => return Ok(()),
                _ => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "{cid} is not pinned yet after {limit:?}; `tessera status {cid}` shows its progress"
                ));
            }
        }
    }

    /// Counts per status, and the queue length, for metrics.
    pub(crate) fn counts(&self) -> (HashMap<PinStatus, u64>, usize) {
        let mut counts = HashMap::new();
        for e in self.lock_entries().values() {
            *counts.entry(e.status).or_insert(0) += 1;
        }
        (counts, self.lock_queued().1.len())
    }
}

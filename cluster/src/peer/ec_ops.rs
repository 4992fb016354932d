//! Erasure-coded pins at the cluster level: committing one after its blocks are distributed,
//! moving the columns of dead peers (repair), and telling how much redundancy a pin has.

use std::collections::BTreeSet;

use cid::Cid;
use futures::future::BoxFuture;
use libp2p::PeerId;

use super::Cluster;
use super::duties::candidates;
use crate::api::{ClusterError, PinOptions};
use crate::ec::encode::{EncodeOutcome, ImportSink, Source, encode_and_distribute};
use crate::ec::placement::{Placement, replacement, tolerated_failures};
use crate::metric::now_secs;
use crate::pin::{Pin, PinMode, PinsetOp};
use crate::status::{GlobalPinInfo, PinStatus};

impl Cluster {
    /// Erasure-codes the DAG under `cid` (fetching what is not here), pushes every block to its
    /// holder, and commits the pin once every holder acknowledged: a committed EC pin has its full
    /// redundancy from its first moment. A failure commits nothing.
    pub(super) async fn pin_ec(
        &self,
        cid: Cid,
        k: u8,
        m: u8,
        options: PinOptions,
    ) -> Result<Pin, ClusterError> {
        let placement = self.ec_placement(k, m, &options)?;
        self.encode_and_commit(Source::Dag(cid), k, m, options, placement)
            .await
    }

    /// Starts an erasure-coded add fed by an import as it runs (the REST `/add` with
    /// `data-shards` and `parity-shards`): the import's blocks go into the returned sink, and the
    /// returned future encodes and pushes them meanwhile, then commits the pin once every holder
    /// acknowledged. The adding peer keeps only its own share. A failure commits nothing.
    pub(super) fn ec_add(
        &self,
        k: u8,
        m: u8,
        options: PinOptions,
    ) -> Result<(ImportSink, BoxFuture<'static, Result<Pin, ClusterError>>), ClusterError> {
        let placement = self.ec_placement(k, m, &options)?;
        // A few small import batches in flight; the encoder's own queues read ahead.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let this = self.clone();
        let done = async move {
            this.encode_and_commit(Source::Import(rx), k, m, options, placement)
                .await
        };
        Ok((ImportSink::new(tx), Box::pin(done)))
    }

    /// Encodes and distributes what `source` gives, then commits its pin.
    async fn encode_and_commit(
        &self,
        source: Source,
        k: u8,
        m: u8,
        options: PinOptions,
        placement: Placement,
    ) -> Result<Pin, ClusterError> {
        let what = match &source {
            Source::Dag(cid) => format!("erasure coding {cid}"),
            Source::Import(_) => "erasure-coded add".to_string(),
        };
        let started = std::time::Instant::now();
        let outcome = encode_and_distribute(
            &self.inner.node,
            &self.inner.blocks,
            source,
            usize::from(k),
            usize::from(m),
            self.inner.settings.raw.shard_size,
            &placement,
            self.inner.local,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "{what} failed, nothing was pinned");
            ClusterError::internal(format!("{what} failed, nothing was pinned: {e}"))
        })?;
        self.commit_ec(options, outcome, started).await
    }

    /// Checks an EC pin's options and places its columns on the live peers.
    fn ec_placement(&self, k: u8, m: u8, options: &PinOptions) -> Result<Placement, ClusterError> {
        if k == 0 || m == 0 || usize::from(k) + usize::from(m) > 256 {
            return Err(ClusterError::bad_request(format!(
                "data-shards {k} and parity-shards {m}: both must be at least 1 and add up to at most 256"
            )));
        }
        if options.mode == PinMode::Direct {
            return Err(ClusterError::bad_request(
                "an erasure-coded pin covers a whole DAG: mode direct is not possible",
            ));
        }
        let cands = candidates(self);
        Placement::new(&cands, usize::from(k), usize::from(m)).map_err(ClusterError::internal)
    }

    /// Commits the pin of a DAG that every holder acknowledged.
    async fn commit_ec(
        &self,
        options: PinOptions,
        outcome: EncodeOutcome,
        started: std::time::Instant,
    ) -> Result<Pin, ClusterError> {
        let (cid, k, m) = (outcome.root, outcome.layout.k, outcome.layout.m);
        tracing::info!(
            %cid, k, m,
            leaves = outcome.leaves,
            bytes = outcome.leaf_bytes,
            stored = outcome.stored_bytes,
            secs = started.elapsed().as_secs_f64(),
            "erasure-coded and distributed"
        );
        let layout = outcome.layout;
        let pin = Pin {
            cid,
            mode: PinMode::Recursive,
            name: options.name,
            replication_min: i32::from(k) + i32::from(m),
            replication_max: i32::from(k) + i32::from(m),
            allocations: layout.holders(),
            user_allocations: Vec::new(),
            metadata: options.metadata,
            expire_at: options.expire_at,
            timestamp: now_secs(),
            ec: Some(layout),
        };
        self.inner
            .consensus
            .submit(PinsetOp::Pin(pin.clone()))
            .await
            .map_err(|e| ClusterError::internal(e.to_string()))?;
        Ok(pin)
    }

    /// On the leader: gives each column (and interior copy) held by a gone peer to a live peer that
    /// holds nothing of that group; `None` when nothing changes.
    pub(super) fn ec_reallocation(
        &self,
        pin: &Pin,
        gone: &dyn Fn(&PeerId) -> bool,
    ) -> Option<PinsetOp> {
        let layout = pin.ec.as_ref()?;
        if !layout.holders().iter().any(gone) {
            return None;
        }
        let cands: Vec<_> = candidates(self)
            .into_iter()
            .filter(|c| !gone(&c.peer))
            .collect();
        let mut new = layout.clone();
        let mut changed = false;
        for group in new.columns.iter_mut() {
            for j in 0..group.len() {
                if gone(&group[j])
                    && let Some(p) = replacement(&cands, group, gone)
                {
                    group[j] = p;
                    changed = true;
                }
            }
        }
        let interior_cands: Vec<_> = cands
            .iter()
            .filter(|c| !new.interior.contains(&c.peer))
            .cloned()
            .collect();
        let mut spare = interior_cands.iter();
        for h in new.interior.iter_mut() {
            if gone(h)
                && let Some(c) = spare.next()
            {
                *h = c.peer;
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        tracing::info!(cid = %pin.cid, "moving erasure-coded columns away from peers that are down");
        let mut p = pin.clone();
        p.allocations = new.holders();
        p.ec = Some(new);
        Some(PinsetOp::Pin(p))
    }

    /// `repair CID`: moves the columns of peers that are down now (no grace), then has every holder
    /// reconcile its share, rebuilding what it lacks.
    pub(super) async fn repair_now(&self, cid: Cid) -> Result<GlobalPinInfo, ClusterError> {
        use crate::api::ClusterApi;
        let pin = self
            .inner
            .consensus
            .get(&cid)
            .map_err(|e| ClusterError::internal(e.to_string()))?
            .ok_or_else(|| {
                ClusterError::not_found(format!("{cid} is not pinned in the cluster"))
            })?;
        if pin.ec.is_some() {
            let members = self.member_ids();
            let local = self.inner.local;
            let monitor = self.inner.monitor.clone();
            let gone = move |p: &PeerId| !members.contains(p) || (*p != local && !monitor.alive(p));
            if let Some(op) = self.ec_reallocation(&pin, &gone) {
                self.inner
                    .consensus
                    .submit(op)
                    .await
                    .map_err(|e| ClusterError::internal(e.to_string()))?;
            }
        }
        self.recover(cid, false).await
    }

    /// Turns per-peer statuses of an EC pin into what its redundancy really is: while some column
    /// of a group is unavailable (holder down or not holding it yet), or the cluster has fewer
    /// peers than `k + m`, holders that report `pinned` report `degraded`, with the failures the
    /// pin still tolerates.
    pub(super) fn ec_status(&self, info: &mut GlobalPinInfo) {
        let Some(layout) = info.pin.as_ref().and_then(|p| p.ec.clone()) else {
            return;
        };
        let m = usize::from(layout.m);
        let ok = |p: &PeerId| {
            self.inner.monitor.alive(p)
                && info
                    .peer_map
                    .get(&p.to_string())
                    .is_some_and(|i| i.status == PinStatus::Pinned)
        };
        let mut tolerated = m;
        let mut problems = Vec::new();
        for (g, group) in layout.columns.iter().enumerate() {
            let bad: Vec<usize> = (0..group.len()).filter(|j| !ok(&group[*j])).collect();
            let by_spread = tolerated_failures(group, m);
            let left = m.saturating_sub(bad.len()).min(by_spread);
            tolerated = tolerated.min(left);
            if !bad.is_empty() {
                problems.push(format!("group {g}: columns {bad:?} unavailable"));
            } else if by_spread < m {
                problems.push(format!(
                    "group {g}: {} peers hold its {} columns",
                    group.iter().collect::<BTreeSet<_>>().len(),
                    group.len()
                ));
            }
        }
        if tolerated >= m && problems.is_empty() {
            return;
        }
        let why = format!(
            "tolerates {tolerated} more peer failure(s) of {m}: {}",
            problems.join("; ")
        );
        for i in info.peer_map.values_mut() {
            if i.status == PinStatus::Pinned {
                i.status = PinStatus::Degraded;
                i.error = why.clone();
            }
        }
    }
}

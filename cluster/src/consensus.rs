//! Raft consensus on the shared pinset, with openraft.
//!
//! Every cluster peer runs one [`Consensus`]: an openraft node whose log carries
//! [`PinsetOp`]s and whose state machine is the applied pinset, both in one redb file. Peers talk
//! through a [`RaftTransport`] that the swarm implements; [`Consensus::handle`] serves what
//! arrives. Writes ([`Consensus::submit`], membership changes) may be called on any member: a
//! follower forwards them to the leader. Reads ([`Consensus::get`], [`Consensus::list`]) serve the
//! pinset as applied on this peer, and [`Consensus::subscribe`] tells the pin tracker what
//! changed.
//!
//! Membership: a peer [`initialize`](Consensus::initialize)s a one-member cluster, or is added by
//! a member with [`add_member`](Consensus::add_member): it joins as a learner, catches up, and is
//! promoted to voter while there are fewer than `max_voters` voters.

mod config;
mod db;
mod error;
mod forward;
mod group_commit;
mod leader;
mod log_store;
mod network;
mod snapshot;
mod state_machine;
mod status;
mod tables;
mod transport;
mod types;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use libp2p::{Multiaddr, PeerId};
use openraft::ServerState;
use openraft::error::{InitializeError, RaftError};
use redb::{Database, ReadableDatabase, ReadableTableMetadata};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::Instrument;

pub use config::ConsensusConfig;
pub use error::ConsensusError;
pub use status::{Applied, ConsensusStatus, Member};
pub use transport::{RaftTransport, TransportError};

use crate::pin::{Pin, PinsetOp};
use group_commit::GroupCommit;
use log_store::LogStore;
use network::Network;
use state_machine::{Announce, StateMachine};
use types::{NodeId, Raft, RaftMetrics, RaftNode, StoredMembership, node_id};
use wire::{Request, Response, WireError};

/// How long `submit` keeps trying (elections, forwarding) before giving up.
const SUBMIT_DEADLINE: Duration = Duration::from_secs(10);

/// How long a membership change keeps trying; longer than a submit since the new member may
/// first have to catch up.
const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(30);

/// Applied changes buffered per subscriber before it lags.
const EVENTS: usize = 4096;

/// A peer's Raft node on the pinset: a cheap, cloneable handle.
///
/// Dropping the last handle stops the Raft node in the background; call
/// [`shutdown`](Self::shutdown) to stop it and wait.
#[derive(Clone)]
pub struct Consensus {
    inner: Arc<Inner>,
}

struct Inner {
    raft: Raft,
    local: PeerId,
    local_id: NodeId,
    local_node: RaftNode,
    transport: Arc<dyn RaftTransport>,
    config: ConsensusConfig,
    db: Arc<Database>,
    announce: Announce,
    group: GroupCommit,
    stopped: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let raft = self.raft.clone();
            runtime.spawn(async move {
                let _ = raft.shutdown().await;
            });
        }
    }
}

impl Consensus {
    /// Opens (or creates) the redb database at `path` holding log, vote, state machine and
    /// snapshot, and starts the Raft node for `local`.
    ///
    /// `local_addrs` is what this peer records about itself when it initializes a cluster. If
    /// another instance in this process still holds the file (it was just shut down), this waits
    /// up to 5 seconds for it to let go.
    pub async fn open(
        path: &Path,
        local: PeerId,
        local_addrs: Vec<Multiaddr>,
        transport: Arc<dyn RaftTransport>,
        config: ConsensusConfig,
    ) -> Result<Self, ConsensusError> {
        let raft_config = Arc::new(config.to_openraft()?);
        let path = path.to_owned();
        let span = tracing::info_span!("consensus", peer = %local);
        let (db, applied) = tokio::task::spawn_blocking(move || {
            let db = tables::open(&path)?;
            let (applied, _) = state_machine::read_applied(&db)
                .map_err(|e| ConsensusError::Storage(e.to_string()))?;
            Ok::<_, ConsensusError>((db, applied))
        })
        .await
        .map_err(|e| ConsensusError::Storage(format!("opening the database: {e}")))??;
        let db = Arc::new(db);
        let announce = Announce {
            events: broadcast::channel(EVENTS).0,
            applied: Arc::new(watch::channel(applied.map_or(0, |l| l.index)).0),
        };
        let local_id = node_id(&local);
        let network = Network {
            transport: transport.clone(),
            backoff: config.heartbeat,
        };
        let raft = Raft::new(
            local_id,
            raft_config,
            network,
            LogStore::new(db.clone()),
            StateMachine::new(db.clone(), announce.clone()),
        )
        .instrument(span.clone())
        .await
        .map_err(|e| ConsensusError::Storage(format!("starting Raft: {e}")))?;
        let group = GroupCommit::spawn(raft.clone(), span);
        Ok(Consensus {
            inner: Arc::new(Inner {
                raft,
                local,
                local_id,
                local_node: RaftNode::new(&local, &local_addrs),
                transport,
                config,
                db,
                announce,
                group,
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// True once this node has a membership (it initialized a cluster, or was added to one).
    pub async fn is_initialized(&self) -> bool {
        self.inner.raft.is_initialized().await.unwrap_or(false)
    }

    /// Makes a one-member cluster of this node. No-op if already initialized.
    pub async fn initialize(&self) -> Result<(), ConsensusError> {
        if self.is_initialized().await {
            return Ok(());
        }
        let members = BTreeMap::from([(self.inner.local_id, self.inner.local_node.clone())]);
        match self.inner.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(ConsensusError::Membership(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Stopped(e.to_string())),
        }
    }

    /// Appends a change; if this node is not the leader, forwards it to the leader over the
    /// transport (retrying while there is an election, within 10 seconds). Returns the log index
    /// once the change is committed and applied on this node, so a `get` that follows sees it.
    ///
    /// Concurrent submits are grouped into one log entry (a `PinsetOp::Batch`), so subscribers
    /// may see a batch they did not submit as such. A change whose answer was lost is submitted
    /// again, which pinset changes tolerate (pin and unpin are idempotent).
    pub async fn submit(&self, op: PinsetOp) -> Result<u64, ConsensusError> {
        let deadline = Instant::now() + SUBMIT_DEADLINE;
        let index = self.route(forward::Command::Submit(op), deadline).await?;
        self.wait_applied(index, deadline).await?;
        Ok(index)
    }

    /// Adds a member, forwarded to the leader: first as learner; then, if `voter` and there are
    /// fewer than `max_voters` voters, promoted to voter once it has caught up (openraft's joint
    /// consensus). Adding a present member updates its addresses and may promote it.
    ///
    /// Returns once the change is applied on this node; waits up to 30 seconds, mostly for the
    /// new member to catch up (a large pinset arrives as a snapshot).
    pub async fn add_member(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        voter: bool,
    ) -> Result<(), ConsensusError> {
        let deadline = Instant::now() + MEMBERSHIP_DEADLINE;
        let command = forward::Command::AddMember { peer, addrs, voter };
        let index = self.route(command, deadline).await?;
        self.wait_applied(index, deadline).await
    }

    /// Removes a member (voter or learner), forwarded to the leader. Removing a non-member is not
    /// an error. When a voter leaves, a caught-up learner takes its place if there is one.
    pub async fn remove_member(&self, peer: PeerId) -> Result<(), ConsensusError> {
        let deadline = Instant::now() + MEMBERSHIP_DEADLINE;
        let index = self
            .route(forward::Command::RemoveMember { peer }, deadline)
            .await?;
        self.wait_applied(index, deadline).await
    }

    /// Current members from the latest membership config known locally (possibly not committed
    /// yet). Cheap and synchronous: it reads openraft's metrics, no I/O.
    pub fn members(&self) -> Vec<Member> {
        let membership = self.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .filter_map(|(id, node)| {
                let Some(peer) = node.peer() else {
                    tracing::warn!(peer_id = %node.peer_id, "membership holds an invalid peer id");
                    return None;
                };
                Some(Member {
                    peer,
                    addrs: node.multiaddrs(),
                    voter: voters.contains(id),
                })
            })
            .collect()
    }

    /// Where the membership config known locally sits in the log; it moves whenever a member
    /// joins, leaves or is promoted.
    pub fn membership_index(&self) -> u64 {
        self.membership().log_id().as_ref().map_or(0, |l| l.index)
    }

    /// Waits until the membership config known locally is no longer the one at `seen`
    /// (see [`Consensus::membership_index`]) and returns where the new one sits. Never returns
    /// once Raft has stopped.
    pub async fn membership_changed(&self, seen: u64) -> u64 {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let now = metrics
                .borrow_and_update()
                .membership_config
                .log_id()
                .as_ref()
                .map_or(0, |l| l.index);
            if now != seen {
                return now;
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Whether `peer` is a voter or learner in the latest membership config known locally.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.membership()
            .membership()
            .get_node(&node_id(peer))
            .is_some_and(|node| node.peer_id == peer.to_base58())
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<PeerId> {
        let leader = self.metrics().current_leader?;
        self.peer_of(leader)
    }

    /// This node's Raft state.
    pub fn status(&self) -> ConsensusStatus {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let peers = |ids: Vec<NodeId>| -> Vec<PeerId> {
            ids.iter()
                .filter_map(|id| membership.get_node(id).and_then(RaftNode::peer))
                .collect()
        };
        ConsensusStatus {
            term: metrics.current_term,
            leader: metrics
                .current_leader
                .and_then(|id| membership.get_node(&id).and_then(RaftNode::peer)),
            role: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_string(),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            // The state machine's own count, which moves before openraft's metrics do: a reader
            // that saw `last_applied >= i` then finds entry `i` with `get`.
            last_applied: *self.inner.announce.applied.borrow(),
            voters: peers(membership.voter_ids().collect()),
            learners: peers(membership.learner_ids().collect()),
        }
    }

    /// The pin for `cid` in the pinset as applied on this node.
    ///
    /// Synchronous: a redb read transaction does not wait for writers and a point lookup takes
    /// microseconds.
    pub fn get(&self, cid: &Cid) -> Result<Option<Pin>, ConsensusError> {
        let storage = |e: &dyn std::fmt::Display| ConsensusError::Storage(e.to_string());
        let txn = self.inner.db.begin_read().map_err(|e| storage(&e))?;
        let table = txn.open_table(tables::PINS).map_err(|e| storage(&e))?;
        let Some(value) = table
            .get(cid.to_bytes().as_slice())
            .map_err(|e| storage(&e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| storage(&format!("pin {cid} does not decode: {e}")))
    }

    /// Pins in CID-bytes order strictly after `after`, at most `limit`.
    pub fn list(&self, after: Option<&Cid>, limit: usize) -> Result<Vec<Pin>, ConsensusError> {
        let storage = |e: &dyn std::fmt::Display| ConsensusError::Storage(e.to_string());
        let txn = self.inner.db.begin_read().map_err(|e| storage(&e))?;
        let table = txn.open_table(tables::PINS).map_err(|e| storage(&e))?;
        let after = after.map(|c| c.to_bytes());
        let start = match &after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let range = table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(|e| storage(&e))?;
        let mut pins = Vec::with_capacity(limit.min(4096));
        for item in range.take(limit) {
            let (_, value) = item.map_err(|e| storage(&e))?;
            pins.push(serde_json::from_slice(value.value()).map_err(|e| storage(&e))?);
        }
        Ok(pins)
    }

    /// Number of pins in the pinset as applied on this node.
    pub fn len(&self) -> Result<u64, ConsensusError> {
        let storage = |e: &dyn std::fmt::Display| ConsensusError::Storage(e.to_string());
        let txn = self.inner.db.begin_read().map_err(|e| storage(&e))?;
        let table = txn.open_table(tables::PINS).map_err(|e| storage(&e))?;
        table.len().map_err(|e| storage(&e))
    }

    /// Whether the applied pinset is empty.
    pub fn is_empty(&self) -> Result<bool, ConsensusError> {
        Ok(self.len()? == 0)
    }

    /// Applied changes, in order, from now on. A receiver that falls more than 4096 changes
    /// behind gets `RecvError::Lagged` and should reconcile everything.
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.inner.announce.events.subscribe()
    }

    /// Serves a request that arrived from `from` over the transport (AppendEntries, Vote,
    /// InstallSnapshot, forwarded Submit/AddMember/RemoveMember). Never panics on malformed
    /// bytes: answers an encoded error.
    ///
    /// The caller has authenticated `from`; forwarded changes from non-members are refused here,
    /// Raft's own messages are judged by Raft (terms and votes).
    pub async fn handle(&self, from: PeerId, body: Bytes) -> Bytes {
        let request = match Request::decode(&body) {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(%from, error = %e, "refusing a malformed consensus request");
                return Response::Error(e).encode();
            }
        };
        tracing::trace!(%from, kind = request.kind(), "consensus request");
        let raft = &self.inner.raft;
        let response = match request {
            Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            Request::Submit(op) => self.serve(from, forward::Command::Submit(op)).await,
            Request::AddMember { peer, addrs, voter } => {
                match forward::Command::add_member_from_wire(&peer, &addrs, voter) {
                    Ok(command) => self.serve(from, command).await,
                    Err(e) => Response::Error(e),
                }
            }
            Request::RemoveMember { peer } => match peer.parse() {
                Ok(peer) => {
                    self.serve(from, forward::Command::RemoveMember { peer })
                        .await
                }
                Err(e) => Response::Error(WireError::Malformed(format!("peer id {peer:?}: {e}"))),
            },
        };
        response.encode()
    }

    /// Stops the Raft node and waits for it. Later calls fail with `Stopped` or `NotInitialized`.
    pub async fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }

    fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    fn membership(&self) -> Arc<StoredMembership> {
        self.inner.raft.metrics().borrow().membership_config.clone()
    }

    fn peer_of(&self, id: NodeId) -> Option<PeerId> {
        self.membership()
            .membership()
            .get_node(&id)
            .and_then(RaftNode::peer)
    }

    /// Waits until this node has applied `index`, so the caller reads its own write.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ConsensusError> {
        let mut applied = self.inner.announce.applied.subscribe();
        match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ConsensusError::Stopped(
                "the state machine stopped".to_string(),
            )),
            Err(_) => Err(ConsensusError::Timeout),
        }
    }
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

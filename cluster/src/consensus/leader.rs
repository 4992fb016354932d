//! What the leader does with a change: propose pinset operations, and change the membership
//! (learner first, voter once caught up).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use openraft::ChangeMembers;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;

use super::Consensus;
use super::forward::Command;
use super::group_commit::ProposeError;
use super::types::{NodeId, RaftNode, TypeConfig, node_id};
use super::wire::WireError;

/// How long the leader waits, per attempt, for a new learner to catch up before promoting it.
/// The caller retries until its own deadline, so this only bounds one forwarded request.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// How far behind the leader's log a learner may be and still be promoted when a voter leaves.
const PROMOTE_LAG: u64 = 100;

type WriteResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, RaftNode>>>;

impl Consensus {
    /// Runs `command` as if this node leads; answers `ForwardToLeader` if it does not.
    pub(super) async fn execute(&self, command: Command) -> Result<u64, WireError> {
        match command {
            Command::Submit(op) => match self.inner.group.propose(op).await {
                Ok(index) => Ok(index),
                Err(ProposeError::ForwardToLeader(leader)) => Err(self.forward_to(leader)),
                Err(ProposeError::Stopped(why)) => Err(WireError::Stopped(why)),
            },
            Command::AddMember { peer, addrs, voter } => {
                self.add_member_here(peer, &addrs, voter).await
            }
            Command::RemoveMember { peer } => self.remove_member_here(peer).await,
        }
    }

    fn forward_to(&self, leader: Option<NodeId>) -> WireError {
        WireError::ForwardToLeader {
            leader: leader
                .and_then(|id| self.peer_of(id))
                .map(|p| p.to_base58()),
        }
    }

    /// Maps openraft's write errors onto what the caller should do.
    fn written(&self, result: WriteResult) -> Result<u64, WireError> {
        match result {
            Ok(response) => Ok(response.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.forward_to(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => match e {
                ChangeMembershipError::InProgress(_)
                | ChangeMembershipError::LearnerNotFound(_) => Err(WireError::Retry(e.to_string())),
                ChangeMembershipError::EmptyMembership(_) => Err(WireError::Refused(format!(
                    "{e}: the last voter cannot be removed"
                ))),
            },
            Err(RaftError::Fatal(e)) => Err(WireError::Stopped(e.to_string())),
        }
    }

    async fn add_member_here(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
        voter: bool,
    ) -> Result<u64, WireError> {
        let raft = &self.inner.raft;
        let id = node_id(&peer);
        let node = RaftNode::new(&peer, addrs);
        let membership = self.membership();
        let mut index = membership.log_id().map_or(0, |l| l.index);
        match membership.membership().get_node(&id) {
            Some(existing) if existing.peer_id != node.peer_id => {
                return Err(WireError::Refused(format!(
                    "peer {peer} has the same Raft node id as member {}; it cannot join",
                    existing.peer_id
                )));
            }
            Some(existing) if existing.addrs != node.addrs => {
                let change = ChangeMembers::SetNodes(BTreeMap::from([(id, node)]));
                index = self.written(raft.change_membership(change, true).await)?;
            }
            Some(_) => {}
            // Not blocking: the learner must keep receiving entries while this waits.
            None => index = self.written(raft.add_learner(id, node, false).await)?,
        }
        if !voter {
            return Ok(index);
        }
        let membership = self.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) || voters.len() >= self.inner.config.max_voters {
            return Ok(index);
        }
        self.wait_caught_up(id, index).await?;
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.written(raft.change_membership(change, false).await)
    }

    /// Waits until replication to `id` has reached `index` (it has the entry that added it).
    async fn wait_caught_up(&self, id: NodeId, index: u64) -> Result<(), WireError> {
        let mut metrics = self.inner.raft.metrics();
        let caught_up = metrics.wait_for(|m| match &m.replication {
            // No longer the leader: stop waiting, and say so below.
            None => true,
            Some(replication) => replication
                .get(&id)
                .and_then(|matched| *matched)
                .is_some_and(|matched| matched.index >= index),
        });
        match tokio::time::timeout(CATCH_UP_WAIT, caught_up).await {
            Ok(Ok(m)) if m.replication.is_some() => Ok(()),
            Ok(Ok(m)) => Err(self.forward_to(m.current_leader)),
            Ok(Err(_)) => Err(WireError::Stopped("Raft stopped".to_string())),
            Err(_) => Err(WireError::Retry(format!(
                "learner {id} is still catching up"
            ))),
        }
    }

    async fn remove_member_here(&self, peer: PeerId) -> Result<u64, WireError> {
        let raft = &self.inner.raft;
        let id = node_id(&peer);
        let membership = self.membership();
        let index = membership.log_id().map_or(0, |l| l.index);
        let Some(node) = membership.membership().get_node(&id) else {
            return Ok(index);
        };
        if node.peer_id != peer.to_base58() {
            return Ok(index);
        }
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let index = self.written(raft.change_membership(change, false).await)?;
        // Fill the seat it leaves with a caught-up learner (best effort: the removal stands).
        let promoted = self.rotate_voters(&BTreeSet::new()).await;
        Ok(promoted.unwrap_or(index).max(index))
    }

    /// On the leader: demotes voters that `down` says are gone to learners and fills the free
    /// seats with live learners that are nearly caught up, in one joint-consensus change.
    ///
    /// Why: a fixed set of voters would lose its quorum to failures spread over time that the
    /// cluster as a whole survives (kill 3 voters, repair, kill 3 more). Demoting the dead keeps
    /// the quorum among the living; a demoted peer that comes back is a learner and takes the
    /// next free seat. With nobody down it only fills free seats (after a removal). Best effort:
    /// does nothing when not the leader or when nothing changes;
    /// returns the index of the change it wrote.
    pub async fn rotate_voters(&self, down: &BTreeSet<PeerId>) -> Option<u64> {
        let metrics = self.metrics();
        let replication = metrics.replication.as_ref()?;
        let last = metrics.last_log_index.unwrap_or(0);
        let membership = metrics.membership_config.membership();
        let down: BTreeSet<NodeId> = down.iter().map(node_id).collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut next: BTreeSet<NodeId> = voters.difference(&down).copied().collect();
        if next.is_empty() {
            return None;
        }
        let seats = self.inner.config.max_voters.saturating_sub(next.len());
        next.extend(
            membership
                .learner_ids()
                .filter(|id| !down.contains(id))
                .filter(|id| {
                    replication
                        .get(id)
                        .and_then(|m| *m)
                        .is_some_and(|m| m.index + PROMOTE_LAG >= last)
                })
                .take(seats),
        );
        if next == voters {
            return None;
        }
        tracing::info!(from = ?voters, to = ?next, "changing voters: the dead out, caught-up learners in");
        let change = ChangeMembers::ReplaceAllVoters(next);
        match self.written(self.inner.raft.change_membership(change, true).await) {
            Ok(index) => Some(index),
            Err(e) => {
                tracing::info!(error = %e, "could not change voters");
                None
            }
        }
    }
}

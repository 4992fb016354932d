//! Getting a change to the leader: run it here if this node leads, else send it to the leader,
//! and retry through elections until a deadline.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use super::Consensus;
use super::error::ConsensusError;
use super::wire::{Request, Response, WireError};
use crate::pin::PinsetOp;

/// A change only the leader can make.
// Short-lived and moved a few times per request: boxing the pin would cost more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Command {
    Submit(PinsetOp),
    AddMember {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        voter: bool,
    },
    RemoveMember {
        peer: PeerId,
    },
}

/// First pause between attempts; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

impl Command {
    pub(crate) fn add_member_from_wire(
        peer: &str,
        addrs: &[String],
        voter: bool,
    ) -> Result<Command, WireError> {
        let peer = peer
            .parse()
            .map_err(|e| WireError::Malformed(format!("peer id {peer:?}: {e}")))?;
        let addrs = addrs
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| WireError::Malformed(format!("address {a:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Command::AddMember { peer, addrs, voter })
    }

    fn to_request(&self) -> Request {
        match self {
            Command::Submit(op) => Request::Submit(op.clone()),
            Command::AddMember { peer, addrs, voter } => Request::AddMember {
                peer: peer.to_base58(),
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
                voter: *voter,
            },
            Command::RemoveMember { peer } => Request::RemoveMember {
                peer: peer.to_base58(),
            },
        }
    }
}

impl Consensus {
    /// Runs `command` on the leader and returns the log index that holds its effect.
    pub(super) async fn route(
        &self,
        command: Command,
        deadline: Instant,
    ) -> Result<u64, ConsensusError> {
        if self.membership().membership().nodes().next().is_none() {
            return Err(ConsensusError::NotInitialized);
        }
        let mut hint: Option<PeerId> = None;
        let mut pause = FIRST_PAUSE;
        let mut last_error = ConsensusError::NoLeader;
        loop {
            let target = hint.take().or_else(|| self.leader());
            let outcome = match target {
                None => {
                    self.wait_for_leader(deadline).await;
                    None
                }
                Some(peer) if peer == self.inner.local => Some(self.execute(command.clone()).await),
                Some(peer) => Some(self.forward(peer, &command, deadline).await),
            };
            match outcome {
                None => {
                    // A leader appeared (or the deadline passed): look again, after a pause in
                    // case its node id is not in the membership known here yet.
                }
                Some(Ok(index)) => return Ok(index),
                Some(Err(WireError::ForwardToLeader { leader })) => {
                    hint = leader.and_then(|l| l.parse().ok());
                    last_error = ConsensusError::NoLeader;
                }
                Some(Err(WireError::Retry(why))) => last_error = ConsensusError::Forward(why),
                Some(Err(WireError::Stopped(why))) if target == Some(self.inner.local) => {
                    return Err(ConsensusError::Stopped(why));
                }
                // The leader stopped: an election follows.
                Some(Err(WireError::Stopped(why))) => last_error = ConsensusError::Forward(why),
                Some(Err(WireError::Refused(why))) => {
                    return Err(match command {
                        Command::Submit(_) => ConsensusError::Forward(why),
                        _ => ConsensusError::Membership(why),
                    });
                }
                Some(Err(e @ (WireError::NotMember(_) | WireError::Malformed(_)))) => {
                    return Err(ConsensusError::Forward(e.to_string()));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Sends `command` to `leader`; a failed request is a [`WireError::Retry`].
    async fn forward(
        &self,
        leader: PeerId,
        command: &Command,
        deadline: Instant,
    ) -> Result<u64, WireError> {
        let body = command.to_request().encode()?;
        let request = self.inner.transport.request(leader, body);
        let answer = match tokio::time::timeout_at(deadline, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(WireError::Retry(format!("leader {leader}: {e}"))),
            Err(_) => return Err(WireError::Retry(format!("leader {leader} did not answer"))),
        };
        match Response::decode(&answer)? {
            Response::Submitted { index } | Response::MembershipChanged { index } => Ok(index),
            Response::Error(e) => Err(e),
            other => Err(WireError::Malformed(format!(
                "leader {leader} answered {other:?}"
            ))),
        }
    }

    /// Serves a change forwarded by `from`.
    pub(super) async fn serve(&self, from: PeerId, command: Command) -> Response {
        if !self.is_member(&from) {
            return Response::Error(WireError::NotMember(from.to_base58()));
        }
        let submit = matches!(command, Command::Submit(_));
        match self.execute(command).await {
            Ok(index) if submit => Response::Submitted { index },
            Ok(index) => Response::MembershipChanged { index },
            Err(e) => Response::Error(e),
        }
    }

    /// Waits until some leader is known, or the deadline.
    async fn wait_for_leader(&self, deadline: Instant) {
        let mut metrics = self.inner.raft.metrics();
        let _ = tokio::time::timeout_at(deadline, metrics.wait_for(|m| m.current_leader.is_some()))
            .await;
    }
}

//! Group commit: pinset changes proposed while earlier ones are being committed go into the log
//! together, as one `PinsetOp::Batch` entry.
//!
//! openraft 0.9 appends (and fsyncs) each `client_write` as its own log entry, so a leader taking
//! one proposal at a time is bounded by the disk's fsync rate. Here an actor drains whatever is
//! queued into one entry and keeps a few entries in flight, so many concurrent submitters share
//! each fsync and each replication round trip.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use super::types::{NodeId, Raft};
use crate::pin::PinsetOp;

/// Most operations in one log entry. With `MAX_PAYLOAD_ENTRIES` entries per AppendEntries this
/// bounds a message to a few megabytes of pins.
pub(crate) const MAX_BATCH: usize = 128;

/// Log entries proposed and not yet applied; more lets the leader pipeline appends and
/// replication, fewer makes bigger batches.
const IN_FLIGHT: usize = 4;

/// Proposals waiting for a slot; a submitter beyond this waits to enqueue (back-pressure).
const QUEUE: usize = 4096;

/// Why a proposal was not committed here.
#[derive(Debug, Clone)]
pub(crate) enum ProposeError {
    /// This node is not the leader; the leader's node id if known.
    ForwardToLeader(Option<NodeId>),
    /// Raft stopped or refused for good.
    Stopped(String),
}

type Proposal = (PinsetOp, oneshot::Sender<Result<u64, ProposeError>>);

/// Handle to the group-commit actor; the actor stops when the last handle is dropped.
pub(crate) struct GroupCommit {
    tx: mpsc::Sender<Proposal>,
}

impl GroupCommit {
    pub(crate) fn spawn(raft: Raft, span: tracing::Span) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx).instrument(span));
        GroupCommit { tx }
    }

    /// Commits `op` (possibly batched with others) and returns the index of the log entry that
    /// holds it, once that entry is applied on this node.
    pub(crate) async fn propose(&self, op: PinsetOp) -> Result<u64, ProposeError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ProposeError::Stopped("the group-commit task stopped".to_string());
        self.tx.send((op, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Take the slot first: while all slots are busy, proposals pile up in the queue and the
        // next entry carries all of them.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(
            async move {
                write(&raft, batch).await;
                drop(slot);
            }
            .in_current_span(),
        );
    }
}

async fn write(raft: &Raft, batch: Vec<Proposal>) {
    let (mut ops, replies): (Vec<PinsetOp>, Vec<_>) = batch.into_iter().unzip();
    // A lone proposal is logged as itself, so subscribers see the operation that was submitted.
    let op = match ops.pop() {
        Some(op) if ops.is_empty() => op,
        Some(op) => {
            ops.push(op);
            PinsetOp::Batch(ops)
        }
        None => return,
    };
    let result = match raft.client_write(op).await {
        Ok(response) => Ok(response.log_id.index),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ProposeError::ForwardToLeader(f.leader_id))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ProposeError::Stopped(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(ProposeError::Stopped(e.to_string())),
    };
    tracing::trace!(ops = replies.len(), ?result, "group commit");
    for reply in replies {
        // The submitter may have given up (deadline); nothing to do then.
        let _ = reply.send(result.clone());
    }
}

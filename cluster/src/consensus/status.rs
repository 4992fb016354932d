//! What the consensus shows the rest of the peer: members, Raft status, and applied changes.

use libp2p::{Multiaddr, PeerId};

use crate::pin::PinsetOp;

/// A member of the cluster as the latest membership config known on this peer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's peer id.
    pub peer: PeerId,
    /// Where it said it listens, when it was added.
    pub addrs: Vec<Multiaddr>,
    /// Whether it votes; learners replicate the log but do not count for quorum.
    pub voter: bool,
}

/// A snapshot of this peer's Raft state, for the status API and the CLI.
#[derive(Debug, Clone)]
pub struct ConsensusStatus {
    /// The current term.
    pub term: u64,
    /// The leader this peer knows of, if any.
    pub leader: Option<PeerId>,
    /// `"leader"`, `"follower"`, `"candidate"`, `"learner"`, or `"shutdown"` once stopped.
    pub role: String,
    /// Index of the last entry in the local log (0 when empty).
    pub last_log_index: u64,
    /// Index of the last entry applied to the local pinset (0 when none).
    pub last_applied: u64,
    /// Voting members.
    pub voters: Vec<PeerId>,
    /// Non-voting members.
    pub learners: Vec<PeerId>,
}

/// Something applied to the local pinset, in log order.
// Most events are `Op`s, so boxing the op would add an allocation to nearly every event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Applied {
    /// A pinset change at log index `index`.
    Op {
        /// Log index of the entry.
        index: u64,
        /// The change.
        op: PinsetOp,
    },
    /// The pinset was replaced wholesale by a snapshot up to `index`: reconcile everything.
    Snapshot {
        /// Last log index the snapshot covers.
        index: u64,
    },
    /// A membership change at log index `index`; read [`Consensus::members`](super::Consensus::members).
    Membership {
        /// Log index of the entry.
        index: u64,
    },
}

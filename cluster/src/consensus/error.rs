//! The consensus's error type.

/// Why a consensus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// No leader was elected before the deadline.
    #[error(
        "no Raft leader is known: a majority of the voting peers must be reachable; check that they run"
    )]
    NoLeader,
    /// The request reached the leader but it failed there, or could not reach it.
    #[error("forwarding to the Raft leader failed: {0}")]
    Forward(String),
    /// The redb database failed or holds something unreadable.
    #[error("consensus storage failed: {0}; check the disk, then restart the peer")]
    Storage(String),
    /// This peer is in no cluster yet.
    #[error("this peer is not in a cluster yet: initialize one, or ask a member to add this peer")]
    NotInitialized,
    /// The operation did not finish before its deadline; it may still take effect.
    #[error(
        "timed out waiting for the Raft group; the change may still be applied, check before retrying"
    )]
    Timeout,
    /// A [`ConsensusConfig`](super::ConsensusConfig) value is out of range.
    #[error("invalid consensus config: {0}")]
    Config(String),
    /// The membership change was refused (for example removing the last voter).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The Raft node stopped (shut down, or a fatal storage error).
    #[error("the Raft node stopped: {0}")]
    Stopped(String),
}

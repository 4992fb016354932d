//! How the consensus reaches other peers: a request/response trait the swarm implements.

use bytes::Bytes;
use libp2p::PeerId;

/// Carries one request to another peer and brings back its answer.
///
/// The production implementation opens a libp2p stream per request; tests use an in-process
/// registry. The consensus does not interpret the bytes beyond handing them to the remote
/// [`Consensus::handle`](super::Consensus::handle).
///
/// ### To ensure correctness
///
/// - The answer must be exactly the bytes the remote `handle` returned for this `body`.
/// - Requests may be issued concurrently, to the same or different peers; they must not be
///   serialized behind each other (forwarded submits and replication run side by side).
/// - A request that fails may or may not have been executed by the remote: return an error, the
///   caller retries, and every request is safe to run twice.
/// - The implementation should give up on its own (dial failure, a timeout of a few seconds);
///   Raft wraps heartbeats in its own shorter timeout.
#[async_trait::async_trait]
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `body` to `peer` and returns its answer (the bytes that peer's `Consensus::handle`
    /// returned). Errors: peer unreachable, timeout.
    async fn request(&self, peer: PeerId, body: Bytes) -> Result<Bytes, TransportError>;
}

/// A request that did not get an answer: the peer was unreachable, the stream broke, or it timed
/// out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

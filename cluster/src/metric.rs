//! Metrics that peers broadcast about themselves (IPFS Cluster's informers).

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// One metric value from one peer, valid until `expire_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    /// `freespace`, `pins`, `pinqueue`, `tag:NAME` or `ping`.
    pub name: String,
    /// Who it describes (and sent it).
    #[serde(with = "crate::pin::peer_string")]
    pub peer: PeerId,
    /// The value, as text (IPFS Cluster's metric values are strings).
    pub value: String,
    /// Unix nanoseconds after which the peer counts as down if nothing newer came.
    pub expire_at: u64,
    /// False when the informer failed.
    pub valid: bool,
    /// Unix nanoseconds when it was received here.
    pub received_at: u64,
}

impl Metric {
    /// Whether it has expired at `now` (unix nanoseconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expire_at <= now
    }
}

/// Unix time now, in nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Unix time now, in seconds.
pub(crate) fn now_secs() -> u64 {
    now_nanos() / 1_000_000_000
}

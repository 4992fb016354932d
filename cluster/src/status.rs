//! What each peer says about a pin: IPFS Cluster's per-peer tracker statuses.

use std::collections::BTreeMap;

use cid::Cid;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::pin::Pin;

/// A peer's view of one pin, with IPFS Cluster's names (`pinned`, `pin_queued`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinStatus {
    /// Nothing known.
    Undefined,
    /// The peer could not be asked.
    ClusterError,
    /// Pinning failed; `recover` retries.
    PinError,
    /// Unpinning failed.
    UnpinError,
    /// Held in full.
    Pinned,
    /// Being fetched.
    Pinning,
    /// Being removed.
    Unpinning,
    /// Not held, and not allocated here.
    Unpinned,
    /// Allocated to other peers.
    Remote,
    /// Waiting in the pin queue.
    PinQueued,
    /// Waiting in the unpin queue.
    UnpinQueued,
    /// The cluster state says pinned, the blockstore disagrees.
    UnexpectedlyUnpinned,
    /// An erasure-coded pin with fewer than `m` failures tolerated (see [`PeerPinInfo::error`]).
    Degraded,
}

impl PinStatus {
    /// The name IPFS Cluster prints and accepts in `?filter=`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinStatus::Undefined => "undefined",
            PinStatus::ClusterError => "cluster_error",
            PinStatus::PinError => "pin_error",
            PinStatus::UnpinError => "unpin_error",
            PinStatus::Pinned => "pinned",
            PinStatus::Pinning => "pinning",
            PinStatus::Unpinning => "unpinning",
            PinStatus::Unpinned => "unpinned",
            PinStatus::Remote => "remote",
            PinStatus::PinQueued => "pin_queued",
            PinStatus::UnpinQueued => "unpin_queued",
            PinStatus::UnexpectedlyUnpinned => "unexpectedly_unpinned",
            PinStatus::Degraded => "degraded",
        }
    }

    /// Every status, for filters and metrics.
    pub const ALL: [PinStatus; 13] = [
        PinStatus::Undefined,
        PinStatus::ClusterError,
        PinStatus::PinError,
        PinStatus::UnpinError,
        PinStatus::Pinned,
        PinStatus::Pinning,
        PinStatus::Unpinning,
        PinStatus::Unpinned,
        PinStatus::Remote,
        PinStatus::PinQueued,
        PinStatus::UnpinQueued,
        PinStatus::UnexpectedlyUnpinned,
        PinStatus::Degraded,
    ];

    /// Parses a name as [`as_str`](Self::as_str) prints it; also IPFS Cluster's filter groups
    /// `error` and `queued` are handled by [`PinStatus::matches_filter`], not here.
    pub fn parse(s: &str) -> Option<PinStatus> {
        PinStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether this status passes an IPFS Cluster `filter` word (a status name, `error` or `queued`).
    pub fn matches_filter(self, word: &str) -> bool {
        match word {
            "error" => matches!(
                self,
                PinStatus::ClusterError | PinStatus::PinError | PinStatus::UnpinError
            ),
            "queued" => matches!(self, PinStatus::PinQueued | PinStatus::UnpinQueued),
            other => self.as_str() == other,
        }
    }
}

/// One peer's status of one pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPinInfo {
    /// The peer.
    #[serde(with = "crate::pin::peer_string")]
    pub peer: PeerId,
    /// Its name (IPFS Cluster's `peername`).
    pub peer_name: String,
    /// The status.
    pub status: PinStatus,
    /// Why, for error and degraded statuses.
    pub error: String,
    /// Unix seconds of the last status change.
    pub timestamp: u64,
    /// How many times pinning was tried.
    pub attempt_count: u32,
    /// Its IPFS peer id (the same as `peer` for tessera) and addresses.
    pub ipfs_addresses: Vec<String>,
}

/// Every peer's status of one pin, as `status CID` gathers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalPinInfo {
    /// The pin's CID.
    pub cid: Cid,
    /// The pin as the state holds it; `None` when the CID is not in the pinset.
    pub pin: Option<Pin>,
    /// Keyed by peer id string.
    pub peer_map: BTreeMap<String, PeerPinInfo>,
}

//! The types openraft is instantiated with, and how a libp2p peer becomes a Raft node.

use std::io::Cursor;

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pin::PinsetOp;

/// Raft's node id: the first 8 bytes (big-endian) of SHA-256 over the peer id's bytes.
///
/// openraft wants a `Copy + Ord` id and a `PeerId` is neither, so the id is derived from the peer
/// id; the peer id itself travels in [`RaftNode`], which is what every lookup reads back. Two
/// peers collide with probability about `n² / 2⁶⁵` (about 3·10⁻¹⁶ for 100 peers); a collision is
/// detected when the second peer is added (its node id already names another peer) and refused.
pub(crate) type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of the pinset's Raft group.
    pub(crate) TypeConfig:
        D = PinsetOp,
        R = (),
        NodeId = NodeId,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, RaftNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, RaftNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type RaftMetrics = openraft::RaftMetrics<NodeId, RaftNode>;

/// What the membership config stores per node: the peer id and addresses, as strings so that the
/// log and snapshots stay readable JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RaftNode {
    /// The peer id, base58.
    pub(crate) peer_id: String,
    /// Where the peer listens, as multiaddr strings.
    pub(crate) addrs: Vec<String>,
}

impl RaftNode {
    pub(crate) fn new(peer: &PeerId, addrs: &[Multiaddr]) -> Self {
        RaftNode {
            peer_id: peer.to_base58(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The peer id, or `None` if the stored string is not one (a corrupt or foreign entry).
    pub(crate) fn peer(&self) -> Option<PeerId> {
        self.peer_id.parse().ok()
    }

    /// The addresses that parse; others are skipped, since an address is only a dialing hint.
    pub(crate) fn multiaddrs(&self) -> Vec<Multiaddr> {
        self.addrs.iter().filter_map(|a| a.parse().ok()).collect()
    }
}

/// The Raft node id of `peer`; see [`NodeId`].
pub(crate) fn node_id(peer: &PeerId) -> NodeId {
    let digest = Sha256::digest(peer.to_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_stable_and_distinct() {
        let a = PeerId::random();
        let b = PeerId::random();
        assert_eq!(node_id(&a), node_id(&a));
        assert_ne!(node_id(&a), node_id(&b));
    }

    #[test]
    fn raft_node_round_trips_peer_and_addrs() {
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let node = RaftNode::new(&peer, std::slice::from_ref(&addr));
        assert_eq!(node.peer(), Some(peer));
        assert_eq!(node.multiaddrs(), vec![addr]);
    }
}

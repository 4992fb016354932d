//! The shared pinset's records: what the cluster agreed to keep, and where.
//!
//! A [`Pin`] is one entry of the state that Raft replicates. It carries everything IPFS Cluster's pin
//! carries (replication factors, name, metadata, mode, expiry, user allocations) and room for an
//! erasure-coded layout ([`EcLayout`]): root CID, `k`, `m`, manifest CID and, per group, the peer
//! holding each column. Allocations live here and not in the manifest because repairs change them.

use std::collections::BTreeMap;

use cid::Cid;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// How much of the DAG a pin keeps, as Kubo and IPFS Cluster name the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PinMode {
    /// The root and everything below it.
    #[default]
    Recursive,
    /// The root block only.
    Direct,
}

/// An erasure-coded pin's layout: the part of the pin that issue "EC pinning" fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcLayout {
    /// Data shards per stripe.
    pub k: u8,
    /// Parity shards per stripe.
    pub m: u8,
    /// The DAG-CBOR manifest's root CID.
    pub manifest: Cid,
    /// Per group, the holder of each of its `k + m` columns.
    #[serde(with = "peer_lists")]
    pub columns: Vec<Vec<PeerId>>,
    /// Peers holding the interior blocks and the manifest (`m + 1` of them).
    #[serde(with = "peer_list")]
    pub interior: Vec<PeerId>,
}

impl EcLayout {
    /// Every peer the layout names (column holders and interior holders), each once, in order.
    pub fn holders(&self) -> Vec<PeerId> {
        let set: std::collections::BTreeSet<PeerId> = self
            .columns
            .iter()
            .flatten()
            .chain(self.interior.iter())
            .copied()
            .collect();
        set.into_iter().collect()
    }
}

/// One entry of the cluster's pinset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned root.
    pub cid: Cid,
    /// Recursive or direct.
    #[serde(default)]
    pub mode: PinMode,
    /// A human name (IPFS Cluster's `name`).
    #[serde(default)]
    pub name: String,
    /// Fewest peers that must hold it; -1 means every peer.
    pub replication_min: i32,
    /// Most peers that should hold it; -1 means every peer.
    pub replication_max: i32,
    /// Peers chosen to hold it (empty with replication -1: everyone holds it).
    #[serde(with = "peer_list", default)]
    pub allocations: Vec<PeerId>,
    /// Peers the user asked for; the allocator puts them first.
    #[serde(with = "peer_list", default)]
    pub user_allocations: Vec<PeerId>,
    /// Free-form key/value pairs.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds after which the pin is removed; `None` for never.
    #[serde(default)]
    pub expire_at: Option<u64>,
    /// Unix seconds when the pin was (last) committed.
    #[serde(default)]
    pub timestamp: u64,
    /// The erasure-coded layout, for EC pins.
    #[serde(default)]
    pub ec: Option<EcLayout>,
}

impl Pin {
    /// A recursive pin with the given replication factors and nothing else set.
    pub fn new(cid: Cid, replication_min: i32, replication_max: i32) -> Self {
        Pin {
            cid,
            mode: PinMode::Recursive,
            name: String::new(),
            replication_min,
            replication_max,
            allocations: Vec::new(),
            user_allocations: Vec::new(),
            metadata: BTreeMap::new(),
            expire_at: None,
            timestamp: 0,
            ec: None,
        }
    }

    /// Whether `peer` must hold (part of) this pin.
    pub fn is_allocated_to(&self, peer: &PeerId) -> bool {
        if let Some(ec) = &self.ec {
            return ec.interior.contains(peer) || ec.columns.iter().any(|g| g.contains(peer));
        }
        self.replication_max == -1 || self.replication_min == -1 || self.allocations.contains(peer)
    }
}

/// A change to the pinset, as the Raft log carries it.
// Ops live only while a log entry is built or applied; boxing the pin would cost an allocation per
// op for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinsetOp {
    /// Add or replace a pin.
    Pin(Pin),
    /// Remove a pin; removing an absent pin is not an error.
    Unpin(Cid),
    /// Several changes applied together, in order, in one log entry.
    Batch(Vec<PinsetOp>),
}

/// Serde of a peer id list as strings, so the JSON state stays readable.
pub(crate) mod peer_list {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(peers: &[PeerId], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(peers.iter().map(|p| p.to_string()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PeerId>, D::Error> {
        let strings = Vec::<String>::deserialize(d)?;
        strings
            .iter()
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde of lists of peer id lists.
pub(crate) mod peer_lists {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        groups: &[Vec<PeerId>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            groups
                .iter()
                .map(|g| g.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Vec<PeerId>>, D::Error> {
        let groups = Vec::<Vec<String>>::deserialize(d)?;
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|s| s.parse().map_err(serde::de::Error::custom))
                    .collect()
            })
            .collect()
    }
}

/// Serde of one peer id as its string.
pub(crate) mod peer_string {
    use libp2p::PeerId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(peer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

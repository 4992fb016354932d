//! What the IPFS Cluster REST API (and the CLI through it) asks of the cluster peer.
//!
//! The REST layer (`rest_api`) speaks IPFS Cluster 1.1's JSON; this trait speaks the crate's own
//! types, so that the HTTP shapes and the cluster logic change independently.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cid::Cid;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use libp2p::{Multiaddr, PeerId};

pub use crate::ec::encode::ImportSink;
use crate::metric::Metric;
use crate::pin::{Pin, PinMode};
use crate::status::{GlobalPinInfo, PinStatus};

/// Why a cluster request failed. `status` is the HTTP status the REST API answers with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClusterError {
    /// HTTP status code to answer with (400 bad input, 404 not found, 500 otherwise).
    pub status: u16,
    /// What went wrong, for the user.
    pub message: String,
}

impl ClusterError {
    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ClusterError {
            status: 400,
            message: message.into(),
        }
    }
    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ClusterError {
            status: 404,
            message: message.into(),
        }
    }
    /// A 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ClusterError {
            status: 500,
            message: message.into(),
        }
    }
}

/// Options of a pin request (IPFS Cluster's `PinOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinOptions {
    /// `replication-min`; `None` takes the config default.
    pub replication_min: Option<i32>,
    /// `replication-max`; `None` takes the config default.
    pub replication_max: Option<i32>,
    /// `name`.
    pub name: String,
    /// `mode`.
    pub mode: PinMode,
    /// `shard-size` is not used; `user-allocations`.
    pub user_allocations: Vec<PeerId>,
    /// `expire-in` already turned into unix seconds.
    pub expire_at: Option<u64>,
    /// `meta-KEY=VALUE` pairs.
    pub metadata: BTreeMap<String, String>,
    /// `pin-update`: the CID this pin replaces.
    pub pin_update: Option<Cid>,
    /// `data-shards` and `parity-shards` (erasure coding), both or neither.
    pub erasure: Option<(u8, u8)>,
}

/// One cluster peer as `/id` and `/peers` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer (cluster and IPFS share one identity in tessera).
    pub peer: PeerId,
    /// Its name (`Cluster.PeerName`, the host name by default).
    pub peer_name: String,
    /// Its swarm addresses.
    pub addresses: Vec<Multiaddr>,
    /// The members it knows.
    pub cluster_peers: Vec<PeerId>,
    /// tessera's version.
    pub version: String,
    /// Whether it is a voter (false: a learner, IPFS Cluster's follower).
    pub voter: bool,
    /// Set when the peer could not be reached; the rest is then mostly empty.
    pub error: Option<String>,
}

/// `health/graph`: who is connected to whom.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectGraph {
    /// The peer that answered.
    pub cluster_id: Option<PeerId>,
    /// Cluster peer -> cluster peers it is connected to.
    pub cluster_links: BTreeMap<PeerId, Vec<PeerId>>,
    /// Peers that could not be asked, with why.
    pub errors: BTreeMap<PeerId, String>,
}

/// What the REST API needs from a running cluster peer.
#[async_trait]
pub trait ClusterApi: Send + Sync + 'static {
    /// This peer.
    async fn id(&self) -> PeerIdentity;
    /// Every member, each asked for its own identity (unreachable ones carry `error`).
    async fn peers(&self) -> Vec<PeerIdentity>;
    /// Removes a member from the consensus.
    async fn peer_remove(&self, peer: PeerId) -> Result<(), ClusterError>;
    /// Adds (or replaces) a pin; returns it as committed, allocations filled in.
    async fn pin(&self, cid: Cid, options: PinOptions) -> Result<Pin, ClusterError>;
    /// Starts an erasure-coded add `k`+`m` that the REST `/add` feeds as it imports: its blocks go
    /// into the sink, and the future encodes and pushes them meanwhile, then commits the pin.
    fn ec_add(
        &self,
        k: u8,
        m: u8,
        options: PinOptions,
    ) -> Result<(ImportSink, BoxFuture<'static, Result<Pin, ClusterError>>), ClusterError> {
        let _ = options;
        Err(ClusterError::bad_request(format!(
            "this peer cannot erasure-code ({k}+{m} was asked)"
        )))
    }
    /// Removes a pin; returns the removed pin. Not in the pinset: 404-like error.
    async fn unpin(&self, cid: Cid) -> Result<Pin, ClusterError>;
    /// One pin of the pinset, `None` if absent.
    async fn allocation(&self, cid: Cid) -> Result<Option<Pin>, ClusterError>;
    /// The whole pinset, streamed in CID order.
    fn allocations(&self) -> BoxStream<'static, Result<Pin, ClusterError>>;
    /// Every peer's status of one CID (only this peer's with `local`).
    async fn status(&self, cid: Cid, local: bool) -> Result<GlobalPinInfo, ClusterError>;
    /// Statuses of every pin, keeping those where some peer's status matches one of `filter`
    /// (IPFS Cluster filter words; empty keeps all).
    fn status_all(
        &self,
        filter: Vec<String>,
        local: bool,
    ) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>>;
    /// Retries a pin in error on every peer (this one with `local`) and returns the new statuses.
    async fn recover(&self, cid: Cid, local: bool) -> Result<GlobalPinInfo, ClusterError>;
    /// Repairs an erasure-coded pin now: columns of peers that are down move to live peers at once
    /// (not after `Cluster.ReallocateAfter`) and every holder rebuilds what it lacks.
    async fn repair(&self, cid: Cid) -> Result<GlobalPinInfo, ClusterError> {
        Err(ClusterError::bad_request(format!(
            "{cid}: this peer cannot repair erasure-coded pins"
        )))
    }
    /// Retries every pin in error.
    fn recover_all(&self, local: bool) -> BoxStream<'static, Result<GlobalPinInfo, ClusterError>>;
    /// Connectivity between members.
    async fn health_graph(&self) -> ConnectGraph;
    /// The names of the metrics peers broadcast.
    async fn metric_names(&self) -> Vec<String>;
    /// The latest metric of that name from each peer (expired ones included, marked by time).
    async fn latest_metrics(&self, name: &str) -> Vec<Metric>;
    /// The IPFS node under this peer (the REST `/add` imports through it).
    fn node(&self) -> &tessera_node::Node;
    /// Statuses used by filters, for input validation.
    fn known_status(&self, word: &str) -> bool {
        word == "error" || word == "queued" || PinStatus::parse(word).is_some()
    }
}

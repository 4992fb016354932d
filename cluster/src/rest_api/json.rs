//! IPFS Cluster 1.1's JSON objects (`api/types.go`), built from the crate's own types.
//!
//! Field names and order follow the Go structs. In 1.1 a CID, a peer id and a multiaddress are JSON
//! strings, a `time.Time` is RFC 3339, a tracker status and a pin type are their names.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cid::Cid;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::json_line;
use crate::api::{ConnectGraph, PeerIdentity};
use crate::metric::Metric;
use crate::pin::{Pin, PinMode};
use crate::status::{GlobalPinInfo, PeerPinInfo};

/// Go's zero `time.Time`, which IPFS Cluster prints for a time that was never set.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// IPFS Cluster's `rpc_protocol_version` slot: tessera peers speak their own protocol, so it names
/// that one rather than claiming IPFS Cluster's.
const RPC_PROTOCOL: &str = "/tessera/cluster/1.0.0";

/// 200 with one JSON value, as IPFS Cluster's `SendResponse` writes it.
pub(super) fn ok<T: Serialize>(value: &T) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json_line(value),
    )
        .into_response()
}

/// 204 with no body, IPFS Cluster's answer when there is nothing to say.
pub(super) fn no_content() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
    )
        .into_response()
}

/// Unix seconds as RFC 3339 in UTC; 0 (never set) as Go's zero time.
pub(super) fn rfc3339(unix_seconds: u64) -> String {
    if unix_seconds == 0 {
        return ZERO_TIME.to_string();
    }
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// `{"version": ...}`.
#[derive(Serialize)]
pub(super) struct Version {
    pub(super) version: String,
}

/// `api.ID`: a cluster peer.
#[derive(Serialize)]
pub(super) struct Id {
    id: String,
    addresses: Vec<String>,
    cluster_peers: Vec<String>,
    cluster_peers_addresses: Vec<String>,
    version: String,
    commit: String,
    rpc_protocol_version: String,
    error: String,
    ipfs: IpfsId,
    peername: String,
}

/// `api.IPFSID`: the IPFS node under a cluster peer (the same identity in tessera).
#[derive(Serialize)]
struct IpfsId {
    #[serde(skip_serializing_if = "String::is_empty")]
    id: String,
    addresses: Vec<String>,
    error: String,
}

/// A peer's addresses as IPFS Cluster lists them: each ending in `/p2p/<peer>`.
fn p2p_addresses(peer: &PeerId, addresses: &[Multiaddr]) -> Vec<String> {
    addresses
        .iter()
        .map(|a| {
            if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                a.to_string()
            } else {
                a.clone().with(Protocol::P2p(*peer)).to_string()
            }
        })
        .collect()
}

impl From<&PeerIdentity> for Id {
    fn from(p: &PeerIdentity) -> Self {
        let addresses = p2p_addresses(&p.peer, &p.addresses);
        let error = p.error.clone().unwrap_or_default();
        Id {
            id: p.peer.to_string(),
            addresses: addresses.clone(),
            cluster_peers: strings(&p.cluster_peers),
            cluster_peers_addresses: Vec::new(),
            version: p.version.clone(),
            commit: String::new(),
            rpc_protocol_version: RPC_PROTOCOL.to_string(),
            error: error.clone(),
            ipfs: IpfsId {
                id: p.peer.to_string(),
                addresses,
                error,
            },
            peername: p.peer_name.clone(),
        }
    }
}

/// `api.Pin` (with its embedded `api.PinOptions` first, as Go writes it), plus tessera's `erasure`.
#[derive(Serialize)]
pub(super) struct PinJson {
    replication_factor_min: i32,
    replication_factor_max: i32,
    name: String,
    mode: &'static str,
    shard_size: u64,
    user_allocations: Vec<String>,
    expire_at: String,
    metadata: BTreeMap<String, String>,
    pin_update: Option<String>,
    origins: Vec<String>,
    cid: String,
    #[serde(rename = "type")]
    kind: &'static str,
    allocations: Vec<String>,
    max_depth: i32,
    reference: Option<String>,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    erasure: Option<Erasure>,
}

/// tessera's erasure-coded layout of a pin; not part of IPFS Cluster's JSON.
#[derive(Serialize)]
struct Erasure {
    data_shards: u8,
    parity_shards: u8,
    manifest: String,
    /// Per group, the holder of each column (data columns first).
    columns: Vec<Vec<String>>,
    /// Holders of the interior blocks and the manifest.
    interior: Vec<String>,
}

fn mode_name(mode: PinMode) -> &'static str {
    match mode {
        PinMode::Recursive => "recursive",
        PinMode::Direct => "direct",
    }
}

impl From<&Pin> for PinJson {
    fn from(p: &Pin) -> Self {
        PinJson {
            replication_factor_min: p.replication_min,
            replication_factor_max: p.replication_max,
            name: p.name.clone(),
            mode: mode_name(p.mode),
            shard_size: 0,
            user_allocations: strings(&p.user_allocations),
            expire_at: rfc3339(p.expire_at.unwrap_or(0)),
            metadata: p.metadata.clone(),
            pin_update: None,
            origins: Vec::new(),
            cid: p.cid.to_string(),
            // tessera only has IPFS Cluster's DataType pins ("pin"); EC pins are that too.
            kind: "pin",
            allocations: strings(&p.allocations),
            max_depth: match p.mode {
                PinMode::Recursive => -1,
                PinMode::Direct => 0,
            },
            reference: None,
            timestamp: rfc3339(p.timestamp),
            erasure: p.ec.as_ref().map(|ec| Erasure {
                data_shards: ec.k,
                parity_shards: ec.m,
                manifest: ec.manifest.to_string(),
                columns: ec.columns.iter().map(|g| strings(g)).collect(),
                interior: strings(&ec.interior),
            }),
        }
    }
}

/// `api.GlobalPinInfo`: every peer's status of one CID.
#[derive(Serialize)]
pub(super) struct GlobalPinInfoJson {
    cid: String,
    name: String,
    allocations: Vec<String>,
    origins: Vec<String>,
    created: String,
    metadata: BTreeMap<String, String>,
    peer_map: BTreeMap<String, PinInfoShort>,
}

/// `api.PinInfoShort`: one peer's status inside a GlobalPinInfo.
#[derive(Serialize)]
struct PinInfoShort {
    peername: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    ipfs_peer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ipfs_peer_addresses: Vec<String>,
    status: &'static str,
    timestamp: String,
    error: String,
    attempt_count: u32,
    priority_pin: bool,
}

impl From<&PeerPinInfo> for PinInfoShort {
    fn from(i: &PeerPinInfo) -> Self {
        PinInfoShort {
            peername: i.peer_name.clone(),
            ipfs_peer_id: i.peer.to_string(),
            ipfs_peer_addresses: i.ipfs_addresses.clone(),
            status: i.status.as_str(),
            timestamp: rfc3339(i.timestamp),
            error: i.error.clone(),
            attempt_count: i.attempt_count,
            priority_pin: false,
        }
    }
}

impl From<&GlobalPinInfo> for GlobalPinInfoJson {
    fn from(g: &GlobalPinInfo) -> Self {
        let pin = g.pin.as_ref();
        GlobalPinInfoJson {
            cid: g.cid.to_string(),
            name: pin.map(|p| p.name.clone()).unwrap_or_default(),
            allocations: pin.map(|p| strings(&p.allocations)).unwrap_or_default(),
            origins: Vec::new(),
            created: rfc3339(pin.map(|p| p.timestamp).unwrap_or(0)),
            metadata: pin.map(|p| p.metadata.clone()).unwrap_or_default(),
            peer_map: g
                .peer_map
                .iter()
                .map(|(peer, info)| (peer.clone(), PinInfoShort::from(info)))
                .collect(),
        }
    }
}

/// `api.Metric`.
#[derive(Serialize)]
pub(super) struct MetricJson {
    name: String,
    peer: String,
    value: String,
    expire: i64,
    valid: bool,
    weight: i64,
    partitionable: bool,
    received_at: i64,
}

impl From<&Metric> for MetricJson {
    fn from(m: &Metric) -> Self {
        let number = || m.value.trim().parse::<i64>().unwrap_or(0);
        // As IPFS Cluster's informers weigh them: more free space is better, fewer pins are better.
        let weight = match m.name.as_str() {
            "freespace" => number(),
            "pins" | "numpin" | "pinqueue" => number().saturating_neg(),
            _ => 0,
        };
        MetricJson {
            name: m.name.clone(),
            peer: m.peer.to_string(),
            value: m.value.clone(),
            expire: i64::try_from(m.expire_at).unwrap_or(i64::MAX),
            valid: m.valid,
            weight,
            partitionable: m.name.starts_with("tag:"),
            received_at: i64::try_from(m.received_at).unwrap_or(i64::MAX),
        }
    }
}

/// `api.ConnectGraph`, plus tessera's `errors` (peers that could not be asked) when there are any.
#[derive(Serialize)]
pub(super) struct ConnectGraphJson {
    cluster_id: String,
    id_to_peername: BTreeMap<String, String>,
    ipfs_links: BTreeMap<String, Vec<String>>,
    cluster_links: BTreeMap<String, Vec<String>>,
    cluster_trust_links: BTreeMap<String, bool>,
    cluster_to_ipfs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    errors: BTreeMap<String, String>,
}

impl ConnectGraphJson {
    /// The graph, with the peers' names where `peers` knows them. Cluster and IPFS identities are
    /// one in tessera, so the IPFS links are the cluster links.
    pub(super) fn new(g: &ConnectGraph, peers: &[PeerIdentity]) -> Self {
        let links: BTreeMap<String, Vec<String>> = g
            .cluster_links
            .iter()
            .map(|(p, to)| (p.to_string(), strings(to)))
            .collect();
        ConnectGraphJson {
            cluster_id: g.cluster_id.map(|p| p.to_string()).unwrap_or_default(),
            id_to_peername: peers
                .iter()
                .map(|p| (p.peer.to_string(), p.peer_name.clone()))
                .collect(),
            ipfs_links: links.clone(),
            cluster_to_ipfs: links.keys().map(|p| (p.clone(), p.clone())).collect(),
            cluster_trust_links: links.keys().map(|p| (p.clone(), true)).collect(),
            cluster_links: links,
            errors: g
                .errors
                .iter()
                .map(|(p, e)| (p.to_string(), e.clone()))
                .collect(),
        }
    }
}

/// `api.AddedOutput`: one line of `/add`. A progress line has `bytes` and a `null` cid.
#[derive(Serialize)]
pub(super) struct AddedOutput {
    pub(super) name: String,
    pub(super) cid: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) allocations: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AddedOutput {
    pub(super) fn added(name: String, cid: &Cid, size: u64, allocations: &[PeerId]) -> Self {
        AddedOutput {
            name,
            cid: Some(cid.to_string()),
            bytes: 0,
            size,
            allocations: strings(allocations),
        }
    }

    pub(super) fn progress(name: String, bytes: u64) -> Self {
        AddedOutput {
            name,
            cid: None,
            bytes,
            size: 0,
            allocations: Vec::new(),
        }
    }
}

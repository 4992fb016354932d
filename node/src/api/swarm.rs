//! `swarm/connect|disconnect|peers|addrs` and `bitswap/stat|wantlist|ledger`.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use super::args::Args;
use super::error::{ApiError, ApiResult};
use super::stream::{CidLink, json};
use crate::node::Node;
use crate::swarm::SwarmHandle;

/// The swarm, or the error Kubo gives offline.
pub(super) fn swarm(node: &Node) -> ApiResult<&SwarmHandle> {
    node.swarm().ok_or_else(|| {
        ApiError::normal("this command must be run in online mode: the swarm is not running")
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Strings {
    strings: Vec<String>,
}

fn parse_addr(s: &str) -> ApiResult<Multiaddr> {
    s.parse::<Multiaddr>()
        .map_err(|e| ApiError::client(format!("invalid multiaddr \"{s}\": {e}")))
}

pub(crate) async fn connect(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let sw = swarm(&node)?;
    let mut out = Vec::new();
    let addrs = args.args();
    if addrs.is_empty() {
        return Err(ApiError::client("argument \"address\" is required"));
    }
    for a in addrs {
        let addr = parse_addr(a)?;
        let peer = sw
            .connect(addr)
            .await
            .map_err(|e| ApiError::normal(format!("connect failure: {e}")))?;
        out.push(format!("connect {peer} success"));
    }
    Ok(json(&Strings { strings: out }))
}

pub(crate) async fn disconnect(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let sw = swarm(&node)?;
    let mut out = Vec::new();
    for a in args.args() {
        let peer = match a.parse::<PeerId>() {
            Ok(p) => p,
            Err(_) => parse_addr(a)?
                .iter()
                .find_map(|p| {
                    if let Protocol::P2p(id) = p {
                        Some(id)
                    } else {
                        None
                    }
                })
                .ok_or_else(|| {
                    ApiError::client(format!("\"{a}\" names no peer: add /p2p/PEER_ID"))
                })?,
        };
        if !sw.disconnect(peer).await.map_err(ApiError::normal)? {
            return Err(ApiError::normal(format!(
                "disconnect {peer} failure: not connected"
            )));
        }
        out.push(format!("disconnect {peer} success"));
    }
    Ok(json(&Strings { strings: out }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PeerLine {
    addr: String,
    peer: String,
    latency: String,
    muxer: String,
    direction: u8,
    streams: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Peers {
    peers: Vec<PeerLine>,
}

pub(crate) async fn peers(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let latency = args.flag("latency", false)?;
    let mut list = swarm(&node)?.peers().await.map_err(ApiError::normal)?;
    list.sort_by_key(|p| p.peer.to_string());
    let peers = list
        .into_iter()
        .map(|p| PeerLine {
            addr: p.addr.to_string(),
            peer: p.peer.to_string(),
            latency: if latency {
                p.latency.map(|l| format!("{l:?}")).unwrap_or_default()
            } else {
                String::new()
            },
            muxer: String::new(),
            direction: if p.outbound { 2 } else { 1 },
            streams: None,
        })
        .collect();
    Ok(json(&Peers { peers }))
}

pub(crate) async fn addrs_listen(State(node): State<Node>) -> ApiResult<Response> {
    let addrs = swarm(&node)?
        .listen_addrs()
        .await
        .map_err(ApiError::normal)?;
    Ok(json(&Strings {
        strings: addrs.iter().map(|a| a.to_string()).collect(),
    }))
}

pub(crate) async fn addrs_local(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let with_id = args.flag("id", false)?;
    let pid = node.peer_id();
    let addrs = swarm(&node)?
        .listen_addrs()
        .await
        .map_err(ApiError::normal)?;
    let strings = addrs
        .iter()
        .map(|a| {
            if with_id {
                format!("{a}/p2p/{pid}")
            } else {
                a.to_string()
            }
        })
        .collect();
    Ok(json(&Strings { strings }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Addrs {
    addrs: HashMap<String, Vec<String>>,
}

pub(crate) async fn addrs(State(node): State<Node>) -> ApiResult<Response> {
    let known = swarm(&node)?
        .known_addrs()
        .await
        .map_err(ApiError::normal)?;
    let addrs = known
        .into_iter()
        .map(|(p, a)| (p.to_string(), a.iter().map(|x| x.to_string()).collect()))
        .collect();
    Ok(json(&Addrs { addrs }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BitswapStat {
    provide_buf_len: u64,
    wantlist: Vec<CidLink>,
    peers: Vec<String>,
    blocks_received: u64,
    data_received: u64,
    dup_blks_received: u64,
    dup_data_received: u64,
    messages_received: u64,
    blocks_sent: u64,
    data_sent: u64,
}

pub(crate) async fn bitswap_stat(State(node): State<Node>) -> ApiResult<Response> {
    let s = swarm(&node)?
        .bitswap()
        .stats()
        .await
        .map_err(ApiError::normal)?;
    Ok(json(&BitswapStat {
        provide_buf_len: 0,
        wantlist: s
            .wantlist
            .iter()
            .map(|c| CidLink { cid: c.to_string() })
            .collect(),
        peers: s.peers.iter().map(|p| p.to_string()).collect(),
        blocks_received: s.blocks_received,
        data_received: s.data_received,
        dup_blks_received: s.dup_blocks_received,
        dup_data_received: s.dup_data_received,
        messages_received: s.messages_received,
        blocks_sent: s.blocks_sent,
        data_sent: s.data_sent,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Keys {
    keys: Vec<CidLink>,
}

pub(crate) async fn bitswap_wantlist(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let bs = swarm(&node)?.bitswap();
    let list = match args.get("peer") {
        Some(p) => {
            let peer = p
                .parse::<PeerId>()
                .map_err(|e| ApiError::client(format!("invalid peer id \"{p}\": {e}")))?;
            bs.peer_wantlist(peer).await
        }
        None => bs.wantlist().await,
    }
    .map_err(ApiError::normal)?;
    Ok(json(&Keys {
        keys: list
            .iter()
            .map(|c| CidLink { cid: c.to_string() })
            .collect(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Ledger {
    peer: String,
    value: f64,
    sent: u64,
    recv: u64,
    exchanged: u64,
}

pub(crate) async fn bitswap_ledger(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let p = args.arg("peer")?;
    let peer = p
        .parse::<PeerId>()
        .map_err(|e| ApiError::client(format!("invalid peer id \"{p}\": {e}")))?;
    let l = swarm(&node)?
        .bitswap()
        .ledger(peer)
        .await
        .map_err(ApiError::normal)?;
    Ok(json(&Ledger {
        peer: l.peer.to_string(),
        value: l.value(),
        sent: l.bytes_sent,
        recv: l.bytes_received,
        exchanged: l.exchanged(),
    }))
}

//! `routing/findprovs` and `routing/provide` (and their old names `dht/findprovs`, `dht/provide`),
//! answered as Kubo answers them: a stream of routing query events, one JSON object per line.
//!
//! Only the events tessera can vouch for are sent: a `Provider` event (type 4) per provider found.
//! Kubo also streams the DHT's inner steps (queries sent, peers answering); clients read the
//! provider events and skip the rest, so leaving those out loses nothing they use.

use std::collections::HashSet;

use axum::extract::State;
use axum::response::Response;
use cid::Cid;
use futures::StreamExt;
use serde::Serialize;

use super::args::{Args, parse_cid};
use super::error::{ApiError, ApiResult};
use super::stream::ndjson;
use super::swarm::swarm;
use crate::ipld::walk;
use crate::node::Node;
use crate::swarm::{RoutingError, SwarmHandle};

/// Kubo's `num-providers` default.
const DEFAULT_NUM_PROVIDERS: i64 = 20;
/// Blocks a recursive provide's walk fetches at once.
const WALK_READ_AHEAD: usize = 32;

/// go-libp2p's `routing.QueryEventType` for a provider found.
const PROVIDER_EVENT: u8 = 4;

/// A peer and its addresses, as Kubo's `peer.AddrInfo` marshals.
#[derive(Serialize)]
struct AddrInfo {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Addrs")]
    addrs: Vec<String>,
}

/// go-libp2p's `routing.QueryEvent`.
#[derive(Serialize)]
struct QueryEvent {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Type")]
    kind: u8,
    #[serde(rename = "Responses")]
    responses: Vec<AddrInfo>,
    #[serde(rename = "Extra")]
    extra: String,
}

/// The swarm, if it runs the DHT; else the error that says how to turn it on.
fn routing(node: &Node) -> ApiResult<&SwarmHandle> {
    let swarm = swarm(node)?;
    if !swarm.routing_enabled() {
        return Err(ApiError::normal(RoutingError::Off));
    }
    Ok(swarm)
}

pub(crate) async fn findprovs(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let swarm = routing(&node)?;
    let wanted = args
        .number::<i64>("num-providers")?
        .unwrap_or(DEFAULT_NUM_PROVIDERS);
    if wanted < 1 {
        return Err(ApiError::client(
            "number of providers must be greater than 0",
        ));
    }
    let cid = parse_cid(args.arg("key")?)?;
    let found = swarm
        .find_providers(cid, usize::try_from(wanted).unwrap_or(usize::MAX))
        .await
        .map_err(ApiError::normal)?;
    let found = futures::stream::unfold(
        found,
        |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
    );
    let events = found.map(|p| {
        Ok::<_, ApiError>(QueryEvent {
            id: String::new(),
            kind: PROVIDER_EVENT,
            responses: vec![AddrInfo {
                id: p.peer.to_string(),
                addrs: p.addrs.iter().map(ToString::to_string).collect(),
            }],
            extra: String::new(),
        })
    });
    Ok(ndjson(events))
}

pub(crate) async fn provide(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let swarm = routing(&node)?.clone();
    let recursive = args.flag("recursive", false)?;
    let mut roots = Vec::new();
    for a in args.args() {
        roots.push(parse_cid(a)?);
    }
    if roots.is_empty() {
        return Err(ApiError::client("argument \"key\" is required"));
    }
    if swarm.connected_peers() == 0 {
        return Err(ApiError::normal("cannot provide, no connected peers"));
    }
    for root in &roots {
        let store = node.store().clone();
        let c = *root;
        let here = tokio::task::spawn_blocking(move || store.has(&c))
            .await
            .map_err(ApiError::normal)?
            .map_err(ApiError::normal)?;
        if !here {
            return Err(ApiError::normal(format!(
                "block {root} not found locally, cannot provide"
            )));
        }
    }
    let cids = if recursive {
        every_block(&node, roots).await?
    } else {
        roots
    };
    let mut results = Box::pin(swarm.provide_each(cids));
    while let Some((_, r)) = results.next().await {
        r.map_err(ApiError::normal)?;
    }
    Ok(ndjson(futures::stream::empty::<ApiResult<QueryEvent>>()))
}

/// Every distinct block under the roots, as Kubo's `provide --recursive` announces them.
async fn every_block(node: &Node, roots: Vec<Cid>) -> ApiResult<Vec<Cid>> {
    let mut seen = HashSet::new();
    let mut all = Vec::new();
    for root in roots {
        let mut blocks = Box::pin(walk(node.dag().clone(), root, WALK_READ_AHEAD));
        while let Some(b) = blocks.next().await {
            let b = b.map_err(ApiError::normal)?;
            if seen.insert(b.cid) {
                all.push(b.cid);
            }
        }
    }
    Ok(all)
}

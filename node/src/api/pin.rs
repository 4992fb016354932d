//! `pin/add|rm|ls|update`: what GC must keep, as Kubo's pin commands.
//!
//! `pin add` first walks the whole DAG through the DAG service (so missing blocks are fetched from
//! the network when the node has one), then, with GC held off, checks that every block is still
//! there and records the pin. A pin is never recorded over an incomplete DAG.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::response::Response;
use cid::Cid;
use futures::{StreamExt, stream};
use serde::Serialize;
use tessera_blockstore::PinMode;

use super::args::{Args, parse_ipfs_path};
use super::error::{ApiError, ApiResult};
use super::resolve::resolve;
use super::stream::{json, ndjson};
use crate::ipld::{DEFAULT_READ_AHEAD, walk};
use crate::node::Node;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PinsOutput {
    pins: Vec<String>,
}

/// Records a pin over a complete DAG already stored; see [`crate::pinning::pin_complete`].
pub(crate) async fn pin_complete(
    node: &Node,
    root: Cid,
    cids: Vec<Cid>,
    mode: PinMode,
) -> ApiResult<()> {
    crate::pinning::pin_complete(node, root, cids, mode, Vec::new())
        .await
        .map_err(ApiError::normal)
}

/// Resolves every positional path argument; at least one is required.
async fn resolve_args(node: &Node, args: &Args) -> ApiResult<Vec<Cid>> {
    let mut roots = Vec::new();
    for a in args.args() {
        roots.push(resolve(node, a).await?);
    }
    if roots.is_empty() {
        return Err(ApiError::client("argument \"ipfs-path\" is required"));
    }
    Ok(roots)
}

pub(crate) async fn add(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let recursive = args.flag("recursive", true)?;
    let roots = resolve_args(&node, &args).await?;
    if let Some(pinner) = node.pinner() {
        // The cluster owns pins: this becomes a cluster pin, allocated by the cluster.
        for root in &roots {
            pinner
                .pin(*root, recursive)
                .await
                .map_err(ApiError::normal)?;
        }
        return Ok(json(&PinsOutput {
            pins: roots.iter().map(Cid::to_string).collect(),
        }));
    }
    for root in &roots {
        node.pin_local(*root, recursive)
            .await
            .map_err(ApiError::normal)?;
    }
    Ok(json(&PinsOutput {
        pins: roots.iter().map(Cid::to_string).collect(),
    }))
}

pub(crate) async fn rm(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let recursive = args.flag("recursive", true)?;
    let roots = resolve_args(&node, &args).await?;
    if let Some(pinner) = node.pinner() {
        for root in &roots {
            pinner.unpin(*root).await.map_err(ApiError::normal)?;
        }
        return Ok(json(&PinsOutput {
            pins: roots.iter().map(Cid::to_string).collect(),
        }));
    }
    let store = node.store().clone();
    let r2 = roots.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        for root in &r2 {
            let mode = store.pin_mode(root).map_err(ApiError::normal)?;
            match mode {
                None => return Err(ApiError::normal(format!("{root} is not pinned"))),
                Some(PinMode::Recursive) if !recursive => {
                    return Err(ApiError::normal(format!("{root} is pinned recursively")));
                }
                Some(m) => {
                    store.unpin(root, m).map_err(ApiError::normal)?;
                }
            }
        }
        Ok(())
    })
    .await
    .map_err(ApiError::normal)??;
    Ok(json(&PinsOutput {
        pins: roots.iter().map(Cid::to_string).collect(),
    }))
}

fn mode_name(m: PinMode) -> &'static str {
    match m {
        PinMode::Direct => "direct",
        PinMode::Recursive => "recursive",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PinType {
    #[serde(rename = "Type")]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsOutput {
    keys: HashMap<String, PinType>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsStreamItem {
    cid: String,
    #[serde(rename = "Type")]
    kind: String,
}

pub(crate) async fn ls(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let kind = args.get("type").unwrap_or("all").to_string();
    if !matches!(kind.as_str(), "all" | "direct" | "recursive" | "indirect") {
        return Err(ApiError::client(format!(
            "invalid type '{kind}', must be one of {{direct, indirect, recursive, all}}"
        )));
    }
    let stream_out = args.flag("stream", false)?;
    let store = node.store().clone();
    let pins = tokio::task::spawn_blocking(move || store.pins())
        .await
        .map_err(ApiError::normal)?
        .map_err(ApiError::normal)?;
    let mut listed: Vec<(Cid, String)> = Vec::new();
    let asked: Vec<Cid> = args
        .args()
        .into_iter()
        .map(|a| parse_ipfs_path(a).map(|p| p.0))
        .collect::<Result<_, _>>()?;
    let want = |k: &str| kind == "all" || kind == k;
    if want("direct") || want("recursive") {
        for (cid, mode) in &pins {
            if want(mode_name(*mode)) {
                listed.push((*cid, mode_name(*mode).to_string()));
            }
        }
    }
    if want("indirect") || !asked.is_empty() {
        let indirect = indirect_pins(&node, &pins).await?;
        let direct: HashSet<Cid> = pins.iter().map(|p| p.0).collect();
        for (cid, via) in indirect {
            if !direct.contains(&cid) && want("indirect") {
                listed.push((cid, format!("indirect through {via}")));
            }
        }
    }
    if !asked.is_empty() {
        let by_cid: HashMap<Cid, String> = listed.into_iter().collect();
        let mut out = Vec::new();
        for c in &asked {
            match by_cid.get(c) {
                Some(k) => out.push((*c, k.clone())),
                None => return Err(ApiError::normal(format!("path '{c}' is not pinned"))),
            }
        }
        listed = out;
    }
    if stream_out {
        let items = listed.into_iter().map(|(c, k)| {
            Ok(LsStreamItem {
                cid: c.to_string(),
                kind: k,
            })
        });
        return Ok(ndjson(stream::iter(items.collect::<Vec<_>>())));
    }
    let keys = listed
        .into_iter()
        .map(|(c, k)| (c.to_string(), PinType { kind: k }))
        .collect();
    Ok(json(&LsOutput { keys }))
}

/// Every block reachable from a recursive pin (other than the root), with the root it hangs from.
/// Only local blocks are walked: listing pins never fetches.
async fn indirect_pins(node: &Node, pins: &[(Cid, PinMode)]) -> ApiResult<Vec<(Cid, Cid)>> {
    let local = crate::dag::DagService::local(node.store().clone());
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (root, mode) in pins {
        if *mode != PinMode::Recursive {
            continue;
        }
        let mut blocks = Box::pin(walk(local.clone(), *root, DEFAULT_READ_AHEAD));
        while let Some(b) = blocks.next().await {
            match b {
                Ok(b) if b.cid != *root => {
                    if seen.insert(b.cid) {
                        out.push((b.cid, *root));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%root, error = %e, "pinned DAG is incomplete");
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Of `cids`, which are pinned and why (`recursive`, `direct`, `indirect through X`).
pub(crate) async fn pinned_among(node: &Node, cids: &[Cid]) -> ApiResult<HashMap<Cid, String>> {
    let store = node.store().clone();
    let pins = tokio::task::spawn_blocking(move || store.pins())
        .await
        .map_err(ApiError::normal)?
        .map_err(ApiError::normal)?;
    let asked: HashSet<Cid> = cids.iter().copied().collect();
    let mut out = HashMap::new();
    for (c, m) in &pins {
        if asked.contains(c) {
            out.insert(*c, mode_name(*m).to_string());
        }
    }
    for (c, via) in indirect_pins(node, &pins).await? {
        if asked.contains(&c) {
            out.entry(c)
                .or_insert_with(|| format!("indirect through {via}"));
        }
    }
    Ok(out)
}

pub(crate) async fn update(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let a = args.args();
    if a.len() != 2 {
        return Err(ApiError::client(
            "pin update takes two arguments: from-path and to-path",
        ));
    }
    let from = resolve(&node, a[0]).await?;
    let to = resolve(&node, a[1]).await?;
    let unpin = args.flag("unpin", true)?;
    let store = node.store().clone();
    let mode = tokio::task::spawn_blocking(move || store.pin_mode(&from))
        .await
        .map_err(ApiError::normal)?
        .map_err(ApiError::normal)?;
    if mode != Some(PinMode::Recursive) {
        return Err(ApiError::normal(format!(
            "'from' cid {from} was not recursively pinned already"
        )));
    }
    node.pin_local(to, true).await.map_err(ApiError::normal)?;
    if unpin && from != to {
        let store = node.store().clone();
        tokio::task::spawn_blocking(move || store.unpin(&from, PinMode::Recursive))
            .await
            .map_err(ApiError::normal)?
            .map_err(ApiError::normal)?;
    }
    Ok(json(&PinsOutput {
        pins: vec![from.to_string(), to.to_string()],
    }))
}

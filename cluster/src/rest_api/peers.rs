//! `/id`, `/version` and `/peers`: who is in the cluster.

use axum::extract::State;
use axum::response::Response;
use futures::StreamExt;

use super::Api;
use super::error::ApiResult;
use super::json::{self, Id, Version};
use super::query::{self, Segment};
use super::stream;

/// `GET /id`: this peer.
pub(super) async fn id(State(api): State<Api>) -> Response {
    json::ok(&Id::from(&api.id().await))
}

/// `GET /version`: tessera's version (cluster and node are one program).
pub(super) async fn version(State(api): State<Api>) -> Response {
    json::ok(&Version {
        version: api.id().await.version,
    })
}

/// `GET /peers`: every member's identity, streamed; unreachable members carry `error`.
pub(super) async fn list(State(api): State<Api>) -> Response {
    let peers = api.peers().await;
    let items = futures::stream::iter(peers.into_iter().map(|p| Ok(Id::from(&p))));
    stream::respond(items.boxed()).await
}

/// `DELETE /peers/{peer}`: removes a member; 204 as IPFS Cluster answers.
pub(super) async fn remove(State(api): State<Api>, Segment(peer): Segment) -> ApiResult<Response> {
    let peer = query::peer(&peer)?;
    api.peer_remove(peer).await?;
    Ok(json::no_content())
}

//! The Kubo RPC API (`/api/v0/...`): same paths, methods (POST only), parameter names, JSON field
//! names and error bodies as Kubo, so that `kubo-rpc-client`, `aioipfs` and curl scripts written for
//! Kubo work unchanged.

pub(crate) mod add;
mod args;
mod block;
mod config;
mod dag;
mod dag_json;
mod error;
mod files;
mod info;
mod metrics;
mod pin;
mod refs;
mod repo;
mod resolve;
mod routing;
mod stream;
mod swarm;
mod tar;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::node::Node;

/// The API's routes over a node.
pub(crate) fn router(node: Node) -> Router {
    Router::new()
        .route("/api/v0/add", post(add::add))
        .route("/api/v0/cat", post(files::cat))
        .route("/api/v0/get", post(files::get))
        .route("/api/v0/ls", post(files::ls))
        .route("/api/v0/block/put", post(block::put))
        .route("/api/v0/block/get", post(block::get))
        .route("/api/v0/block/stat", post(block::stat))
        .route("/api/v0/block/rm", post(block::rm))
        .route("/api/v0/dag/get", post(dag::get))
        .route("/api/v0/dag/put", post(dag::put))
        .route("/api/v0/dag/export", post(dag::export))
        .route("/api/v0/dag/import", post(dag::import))
        .route("/api/v0/dag/stat", post(dag::stat))
        .route("/api/v0/pin/add", post(pin::add))
        .route("/api/v0/pin/rm", post(pin::rm))
        .route("/api/v0/pin/ls", post(pin::ls))
        .route("/api/v0/pin/update", post(pin::update))
        .route("/api/v0/refs", post(refs::refs))
        .route("/api/v0/refs/local", post(refs::local))
        .route("/api/v0/repo/stat", post(repo::stat))
        .route("/api/v0/repo/gc", post(repo::gc))
        .route("/api/v0/swarm/connect", post(swarm::connect))
        .route("/api/v0/swarm/disconnect", post(swarm::disconnect))
        .route("/api/v0/swarm/peers", post(swarm::peers))
        .route("/api/v0/swarm/addrs", post(swarm::addrs))
        .route("/api/v0/swarm/addrs/listen", post(swarm::addrs_listen))
        .route("/api/v0/swarm/addrs/local", post(swarm::addrs_local))
        .route("/api/v0/routing/findprovs", post(routing::findprovs))
        .route("/api/v0/routing/provide", post(routing::provide))
        .route("/api/v0/dht/findprovs", post(routing::findprovs))
        .route("/api/v0/dht/provide", post(routing::provide))
        .route("/api/v0/bitswap/stat", post(swarm::bitswap_stat))
        .route("/api/v0/bitswap/wantlist", post(swarm::bitswap_wantlist))
        .route("/api/v0/bitswap/ledger", post(swarm::bitswap_ledger))
        .route("/api/v0/id", post(info::id))
        .route("/api/v0/version", post(info::version))
        .route("/api/v0/config", post(config::config))
        .route("/api/v0/config/show", post(config::show))
        .route("/debug/metrics/prometheus", get(metrics::prometheus))
        .fallback(unknown)
        // Uploads stream through the importer; their size is bounded by the disk, not by memory.
        .layer(DefaultBodyLimit::disable())
        // A bug must cost one request, not the connection's silence: answer it as Kubo would.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .with_state(node)
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an API handler panicked; this is a bug in tessera");
    error::ApiError::normal(
        "internal error in tessera (see the daemon log); the request was not completed",
    )
    .into_response()
}

async fn unknown(uri: Uri) -> Response {
    error::ApiError::not_found(format!(
        "unknown command: \"{}\"",
        uri.path().trim_start_matches("/api/v0/")
    ))
    .into_response()
}

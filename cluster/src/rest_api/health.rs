//! `/health` and `/monitor`: whether the peer answers, who is connected to whom, and the metrics
//! peers broadcast.

use axum::extract::State;
use axum::response::Response;

use super::Api;
use super::json::{self, ConnectGraphJson, MetricJson};
use super::query::Segment;

/// `GET /health`: 204 while the API answers at all, as IPFS Cluster's health check.
pub(super) async fn health() -> Response {
    json::no_content()
}

/// `GET /health/graph`: the connectivity graph, with peer names.
pub(super) async fn graph(State(api): State<Api>) -> Response {
    let (graph, peers) = futures::join!(api.health_graph(), api.peers());
    json::ok(&ConnectGraphJson::new(&graph, &peers))
}

/// `GET /health/alerts`: tessera's monitor raises no alerts through the API (yet), so always `[]`.
pub(super) async fn alerts() -> Response {
    json::ok(&Vec::<serde_json::Value>::new())
}

/// `GET /monitor/metrics`: the names of the metrics peers broadcast.
pub(super) async fn metric_names(State(api): State<Api>) -> Response {
    json::ok(&api.metric_names().await)
}

/// `GET /monitor/metrics/{name}`: the latest metric of that name from each peer.
pub(super) async fn metrics(State(api): State<Api>, Segment(name): Segment) -> Response {
    let metrics: Vec<MetricJson> = api
        .latest_metrics(&name)
        .await
        .iter()
        .map(MetricJson::from)
        .collect();
    json::ok(&metrics)
}

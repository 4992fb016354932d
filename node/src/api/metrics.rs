//! `GET /debug/metrics/prometheus`, where Kubo serves its metrics: blocks and bytes stored, Bitswap
//! traffic, connected peers, then whatever the layer above adds (the cluster's pin and consensus
//! figures).

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult};
use crate::node::Node;

pub(crate) async fn prometheus(State(node): State<Node>) -> ApiResult<Response> {
    let store = node.store().clone();
    let stat = tokio::task::spawn_blocking(move || store.stat())
        .await
        .map_err(ApiError::normal)?
        .map_err(ApiError::normal)?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "tessera_blockstore_blocks",
        "Blocks in the blockstore.",
        stat.blocks,
    );
    gauge(
        "tessera_blockstore_block_bytes",
        "Bytes of blocks in the blockstore.",
        stat.block_bytes,
    );
    gauge(
        "tessera_blockstore_disk_bytes",
        "Bytes the blockstore takes on disk.",
        stat.disk_bytes,
    );
    gauge(
        "tessera_blockstore_dead_bytes",
        "Bytes of deleted blocks waiting for compaction.",
        stat.dead_bytes,
    );
    if let Some(swarm) = node.swarm() {
        gauge(
            "tessera_swarm_connected_peers",
            "Peers connected to the swarm.",
            swarm.connected_peers() as u64,
        );
        if let Ok(s) = swarm.bitswap().stats().await {
            let mut counter = |name: &str, help: &str, value: u64| {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
                );
            };
            counter(
                "tessera_bitswap_blocks_received_total",
                "Wanted blocks received over Bitswap.",
                s.blocks_received,
            );
            counter(
                "tessera_bitswap_bytes_received_total",
                "Bytes of wanted blocks received over Bitswap.",
                s.data_received,
            );
            counter(
                "tessera_bitswap_blocks_sent_total",
                "Blocks sent over Bitswap.",
                s.blocks_sent,
            );
            counter(
                "tessera_bitswap_bytes_sent_total",
                "Bytes of blocks sent over Bitswap.",
                s.data_sent,
            );
            let _ = writeln!(
                out,
                "# HELP tessera_bitswap_wantlist_length Blocks this node is fetching.\n# TYPE tessera_bitswap_wantlist_length gauge\ntessera_bitswap_wantlist_length {}",
                s.wantlist.len()
            );
        }
    }
    if let Some(source) = node.metrics_source() {
        out.push_str(&source.render().await);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

//! `id` and `version`: who this node is.

use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use serde::Serialize;

use super::args::Args;
use super::error::ApiResult;
use super::stream::json;
use crate::node::Node;

/// The agent string peers and clients see.
pub(crate) const AGENT_VERSION: &str = concat!("tessera/", env!("CARGO_PKG_VERSION"));

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IdOutput {
    #[serde(rename = "ID")]
    id: String,
    public_key: String,
    addresses: Vec<String>,
    agent_version: &'static str,
    protocol_version: &'static str,
    protocols: Vec<String>,
}

pub(crate) async fn id(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    if let Some(other) = args.get("arg")
        && other != node.peer_id().to_string()
    {
        return Err(super::error::ApiError::normal(format!(
            "peer {other} is not known to this node; `id` of other peers needs the swarm"
        )));
    }
    let pid = node.peer_id();
    let addresses = node
        .listen_addrs()
        .into_iter()
        .map(|a| format!("{a}/p2p/{pid}"))
        .collect();
    Ok(json(&IdOutput {
        id: pid.to_string(),
        public_key: base64::engine::general_purpose::STANDARD
            .encode(node.public_key().encode_protobuf()),
        addresses,
        agent_version: AGENT_VERSION,
        protocol_version: "ipfs/0.1.0",
        protocols: node.protocols(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionOutput {
    version: &'static str,
    commit: &'static str,
    repo: &'static str,
    system: String,
    golang: &'static str,
}

pub(crate) async fn version() -> Response {
    json(&VersionOutput {
        version: env!("CARGO_PKG_VERSION"),
        commit: "",
        repo: "tessera-1",
        system: format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        golang: "none (tessera is written in Rust)",
    })
}

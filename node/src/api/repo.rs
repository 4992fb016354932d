//! `repo/stat` and `repo/gc`.

use axum::extract::State;
use axum::response::Response;
use futures::stream;
use serde::Serialize;

use super::args::Args;
use super::error::{ApiError, ApiResult};
use super::stream::{json, ndjson};
use crate::node::Node;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatOutput {
    repo_size: u64,
    storage_max: u64,
    num_objects: u64,
    repo_path: String,
    version: &'static str,
}

pub(crate) async fn stat(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let size_only = args.flag("size-only", false)?;
    let store = node.store().clone();
    let s = tokio::task::spawn_blocking(move || store.stat())
        .await
        .map_err(ApiError::normal)?
        .map_err(ApiError::normal)?;
    let out = StatOutput {
        repo_size: s.disk_bytes,
        storage_max: node.config().storage_max(),
        num_objects: if size_only { 0 } else { s.blocks },
        repo_path: if size_only {
            String::new()
        } else {
            node.root().display().to_string()
        },
        version: "tessera-repo@1",
    };
    Ok(json(&out))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GcItem {
    key: serde_json::Value,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

pub(crate) async fn gc(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let quiet = args.flag("quiet", false)?;
    let removed = node.collect_garbage().await.map_err(ApiError::normal)?;
    let items: Vec<Result<GcItem, ApiError>> = if quiet {
        Vec::new()
    } else {
        removed
            .into_iter()
            .map(|c| {
                Ok(GcItem {
                    key: serde_json::json!({"/": c.to_string()}),
                    error: String::new(),
                })
            })
            .collect()
    };
    Ok(ndjson(stream::iter(items)))
}

//! `config`, `config/show`: read and set dotted keys of the repo's config as `ipfs config` does.
//! Changes are written to the file at once and apply when the daemon next starts.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;

use super::args::Args;
use super::error::{ApiError, ApiResult};
use super::stream::json;
use crate::config::parse_value;
use crate::node::{ConfigChangeError, Node};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyValue {
    key: String,
    value: Value,
}

pub(crate) async fn config(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let positional = args.args();
    let key = *positional
        .first()
        .ok_or_else(|| ApiError::client("argument \"key\" is required"))?;
    match positional.get(1) {
        None => {
            let value = node.config_get(key).map_err(map_err)?;
            Ok(json(&KeyValue {
                key: key.into(),
                value: redact(key, value),
            }))
        }
        Some(raw) => {
            let value = parse_value(raw, args.flag("json", false)?, args.flag("bool", false)?)
                .map_err(ApiError::client)?;
            let node2 = node.clone();
            let key2 = key.to_string();
            let v2 = value.clone();
            tokio::task::spawn_blocking(move || node2.config_set(&key2, v2))
                .await
                .map_err(ApiError::normal)?
                .map_err(map_err)?;
            Ok(json(&KeyValue {
                key: key.into(),
                value,
            }))
        }
    }
}

fn map_err(e: ConfigChangeError) -> ApiError {
    match e {
        ConfigChangeError::Io(e) => ApiError::normal(e),
        other => ApiError::client(other),
    }
}

/// Kubo never shows the private key over the API.
fn redact(key: &str, value: Value) -> Value {
    if key == "Identity.PrivKey" {
        return Value::String("<redacted: read it from the config file>".into());
    }
    let mut value = value;
    if key == "Identity"
        && let Some(o) = value.as_object_mut()
    {
        o.remove("PrivKey");
    }
    value
}

pub(crate) async fn show(State(node): State<Node>) -> Response {
    let mut doc = node.config_doc();
    if let Some(id) = doc.get_mut("Identity").and_then(Value::as_object_mut) {
        id.remove("PrivKey");
    }
    json(&doc)
}

//! `block/put|get|stat|rm`: raw blocks, as Kubo's commands of the same names.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::stream;
use multihash_codetable::{Code, MultihashDigest};
use serde::Serialize;
use tessera_blockstore::{Block, PinMode};

use super::args::{Args, parse_cid};
use super::error::{ApiError, ApiResult};
use super::stream::{bytes as bytes_response, json, ndjson};
use crate::ipld::BlockSource;
use crate::node::Node;

/// Kubo refuses blocks over 1 MiB unless asked: bigger ones cannot cross Bitswap everywhere.
const SOFT_BLOCK_LIMIT: usize = 1 << 20;
/// Even with `allow-big-block`, Bitswap peers drop blocks over 2 MiB.
const HARD_BLOCK_LIMIT: usize = 2 << 20;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeySize {
    key: String,
    size: u64,
}

/// The multicodec code of a codec name as Kubo accepts it in `cid-codec` / `format`.
pub(crate) fn codec_code(name: &str) -> Option<u64> {
    Some(match name {
        "raw" => 0x55,
        "dag-pb" | "protobuf" => 0x70,
        "dag-cbor" | "cbor" => 0x71,
        "dag-json" => 0x0129,
        "json" => 0x0200,
        "libp2p-key" => 0x72,
        "git-raw" => 0x78,
        _ => return None,
    })
}

/// Reads the next file part of a multipart body, refusing more than `limit` bytes.
pub(crate) async fn read_part(
    multipart: &mut Multipart,
    limit: usize,
) -> ApiResult<Option<(Option<String>, Bytes)>> {
    let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    else {
        return Ok(None);
    };
    let name = field.file_name().map(str::to_string);
    let mut buf = BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::client(format!(
                "produced block is over {} bytes: big blocks can't be exchanged with other peers. \
                 consider using UnixFS for automatic chunking of bigger files, or pass --allow-big-block to override",
                limit
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some((name, buf.freeze())))
}

pub(crate) fn multipart(m: Result<Multipart, MultipartRejection>) -> ApiResult<Multipart> {
    m.map_err(|e| ApiError::client(format!("file argument 'data' is required: {e}")))
}

pub(crate) async fn put(
    State(node): State<Node>,
    args: Args,
    body: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut body = multipart(body)?;
    let format = args.get("format");
    let (codec, v0) = match (args.get("cid-codec"), format) {
        (Some(c), _) => (
            codec_code(c).ok_or_else(|| ApiError::client(format!("unknown cid-codec \"{c}\"")))?,
            false,
        ),
        (None, Some("v0")) => (0x70, true),
        (None, Some(f)) => (
            codec_code(f).ok_or_else(|| ApiError::client(format!("unknown format \"{f}\"")))?,
            false,
        ),
        (None, None) => (0x55, false),
    };
    match args.get("mhtype").unwrap_or("sha2-256") {
        "sha2-256" => {}
        other => {
            return Err(ApiError::client(format!(
                "unsupported mhtype \"{other}\": tessera hashes with sha2-256"
            )));
        }
    }
    let limit = if args.flag("allow-big-block", false)? {
        HARD_BLOCK_LIMIT
    } else {
        SOFT_BLOCK_LIMIT
    };
    let pin = args.flag("pin", false)?;
    let mut blocks = Vec::new();
    while let Some((_, data)) = read_part(&mut body, limit).await? {
        let mh = Code::Sha2_256.digest(&data);
        let cid = if v0 {
            Cid::new_v0(mh).map_err(ApiError::normal)?
        } else {
            Cid::new_v1(codec, mh)
        };
        blocks.push(Block::new_unchecked(cid, data));
    }
    if blocks.is_empty() {
        return Err(ApiError::client("file argument 'data' is required"));
    }
    let out: Vec<KeySize> = blocks
        .iter()
        .map(|b| KeySize {
            key: b.cid().to_string(),
            size: b.data().len() as u64,
        })
        .collect();
    store_blocks(&node, blocks, pin).await?;
    if out.len() == 1 {
        Ok(json(&out[0]))
    } else {
        Ok(ndjson(stream::iter(out.into_iter().map(Ok))))
    }
}

/// Stores a few blocks durably (and pins each, if asked) with GC held off, then tells peers.
pub(crate) async fn store_blocks(node: &Node, blocks: Vec<Block>, pin: bool) -> ApiResult<()> {
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    let store = node.store().clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let _guard = store.gc_guard();
        store.put_many(&blocks).map_err(|e| e.to_string())?;
        if pin {
            for b in &blocks {
                store
                    .pin(b.cid(), PinMode::Recursive)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
    .await
    .map_err(ApiError::normal)?
    .map_err(ApiError::normal)?;
    node.announce(cids);
    Ok(())
}

pub(crate) async fn get(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let cid = parse_cid(args.arg("cid")?)?;
    let data = node.dag().get(&cid).await.map_err(ApiError::normal)?;
    Ok(bytes_response(
        "text/plain",
        stream::once(async move { Ok(data) }),
    ))
}

pub(crate) async fn stat(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let cid = parse_cid(args.arg("cid")?)?;
    let data = node.dag().get(&cid).await.map_err(ApiError::normal)?;
    Ok(json(&KeySize {
        key: cid.to_string(),
        size: data.len() as u64,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RmOutput {
    hash: String,
    error: String,
}

pub(crate) async fn rm(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let force = args.flag("force", false)?;
    let quiet = args.flag("quiet", false)?;
    let cids: Vec<Cid> = args
        .args()
        .into_iter()
        .map(parse_cid)
        .collect::<Result<_, _>>()?;
    if cids.is_empty() {
        return Err(ApiError::client("argument \"cid\" is required"));
    }
    let pinned = super::pin::pinned_among(&node, &cids).await?;
    let store = node.store().clone();
    let results = tokio::task::spawn_blocking(move || {
        cids.into_iter()
            .map(|cid| {
                if let Some(reason) = pinned.get(&cid) {
                    return RmOutput {
                        hash: cid.to_string(),
                        error: format!("pinned: {reason}"),
                    };
                }
                match store.delete(&cid) {
                    Ok(true) => RmOutput {
                        hash: cid.to_string(),
                        error: String::new(),
                    },
                    Ok(false) if force => RmOutput {
                        hash: cid.to_string(),
                        error: String::new(),
                    },
                    Ok(false) => RmOutput {
                        hash: cid.to_string(),
                        error: "blockstore: block not found".into(),
                    },
                    Err(e) => RmOutput {
                        hash: cid.to_string(),
                        error: e.to_string(),
                    },
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::normal)?;
    let failed = results.iter().any(|r| !r.error.is_empty());
    let shown: Vec<_> = results
        .into_iter()
        .filter(|r| !quiet || !r.error.is_empty())
        .collect();
    let mut items: Vec<Result<RmOutput, ApiError>> = shown.into_iter().map(Ok).collect();
    if failed {
        items.push(Err(ApiError::normal("some blocks not removed")));
    }
    Ok(ndjson(stream::iter(items)))
}

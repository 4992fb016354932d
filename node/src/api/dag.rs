//! `dag/get|put|export|import|stat`.

use std::io::Read;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::response::Response;
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt, stream};
use multihash_codetable::{Code, MultihashDigest};
use serde::Serialize;
use tessera_blockstore::{Block, PinMode};
use tokio::sync::mpsc;

use super::args::Args;
use super::block::{codec_code, multipart, read_part, store_blocks};
use super::dag_json;
use super::error::{ApiError, ApiResult};
use super::pin::pin_complete;
use super::resolve::resolve;
use super::stream::CidLink;
use super::stream::{bytes as bytes_response, json, ndjson};
use crate::ipld::{BlockSource, CarReader, DEFAULT_READ_AHEAD, car, walk};
use crate::node::Node;

pub(crate) async fn get(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let cid = resolve(&node, args.arg("ref")?).await?;
    let out_codec = args.get("output-codec").unwrap_or("dag-json");
    let out = codec_code(out_codec)
        .ok_or_else(|| ApiError::client(format!("unknown output-codec \"{out_codec}\"")))?;
    let data = node.dag().get(&cid).await.map_err(ApiError::normal)?;
    let body = if out == cid.codec() && out != 0x70 {
        data.to_vec()
    } else {
        let ipld = dag_json::decode(&cid, &data).map_err(ApiError::normal)?;
        dag_json::encode(&ipld, out).map_err(ApiError::normal)?
    };
    Ok(bytes_response(
        "application/json",
        stream::once(async move { Ok(Bytes::from(body)) }),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutOutput {
    cid: CidLink,
}

pub(crate) async fn put(
    State(node): State<Node>,
    args: Args,
    body: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut body = multipart(body)?;
    let store_name = args.get("store-codec").unwrap_or("dag-cbor");
    let input_name = args.get("input-codec").unwrap_or("dag-json");
    let store_codec = codec_code(store_name)
        .ok_or_else(|| ApiError::client(format!("unknown store-codec \"{store_name}\"")))?;
    let input_codec = codec_code(input_name)
        .ok_or_else(|| ApiError::client(format!("unknown input-codec \"{input_name}\"")))?;
    if let Some(h) = args.get("hash").filter(|h| *h != "sha2-256") {
        return Err(ApiError::client(format!(
            "unsupported hash \"{h}\": tessera hashes with sha2-256"
        )));
    }
    let pin = args.flag("pin", false)?;
    let mut blocks = Vec::new();
    while let Some((_, input)) = read_part(&mut body, 2 << 20).await? {
        let ipld = dag_json::parse(&input, input_codec).map_err(ApiError::client)?;
        let data = dag_json::encode(&ipld, store_codec).map_err(ApiError::client)?;
        let cid = Cid::new_v1(store_codec, Code::Sha2_256.digest(&data));
        blocks.push(Block::new_unchecked(cid, Bytes::from(data)));
    }
    if blocks.is_empty() {
        return Err(ApiError::client("file argument 'object data' is required"));
    }
    let out: Vec<PutOutput> = blocks
        .iter()
        .map(|b| PutOutput {
            cid: CidLink {
                cid: b.cid().to_string(),
            },
        })
        .collect();
    store_blocks(&node, blocks, pin).await?;
    Ok(ndjson(stream::iter(out.into_iter().map(Ok))))
}

pub(crate) async fn export(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let root = resolve(&node, args.arg("root")?).await?;
    let blocks = walk(node.dag().clone(), root, DEFAULT_READ_AHEAD);
    let checked = super::files::first_checked(blocks).await?;
    let header = Bytes::from(car::header_bytes(&[root]));
    let body = stream::once(async move { Ok(header) }).chain(checked.flat_map(|b| {
        stream::iter(match b {
            Ok(b) => vec![
                Ok(Bytes::from(car::section_prefix(&b.cid, b.data.len()))),
                Ok(b.data),
            ],
            Err(e) => vec![Err(e)],
        })
    }));
    Ok(bytes_response("application/vnd.ipld.car", body))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RootOutput {
    cid: CidLink,
    pin_error_msg: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatsOutput {
    block_count: u64,
    block_bytes_count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
enum ImportLine {
    Root(RootOutput),
    Stats(StatsOutput),
}

/// A `Read` over chunks arriving on a channel: lets the synchronous CAR reader consume an upload.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Stores every block of one CAR (verified by the reader) in batches; returns its roots and counts.
fn import_car(node: &Node, rx: mpsc::Receiver<Bytes>) -> Result<(Vec<Cid>, u64, u64), String> {
    let mut reader = CarReader::new(ChannelReader {
        rx,
        current: Bytes::new(),
    })
    .map_err(|e| e.to_string())?;
    let roots = reader.roots().to_vec();
    let store = node.store();
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    while let Some(block) = reader.next_block().map_err(|e| e.to_string())? {
        count += 1;
        bytes += block.data().len() as u64;
        batch_bytes += block.data().len();
        batch.push(block);
        if batch_bytes >= 16 << 20 {
            store.put_many(&batch).map_err(|e| e.to_string())?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    store.put_many(&batch).map_err(|e| e.to_string())?;
    Ok((roots, count, bytes))
}

pub(crate) async fn import(
    State(node): State<Node>,
    args: Args,
    body: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut body = multipart(body)?;
    let pin_roots = args.flag("pin-roots", true)?;
    let stats = args.flag("stats", false)?;
    let mut roots = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    while let Some(mut field) = body
        .next_field()
        .await
        .map_err(|e| ApiError::client(format!("bad multipart body: {e}")))?
    {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let n2 = node.clone();
        let task = tokio::task::spawn_blocking(move || import_car(&n2, rx));
        let mut upload_error = None;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    upload_error = Some(format!("upload broke off: {e}"));
                    break;
                }
            }
        }
        drop(tx);
        let result = task.await.map_err(ApiError::normal)?;
        if let Some(e) = upload_error {
            return Err(ApiError::client(e));
        }
        let (r, c, b) = result
            .map_err(|e| ApiError::client(format!("invalid CAR: {e}; nothing was pinned")))?;
        roots.extend(r);
        count += c;
        bytes += b;
    }
    let mut lines = Vec::new();
    if pin_roots {
        roots.sort();
        roots.dedup();
        for root in roots {
            let msg = match fetch_local_dag(&node, root).await {
                Ok(cids) => match pin_complete(&node, root, cids, PinMode::Recursive).await {
                    Ok(()) => String::new(),
                    Err(e) => e.message,
                },
                Err(e) => format!("the DAG under this root is incomplete: {}", e.message),
            };
            lines.push(Ok(ImportLine::Root(RootOutput {
                cid: CidLink {
                    cid: root.to_string(),
                },
                pin_error_msg: msg,
            })));
        }
    }
    if stats {
        lines.push(Ok(ImportLine::Stats(StatsOutput {
            block_count: count,
            block_bytes_count: bytes,
        })));
    }
    Ok(ndjson(stream::iter(lines)))
}

/// Every CID of a DAG from local blocks only: an imported root must be complete without the network.
async fn fetch_local_dag(node: &Node, root: Cid) -> ApiResult<Vec<Cid>> {
    walk(
        crate::dag::DagService::local(node.store().clone()),
        root,
        DEFAULT_READ_AHEAD,
    )
    .map_ok(|b| b.cid)
    .try_collect()
    .await
    .map_err(ApiError::normal)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DagStat {
    size: u64,
    num_blocks: u64,
}

pub(crate) async fn stat(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let root = resolve(&node, args.arg("root")?).await?;
    let mut s = Box::pin(walk(node.dag().clone(), root, DEFAULT_READ_AHEAD));
    let (mut size, mut n) = (0u64, 0u64);
    while let Some(b) = s.next().await {
        let b = b.map_err(ApiError::normal)?;
        size += b.data.len() as u64;
        n += 1;
    }
    Ok(json(&DagStat {
        size,
        num_blocks: n,
    }))
}

//! `cat`, `get` (a tar stream, as Kubo sends it) and `ls`.

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use serde::Serialize;

use super::args::Args;
use super::error::{ApiError, ApiResult};
use super::resolve::resolve;
use super::stream::{bytes as bytes_response, json};
use super::tar::TarWriter;
use crate::node::Node;
use crate::unixfs::{self, EntryKind, TreeItem};

/// Waits for a stream's first item so that an error there becomes a proper HTTP error, not a
/// broken transfer after a 200.
pub(crate) async fn first_checked<S, T, E>(
    s: S,
) -> ApiResult<impl Stream<Item = Result<T, ApiError>> + Send>
where
    S: Stream<Item = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    // Fused: after an empty first poll, the chain below polls it once more.
    let mut s = Box::pin(s.map_err(ApiError::normal).fuse());
    let first = s.next().await;
    let head = match first {
        Some(Err(e)) => return Err(e),
        Some(Ok(v)) => Some(Ok(v)),
        None => None,
    };
    Ok(stream::iter(head).chain(s))
}

pub(crate) async fn cat(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let cid = resolve(&node, args.arg("ipfs-path")?).await?;
    let offset = args.number::<i64>("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::client("cannot specify negative offset"));
    }
    let length = match args.number::<i64>("length")? {
        Some(l) if l < 0 => return Err(ApiError::client("cannot specify negative length")),
        Some(l) => Some(l as u64),
        None => None,
    };
    let content = unixfs::cat(node.dag().clone(), cid, offset as u64, length);
    let checked = first_checked(content).await?;
    Ok(bytes_response("text/plain", checked))
}

pub(crate) async fn get(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let path = args.arg("ipfs-path")?.to_string();
    if args.flag("compress", false)? {
        return Err(ApiError::client(
            "compressed archives are not supported; omit --compress",
        ));
    }
    let cid = resolve(&node, &path).await?;
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("")
        .to_string();
    let name = if name.is_empty() || name == "ipfs" {
        cid.to_string()
    } else {
        name
    };
    let items = unixfs::get(node.dag().clone(), cid, &name);
    let items = first_checked(items).await?;
    let tar = tar_stream(items);
    Ok(bytes_response("application/x-tar", tar))
}

/// Turns a tree walk into tar bytes, streaming file content as it arrives.
fn tar_stream(
    items: impl Stream<Item = Result<TreeItem, ApiError>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, ApiError>> + Send + 'static {
    let mut tar = TarWriter::default();
    items
        .map(Some)
        .chain(stream::once(async { None }))
        .map(move |item| -> Vec<Result<Bytes, ApiError>> {
            match item {
                Some(Ok(TreeItem::Directory { path, .. })) => vec![Ok(tar.directory(&path))],
                Some(Ok(TreeItem::File { path, size, .. })) => vec![Ok(tar.file(&path, size))],
                Some(Ok(TreeItem::Data(b))) => vec![Ok(b)],
                Some(Ok(TreeItem::Symlink { path, target, .. })) => {
                    vec![Ok(tar.symlink(&path, &target))]
                }
                Some(Err(e)) => vec![Err(e)],
                None => vec![Ok(tar.finish())],
            }
        })
        .flat_map(stream::iter)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsLink {
    name: String,
    hash: String,
    size: u64,
    #[serde(rename = "Type")]
    kind: u8,
    target: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsObject {
    hash: String,
    links: Vec<LsLink>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LsOutput {
    objects: Vec<LsObject>,
}

/// UnixFS type numbers as `ipfs ls` reports them (unixfs.proto's DataType).
pub(crate) fn kind_number(k: EntryKind) -> u8 {
    match k {
        EntryKind::Directory => 1,
        EntryKind::File => 2,
        EntryKind::Symlink => 4,
    }
}

pub(crate) async fn ls(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let resolve_type = args.flag("resolve-type", true)?;
    let sizes = args.flag("size", true)?;
    let mut objects = Vec::new();
    for path in args.args() {
        let cid = resolve(&node, path).await?;
        let stat = unixfs::stat(node.dag(), cid)
            .await
            .map_err(ApiError::normal)?;
        let mut links = Vec::new();
        if stat.kind == EntryKind::Directory {
            let entries: Vec<_> = unixfs::ls(node.dag().clone(), cid)
                .try_collect()
                .await
                .map_err(ApiError::normal)?;
            let dag = node.dag().clone();
            let resolved: Vec<LsLink> = stream::iter(entries)
                .map(|e| {
                    let dag = dag.clone();
                    async move {
                        let (kind, size) = if resolve_type {
                            let s = unixfs::stat(&dag, e.cid).await.map_err(ApiError::normal)?;
                            (
                                kind_number(s.kind),
                                if sizes { s.file_size.unwrap_or(0) } else { 0 },
                            )
                        } else {
                            (0, 0)
                        };
                        Ok::<_, ApiError>(LsLink {
                            name: e.name,
                            hash: e.cid.to_string(),
                            size,
                            kind,
                            target: String::new(),
                        })
                    }
                })
                .buffered(16)
                .try_collect()
                .await?;
            links = resolved;
        }
        objects.push(LsObject {
            hash: path.to_string(),
            links,
        });
    }
    if objects.is_empty() {
        return Err(ApiError::client("argument \"ipfs-path\" is required"));
    }
    Ok(json(&LsOutput { objects }))
}

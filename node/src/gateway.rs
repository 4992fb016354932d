//! The HTTP gateway (`/ipfs/{cid}[/path]`): files and directory listings for browsers, and the
//! trustless response types (`application/vnd.ipld.raw`, `application/vnd.ipld.car`) for clients
//! that verify what they get, as the trustless gateway spec describes.
//!
//! Choices where the spec leaves room: CARs are version 1, depth-first, without duplicates
//! (`order=dfs; dups=n`), with the path's terminus as the single root; the blocks needed to verify
//! the path come first. Deserialized files honour a single `Range: bytes=a-b`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt};

use crate::dag::DagService;
use crate::ipld::{BlockSource, BlockSourceError, DEFAULT_READ_AHEAD, car, walk};
use crate::node::Node;
use crate::unixfs::{self, EntryKind, ExportError};

/// The gateway's routes over a node.
pub(crate) fn router(node: Node) -> Router {
    Router::new()
        .route("/ipfs/{*path}", get(serve).head(serve))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("a gateway handler panicked; this is a bug in tessera");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error in tessera (see the daemon log)".into(),
            )
        }))
        .with_state(node)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
    Deserialized,
}

fn format(
    query: &std::collections::HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Format, Box<Response>> {
    if let Some(f) = query.get("format") {
        return match f.as_str() {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car),
            other => Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                format!("unsupported format \"{other}\": use raw or car"),
            ))),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/vnd.ipld.raw") {
        Ok(Format::Raw)
    } else if accept.contains("application/vnd.ipld.car") {
        if accept.contains("version=2") && !accept.contains("version=1") {
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "only CAR version 1 is supported".into(),
            )));
        }
        Ok(Format::Car)
    } else {
        Ok(Format::Deserialized)
    }
}

fn plain(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

fn status_of(e: &BlockSourceError) -> StatusCode {
    match e {
        BlockSourceError::NotFound { .. } => StatusCode::NOT_FOUND,
        BlockSourceError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn export_status(e: &ExportError) -> StatusCode {
    match e {
        ExportError::Fetch(f) => status_of(f),
        ExportError::NoSuchEntry { .. } | ExportError::NotADirectory { .. } => {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A block source that remembers what it served: the blocks a path traversal needed.
#[derive(Clone)]
struct Recording {
    inner: DagService,
    seen: Arc<Mutex<Vec<Cid>>>,
}

impl BlockSource for Recording {
    async fn get(&self, cid: &Cid) -> Result<Bytes, BlockSourceError> {
        let b = self.inner.get(cid).await?;
        if let Ok(mut s) = self.seen.lock()
            && !s.contains(cid)
        {
            s.push(*cid);
        }
        Ok(b)
    }
}

async fn serve(
    State(node): State<Node>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let fmt = match format(&query, &headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let Some(first) = parts.next() else {
        return plain(StatusCode::BAD_REQUEST, "no CID in the path".into());
    };
    let root = match Cid::try_from(first) {
        Ok(c) => c,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid CID \"{first}\": {e}"),
            );
        }
    };
    let rest: Vec<&str> = parts.collect();
    let head = method == Method::HEAD;
    match fmt {
        Format::Raw => raw(&node, root, &rest, head).await,
        Format::Car => car_response(&node, root, &rest, &query, head).await,
        Format::Deserialized => deserialized(&node, root, &rest, &path, &headers, head).await,
    }
}

fn immutable_headers(
    b: axum::http::response::Builder,
    etag: String,
) -> axum::http::response::Builder {
    b.header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "public, max-age=29030400, immutable")
        .header("X-Content-Type-Options", "nosniff")
}

async fn raw(node: &Node, root: Cid, rest: &[&str], head: bool) -> Response {
    if !rest.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "raw block requests take a CID without a path".into(),
        );
    }
    let data = match node.dag().get(&root).await {
        Ok(d) => d,
        Err(e) => return plain(status_of(&e), e.to_string()),
    };
    let b = immutable_headers(Response::builder(), format!("\"{root}.raw\""))
        .header(header::CONTENT_TYPE, "application/vnd.ipld.raw")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{root}.bin\""),
        )
        .header(header::CONTENT_LENGTH, data.len());
    b.body(if head {
        Body::empty()
    } else {
        Body::from(data)
    })
    .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn car_response(
    node: &Node,
    root: Cid,
    rest: &[&str],
    query: &std::collections::HashMap<String, String>,
    head: bool,
) -> Response {
    let scope = query.get("dag-scope").map(String::as_str).unwrap_or("all");
    if !matches!(scope, "all" | "entity" | "block") {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("invalid dag-scope \"{scope}\": use all, entity or block"),
        );
    }
    // The root block must exist before we commit to 200.
    if let Err(e) = node.dag().get(&root).await {
        return plain(status_of(&e), e.to_string());
    }
    let rec = Recording {
        inner: node.dag().clone(),
        seen: Arc::new(Mutex::new(vec![root])),
    };
    let terminus = if rest.is_empty() {
        root
    } else {
        match unixfs::resolve_path(&rec, root, &rest.join("/")).await {
            Ok(c) => c,
            Err(e) => return plain(export_status(&e), e.to_string()),
        }
    };
    let path_blocks: Vec<Cid> = rec.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let builder = immutable_headers(
        Response::builder(),
        format!("\"{root}/{}.car.{scope}\"", rest.join("/")),
    )
    .header(
        header::CONTENT_TYPE,
        "application/vnd.ipld.car; version=1; order=dfs; dups=n",
    )
    .header(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{terminus}.car\""),
    );
    if head {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let dag = node.dag().clone();
    let header = Bytes::from(car::header_bytes(&[terminus]));
    let scope = scope.to_string();
    let body = async_stream::stream! {
        yield Ok::<Bytes, std::io::Error>(header);
        let mut sent = std::collections::HashSet::new();
        for c in &path_blocks {
            if *c == terminus { continue; }
            match dag.get(c).await {
                Ok(d) => { sent.insert(*c); yield Ok(Bytes::from(car::section_prefix(c, d.len()))); yield Ok(d); }
                Err(e) => { yield Err(std::io::Error::other(e.to_string())); return; }
            }
        }
        if scope == "block" {
            match dag.get(&terminus).await {
                Ok(d) => { if sent.insert(terminus) { yield Ok(Bytes::from(car::section_prefix(&terminus, d.len()))); yield Ok(d); } }
                Err(e) => yield Err(std::io::Error::other(e.to_string())),
            }
            return;
        }
        let directory = scope == "entity"
            && matches!(unixfs::stat(&dag, terminus).await, Ok(s) if s.kind == EntryKind::Directory);
        if directory {
            // A directory entity is its own blocks: the node, and its HAMT shards if sharded.
            let mut stack = vec![terminus];
            while let Some(c) = stack.pop() {
                let d = match dag.get(&c).await { Ok(d) => d, Err(e) => { yield Err(std::io::Error::other(e.to_string())); return; } };
                for l in shard_links(&c, &d).into_iter().rev() { stack.push(l); }
                if sent.insert(c) { yield Ok(Bytes::from(car::section_prefix(&c, d.len()))); yield Ok(d); }
            }
            return;
        }
        let mut blocks = Box::pin(walk(dag.clone(), terminus, DEFAULT_READ_AHEAD));
        while let Some(b) = blocks.next().await {
            let b = match b { Ok(b) => b, Err(e) => { yield Err(std::io::Error::other(e.to_string())); return; } };
            if sent.insert(b.cid) {
                yield Ok(Bytes::from(car::section_prefix(&b.cid, b.data.len())));
                yield Ok(b.data);
            }
        }
    };
    builder
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Links of a HAMT shard node that point at sub-shards (names of just the two hex digits of a
/// fanout-256 slot), not at entries.
fn shard_links(cid: &Cid, data: &Bytes) -> Vec<Cid> {
    let Ok(node) = crate::ipld::PbNode::decode(data) else {
        return Vec::new();
    };
    let Some(d) = node
        .data
        .as_ref()
        .and_then(|d| unixfs::Data::decode(d).ok())
    else {
        return Vec::new();
    };
    if d.kind != unixfs::DataType::HamtShard {
        return Vec::new();
    }
    let _ = cid;
    node.links
        .iter()
        .filter(|l| l.name.as_deref().is_some_and(|n| n.len() == 2))
        .map(|l| l.cid)
        .collect()
}

async fn deserialized(
    node: &Node,
    root: Cid,
    rest: &[&str],
    path: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let cid = if rest.is_empty() {
        root
    } else {
        match unixfs::resolve_path(node.dag(), root, &rest.join("/")).await {
            Ok(c) => c,
            Err(e) => return plain(export_status(&e), e.to_string()),
        }
    };
    let stat = match unixfs::stat(node.dag(), cid).await {
        Ok(s) => s,
        Err(e) => return plain(export_status(&e), e.to_string()),
    };
    match stat.kind {
        EntryKind::Directory => {
            if !path.ends_with('/') {
                let loc = format!("/ipfs/{path}/");
                return Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header(header::LOCATION, loc)
                    .body(Body::empty())
                    .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
            }
            if let Ok(index) = unixfs::lookup(node.dag(), cid, "index.html").await {
                let size = unixfs::stat(node.dag(), index)
                    .await
                    .ok()
                    .and_then(|s| s.file_size)
                    .unwrap_or(0);
                return file(node, index, size, "index.html", headers, head).await;
            }
            listing(node, cid, path, head).await
        }
        EntryKind::Symlink => plain(
            StatusCode::NOT_IMPLEMENTED,
            "symlinks are not followed by the gateway".into(),
        ),
        EntryKind::File => {
            let name = rest.last().copied().unwrap_or("");
            file(node, cid, stat.file_size.unwrap_or(0), name, headers, head).await
        }
    }
}

fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Parses a single `bytes=a-b` range against a file size.
fn range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, size.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.min(size.saturating_sub(1)),
        ),
    };
    if start >= size || start > end {
        return Some(Err(()));
    }
    Some(Ok((start, end)))
}

async fn file(
    node: &Node,
    cid: Cid,
    size: u64,
    name: &str,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let (status, offset, len) = match range(headers, size) {
        None => (StatusCode::OK, 0, size),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Some(Err(())) => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        }
    };
    let mut b = immutable_headers(Response::builder().status(status), format!("\"{cid}\""))
        .header(header::CONTENT_TYPE, content_type(name))
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(
            "X-Ipfs-Path",
            HeaderValue::from_str(&format!("/ipfs/{cid}")).unwrap_or(HeaderValue::from_static("")),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", offset, offset + len - 1),
        );
    }
    if head {
        return b
            .body(Body::empty())
            .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
    }
    let content =
        unixfs::cat(node.dag().clone(), cid, offset, Some(len)).map_err(std::io::Error::other);
    b.body(Body::from_stream(content))
        .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn listing(node: &Node, cid: Cid, path: &str, head: bool) -> Response {
    let entries: Result<Vec<_>, _> = unixfs::ls(node.dag().clone(), cid).try_collect().await;
    let entries = match entries {
        Ok(e) => e,
        Err(e) => return plain(export_status(&e), e.to_string()),
    };
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>/ipfs/{p}</title></head><body><h1>Index of /ipfs/{p}</h1><ul>",
        p = escape_html(path)
    );
    for e in &entries {
        let n = escape_html(&e.name);
        html.push_str(&format!(
            "<li><a href=\"{n}\">{n}</a> {} bytes <code>{}</code></li>",
            e.tsize, e.cid
        ));
    }
    html.push_str("</ul></body></html>");
    let b = Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::ETAG, format!("\"DirIndex-{cid}\""));
    b.body(if head {
        Body::empty()
    } else {
        Body::from(html)
    })
    .unwrap_or_else(|e| plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

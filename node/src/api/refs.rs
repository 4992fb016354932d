//! `refs` (links of blocks, recursively with `-r`, depth first as Kubo lists them) and `refs/local`.

use std::collections::HashSet;

use axum::extract::State;
use axum::response::Response;
use cid::Cid;
use futures::Stream;
use serde::Serialize;

use super::args::Args;
use super::error::{ApiError, ApiResult};
use super::resolve::resolve;
use super::stream::ndjson;
use crate::dag::DagService;
use crate::ipld::{BlockSource, links};
use crate::node::Node;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RefLine {
    #[serde(rename = "Ref")]
    reference: String,
    err: String,
}

struct Options {
    unique: bool,
    edges: bool,
    max_depth: i64,
    format: Option<String>,
}

pub(crate) async fn refs(State(node): State<Node>, args: Args) -> ApiResult<Response> {
    let mut roots = Vec::new();
    for a in args.args() {
        roots.push(resolve(&node, a).await?);
    }
    if roots.is_empty() {
        return Err(ApiError::client("argument \"ipfs-path\" is required"));
    }
    let recursive = args.flag("recursive", false)?;
    let opts = Options {
        unique: args.flag("unique", false)?,
        edges: args.flag("edges", false)?,
        max_depth: args
            .number::<i64>("max-depth")?
            .unwrap_or(if recursive { -1 } else { 1 }),
        format: args.get("format").map(str::to_string),
    };
    if opts.edges && opts.format.is_some() {
        return Err(ApiError::client(
            "using format argument with edges is not allowed",
        ));
    }
    Ok(ndjson(walk_refs(node.dag().clone(), roots, opts)))
}

struct Frame {
    parent: Cid,
    links: std::vec::IntoIter<Cid>,
    depth: i64,
}

/// Depth-first, pre-order: each link is listed, then its own links, before its next sibling.
fn walk_refs(
    dag: DagService,
    roots: Vec<Cid>,
    opts: Options,
) -> impl Stream<Item = Result<RefLine, ApiError>> {
    async_stream::stream! {
        let mut seen = HashSet::new();
        for root in roots {
            let mut stack: Vec<Frame> = Vec::new();
            match children(&dag, &root).await {
                Ok(l) => stack.push(Frame { parent: root, links: l.into_iter(), depth: 1 }),
                Err(e) => { yield Err(e); return; }
            }
            while let Some(frame) = stack.last_mut() {
                let Some(child) = frame.links.next() else { stack.pop(); continue; };
                let (parent, depth) = (frame.parent, frame.depth);
                if opts.unique && !seen.insert(child) {
                    continue;
                }
                yield Ok(RefLine { reference: render(&opts, &parent, &child), err: String::new() });
                if opts.max_depth < 0 || depth < opts.max_depth {
                    match children(&dag, &child).await {
                        Ok(l) if !l.is_empty() => stack.push(Frame { parent: child, links: l.into_iter(), depth: depth + 1 }),
                        Ok(_) => {}
                        Err(e) => { yield Err(e); return; }
                    }
                }
            }
        }
    }
}

async fn children(dag: &DagService, cid: &Cid) -> ApiResult<Vec<Cid>> {
    if cid.codec() == 0x55 {
        return Ok(Vec::new());
    }
    let data = dag.get(cid).await.map_err(ApiError::normal)?;
    links(cid, &data).map_err(ApiError::normal)
}

fn render(opts: &Options, src: &Cid, dst: &Cid) -> String {
    if opts.edges {
        return format!("{src} -> {dst}");
    }
    match &opts.format {
        Some(f) => f
            .replace("<src>", &src.to_string())
            .replace("<dst>", &dst.to_string())
            .replace("<linkname>", ""),
        None => dst.to_string(),
    }
}

pub(crate) async fn local(State(node): State<Node>) -> ApiResult<Response> {
    let store = node.store().clone();
    let lines = async_stream::stream! {
        let mut after: Option<Cid> = None;
        loop {
            let s = store.clone();
            let a = after;
            let page = tokio::task::spawn_blocking(move || s.list_page(a.as_ref(), 4096)).await;
            let page = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => { yield Err(ApiError::normal(e)); return; }
                Err(e) => { yield Err(ApiError::normal(e)); return; }
            };
            let Some(last) = page.last().copied() else { return };
            for c in page {
                yield Ok(RefLine { reference: c.to_string(), err: String::new() });
            }
            after = Some(last);
        }
    };
    Ok(ndjson(lines))
}

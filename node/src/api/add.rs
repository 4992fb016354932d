//! `add`: a multipart upload of files and directories, imported as `ipfs add` would, answered with
//! Kubo's NDJSON (`{"Name","Hash","Size"}` per entry, `{"Name","Bytes"}` progress).
//!
//! The answer starts streaming while the upload is still arriving. Events wait in a queue that the
//! response drains; it is not bounded by a count because a client that sends the whole body before
//! reading (most HTTP/1.1 clients) would otherwise deadlock the upload, but it holds one small event
//! per entry (progress events are coalesced), so it grows with the number of files, not their bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::response::Response;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::Notify;

use super::args::{Args, percent_decode};
use super::block::multipart;
use super::error::{ApiError, ApiResult};
use super::stream::ndjson;
use crate::adder::{self, AddEvent, AddInput, AddOptions, EventSink};
use crate::node::Node;
use crate::unixfs::ImportOptions;

#[derive(Default)]
struct Queue {
    items: Mutex<(VecDeque<AddEvent>, bool)>,
    ready: Notify,
}

/// The pipeline's end of the queue: there is exactly one, and dropping it (when the pipeline ends)
/// tells the response that no more events will come.
struct QueueSink(Arc<Queue>);

impl EventSink for QueueSink {
    fn send(&mut self, event: AddEvent) -> bool {
        let Ok(mut q) = self.0.items.lock() else {
            return false;
        };
        if let (AddEvent::Progress { name, .. }, Some(AddEvent::Progress { name: last, .. })) =
            (&event, q.0.back())
            && name == last
        {
            q.0.pop_back();
        }
        q.0.push_back(event);
        drop(q);
        self.0.ready.notify_one();
        true
    }
}

impl Drop for QueueSink {
    fn drop(&mut self) {
        if let Ok(mut q) = self.0.items.lock() {
            q.1 = true;
        }
        self.0.ready.notify_one();
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Added {
    name: String,
    hash: String,
    size: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Progress {
    name: String,
    bytes: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Line {
    Added(Added),
    Progress(Progress),
}

fn options(args: &Args) -> ApiResult<AddOptions> {
    let mut import = ImportOptions::default();
    if let Some(v) = args.number::<u64>("cid-version")? {
        import.cid_version = adder::parse_cid_version(v).map_err(ApiError::client)?;
    }
    if args.get("raw-leaves").is_some() {
        import.raw_leaves = Some(args.flag("raw-leaves", false)?);
    }
    if let Some(c) = args.get("chunker") {
        import.chunk_size = adder::parse_chunker(c).map_err(ApiError::client)?;
    }
    import.validate().map_err(ApiError::client)?;
    if args.flag("trickle", false)? {
        return Err(ApiError::client(
            "the trickle layout is not supported; tessera builds Kubo's balanced layout",
        ));
    }
    if let Some(h) = args.get("hash").filter(|h| *h != "sha2-256") {
        return Err(ApiError::client(format!(
            "unsupported hash function \"{h}\": tessera hashes with sha2-256"
        )));
    }
    if args.flag("inline", false)? {
        return Err(ApiError::client("inline CIDs are not supported"));
    }
    Ok(AddOptions {
        import,
        wrap: args.flag("wrap-with-directory", false)?,
        only_hash: args.flag("only-hash", false)?,
        pin: args.flag("pin", true)?,
        progress: args.flag("progress", false)?,
    })
}

pub(crate) async fn add(
    State(node): State<Node>,
    args: Args,
    body: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let body = multipart(body)?;
    let opts = options(&args)?;
    let quiet_progress = !opts.progress;
    let events = add_multipart(&node, body, opts).map_err(ApiError::normal)?;
    let lines = events.filter_map(move |event| {
        futures::future::ready(match event {
            AddEvent::Added { name, cid, size } => Some(Ok(Line::Added(Added {
                name,
                hash: cid.to_string(),
                size: size.to_string(),
            }))),
            AddEvent::Progress { .. } if quiet_progress => None,
            AddEvent::Progress { name, bytes } => {
                Some(Ok(Line::Progress(Progress { name, bytes })))
            }
            AddEvent::Failed(why) => Some(Err(ApiError::normal(why))),
        })
    });
    Ok(ndjson(lines))
}

/// Imports a multipart upload in Kubo's `add` form through the add pipeline and streams what it
/// reports, ending after the pipeline has stored and pinned everything (or after
/// [`AddEvent::Failed`]).
///
/// It is public so that the cluster's REST `/add`, which takes the same form, imports with the same
/// code and so gives the same CIDs as the Kubo API. The stream starts while the upload is still
/// arriving; dropping it makes the pipeline stop at its next event.
pub fn add_multipart(
    node: &Node,
    body: Multipart,
    options: AddOptions,
) -> std::io::Result<impl Stream<Item = AddEvent> + Send + 'static> {
    let rt = tokio::runtime::Handle::current();
    let n2 = node.clone();
    let rt2 = rt.clone();
    let announce = move |cids: Vec<cid::Cid>| {
        let _enter = rt.enter();
        n2.announce(cids);
    };
    let n3 = node.clone();
    let provide = move |roots: Vec<cid::Cid>| {
        let _enter = rt2.enter();
        n3.provide_roots(roots);
    };
    let sink = adder::StoreSink::new(node.store().clone(), &options, announce).on_pinned(provide);
    add_multipart_into(sink, body, options)
}

/// [`add_multipart`] into any [`BlockSink`](adder::BlockSink) rather than the node's blockstore:
/// the cluster's erasure-coded `/add` encodes the blocks as they are imported.
pub fn add_multipart_into(
    sink: impl adder::BlockSink,
    mut body: Multipart,
    options: AddOptions,
) -> std::io::Result<impl Stream<Item = AddEvent> + Send + 'static> {
    let queue = Arc::new(Queue::default());
    let input = adder::start_into(sink, options, QueueSink(queue.clone()))?;

    // Feed the pipeline from the upload on a task of its own, so the events can stream meanwhile.
    tokio::spawn(async move {
        let outcome = feed(&mut body, &input).await;
        if let Err(why) = outcome {
            let _ = input.send(AddInput::Abort(why)).await;
            // A pipeline that failed (the disk, or a holder of an erasure-coded add) leaves the
            // client uploading: read the rest to the end, so that the client gets to read the
            // answer that says why instead of a connection reset in the middle of its upload.
            drain(&mut body).await;
        }
    });

    Ok(futures::stream::unfold(queue, |queue| async move {
        loop {
            let next = {
                let Ok(mut q) = queue.items.lock() else {
                    return None;
                };
                match q.0.pop_front() {
                    Some(e) => Some(e),
                    None if q.1 => return None,
                    None => None,
                }
            };
            match next {
                Some(event) => return Some((event, queue)),
                None => queue.ready.notified().await,
            }
        }
    }))
}

/// Reads what is left of an upload and drops it; stops at its end or at its first error.
async fn drain(body: &mut Multipart) {
    while let Ok(Some(mut field)) = body.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Moves the multipart upload into the pipeline; a full pipeline makes the upload wait.
async fn feed(
    body: &mut Multipart,
    input: &tokio::sync::mpsc::Sender<AddInput>,
) -> Result<(), String> {
    let send = |msg: AddInput| async move {
        input
            .send(msg)
            .await
            .map_err(|_| "the import stopped".to_string())
    };
    while let Some(mut field) = body
        .next_field()
        .await
        .map_err(|e| format!("bad multipart upload: {e}"))?
    {
        let name = field.file_name().map(percent_decode).unwrap_or_default();
        let name = clean_path(&name)?;
        let kind = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        match kind.as_str() {
            "application/x-directory" => send(AddInput::Directory(name)).await?,
            "application/symlink" => {
                let target = field
                    .text()
                    .await
                    .map_err(|e| format!("bad multipart upload: {e}"))?;
                send(AddInput::Symlink(name, target)).await?;
            }
            _ => {
                send(AddInput::FileStart(name)).await?;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| format!("upload broke off: {e}"))?
                {
                    send(AddInput::Data(chunk)).await?;
                }
                send(AddInput::FileEnd).await?;
            }
        }
    }
    Ok(())
}

/// Normalises an uploaded path: no leading `/`, no `.` or `..` parts, no empty parts.
fn clean_path(name: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "invalid file name \"{name}\": \"..\" is not allowed"
                ));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/a//b/./c").unwrap(), "a/b/c");
        assert_eq!(clean_path("").unwrap(), "");
        assert!(clean_path("a/../b").is_err());
    }
}

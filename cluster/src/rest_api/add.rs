//! `POST /add`: a multipart upload in Kubo's `add` form, imported through the node's add pipeline
//! (so the CIDs are the ones Kubo and the Kubo API give), then each top-level entry pinned in the
//! cluster. Answers IPFS Cluster's `AddedOutput` lines: streamed (NDJSON and the `X-Stream-Error`
//! trailer) by default, or one JSON array once everything is pinned with `stream-channels=false`.

use std::collections::HashMap;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::response::Response;
use cid::Cid;
use futures::{Stream, StreamExt};
use libp2p::PeerId;
use tessera_node::adder::{self, AddEvent, AddOptions};
use tessera_node::unixfs::ImportOptions;

use super::Api;
use super::error::{ApiError, ApiResult};
use super::json::{self, AddedOutput};
use super::query::Params;
use super::stream::{self, Items};
use crate::api::{ClusterError, PinOptions};
use crate::ec::encode::STOPPED as ENCODER_STOPPED;
use crate::pin::Pin;

/// What `/add`'s query asks for.
struct AddRequest {
    import: AddOptions,
    pin: PinOptions,
    /// `no-pin`: store the blocks, pin nothing in the cluster.
    no_pin: bool,
    /// `stream-channels` (IPFS Cluster's default: true): NDJSON as it comes, else one array.
    stream_channels: bool,
}

/// Reads IPFS Cluster's `AddParamsFromQuery` parameters, refusing what tessera cannot do rather
/// than silently doing something else.
fn request(params: &Params) -> ApiResult<AddRequest> {
    let mut pin = params.pin_options()?;
    // As in IPFS Cluster: replacing a pin makes no sense for new content.
    pin.pin_update = None;
    match params.get("layout") {
        None | Some("balanced") => {}
        Some("trickle") => {
            return Err(ApiError::bad_request(
                "the trickle layout is not supported; tessera builds Kubo's balanced layout",
            ));
        }
        Some(_) => return Err(ApiError::bad_request("layout parameter is invalid")),
    }
    match params.get("format") {
        None | Some("unixfs") => {}
        Some("car") => {
            return Err(ApiError::bad_request(
                "format=car is not supported by tessera's /add; import the CAR with the node's \
                 dag/import and pin its root",
            ));
        }
        Some(_) => return Err(ApiError::bad_request("format parameter is invalid")),
    }
    if let Some(h) = params
        .get("hash")
        .filter(|h| !h.eq_ignore_ascii_case("sha2-256"))
    {
        return Err(ApiError::bad_request(format!(
            "unsupported hash function \"{h}\": tessera hashes with sha2-256"
        )));
    }
    if params.flag("shard")? == Some(true) {
        return Err(ApiError::bad_request(
            "sharded adds are not supported; erasure-code with data-shards and parity-shards",
        ));
    }
    if params.flag("nocopy")? == Some(true) {
        return Err(ApiError::bad_request(
            "nocopy is not supported; tessera stores the blocks it adds",
        ));
    }
    // Accepted for compatibility: blocks always land on this peer first, and `recursive` and
    // `hidden` describe the client's files, not the import.
    for ignored in ["local", "recursive", "hidden"] {
        params.flag(ignored)?;
    }

    let mut import = ImportOptions::default();
    if let Some(v) = params.int::<u64>("cid-version")? {
        import.cid_version = adder::parse_cid_version(v).map_err(ApiError::bad_request)?;
    }
    // Unset, it follows the CID version (raw leaves with CIDv1), as in IPFS Cluster and Kubo.
    import.raw_leaves = params.flag("raw-leaves")?;
    if let Some(c) = params.get("chunker") {
        import.chunk_size = adder::parse_chunker(c).map_err(ApiError::bad_request)?;
    }
    import
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let no_pin = params.flag("no-pin")?.unwrap_or(false);
    Ok(AddRequest {
        import: AddOptions {
            import,
            wrap: params.flag("wrap-with-directory")?.unwrap_or(false),
            only_hash: false,
            // The node keeps its own pin on what it imported, so that GC cannot sweep the blocks
            // before the cluster pin has placed them on their allocated peers.
            pin: !no_pin,
            progress: params.flag("progress")?.unwrap_or(false),
        },
        pin,
        no_pin,
        stream_channels: params.flag("stream-channels")?.unwrap_or(true),
    })
}

/// `POST /add`.
pub(super) async fn add(
    State(api): State<Api>,
    params: Params,
    body: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        ApiError::bad_request(format!(
            "request Content-Type isn't multipart/form-data: {e}"
        ))
    })?;
    let request = request(&params)?;
    let stream_channels = request.stream_channels;
    let start_failed =
        |e: std::io::Error| ApiError::internal(format!("cannot start the import: {e}"));
    let mut outputs = match request.pin.erasure {
        // Nothing to pin, nothing to erasure-code: an ordinary import.
        Some((k, m)) if !request.no_pin => {
            let (sink, done) = api.ec_add(k, m, request.pin.clone())?;
            let events = tessera_node::add_multipart_into(sink, body, request.import.clone())
                .map_err(start_failed)?;
            let wrap = request.import.wrap;
            outputs(
                events,
                wrap,
                Pinning::Encoded(AbortOnDrop(tokio::spawn(done))),
            )
        }
        _ => {
            let events = tessera_node::add_multipart(api.node(), body, request.import.clone())
                .map_err(start_failed)?;
            let wrap = request.import.wrap;
            outputs(events, wrap, Pinning::Each(api, Box::new(request)))
        }
    };
    if stream_channels {
        return Ok(stream::started(outputs));
    }
    let mut all = Vec::new();
    while let Some(output) = outputs.next().await {
        all.push(output?);
    }
    Ok(json::ok(&all))
}

/// Stops an erasure-coded add whose client went away (its answer stream was dropped): an add
/// that nobody waits for is not committed.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            tracing::warn!("stopped an erasure-coded add: its client went away");
            self.0.abort();
        }
    }
}

/// Whether the pipeline pins this entry: the wrapper with `wrap-with-directory`, otherwise each
/// entry at the top of the upload (a top-level name has no `/`; an unnamed file is named by its
/// CID).
fn is_top_level(name: &str, wrap: bool) -> bool {
    if wrap {
        name.is_empty()
    } else {
        !name.contains('/')
    }
}

/// How the top-level entries of an add become cluster pins.
enum Pinning {
    /// Each is pinned in the cluster once the import has stored everything (none with `no-pin`).
    Each(Api, Box<AddRequest>),
    /// The whole import is one erasure-coded pin, encoded and pushed while the import runs, and
    /// committed by this task once every holder acknowledged.
    Encoded(AbortOnDrop<Result<Pin, ClusterError>>),
}

impl Pinning {
    /// The error that ends an add whose import failed with `why`. An erasure-coded add's encoder
    /// ends soon after the import closed its input, and is waited for; when its side is what
    /// stopped, the import only knows that the pipeline stopped and the encoder says why.
    async fn failure(&mut self, why: String) -> ApiError {
        if let Pinning::Encoded(done) = self
            && let Ok(Err(e)) = (&mut done.0).await
            && why.contains(ENCODER_STOPPED)
        {
            return ApiError::internal(e.to_string());
        }
        ApiError::internal(why)
    }
}

/// The import's events as `AddedOutput`s. Entries below the top stream as they come; top-level
/// entries wait until the import has stored everything (or, erasure-coded, until the pin is
/// committed), then are reported with their allocations.
fn outputs(
    events: impl Stream<Item = AddEvent> + Send + 'static,
    wrap: bool,
    mut pinning: Pinning,
) -> Items<AddedOutput> {
    async_stream::stream! {
        let mut top: Vec<(String, Cid, u64)> = Vec::new();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                AddEvent::Progress { name, bytes } => yield Ok(AddedOutput::progress(name, bytes)),
                AddEvent::Added { name, cid, size } if is_top_level(&name, wrap) => {
                    top.push((name, cid, size));
                }
                AddEvent::Added { name, cid, size } => {
                    yield Ok(AddedOutput::added(name, &cid, size, &[]));
                }
                AddEvent::Failed(why) => {
                    yield Err(pinning.failure(why).await);
                    return;
                }
            }
        }
        let (api, request) = match pinning {
            Pinning::Each(api, request) => (api, request),
            Pinning::Encoded(mut done) => {
                match (&mut done.0).await {
                    Ok(Ok(pin)) => {
                        for (name, cid, size) in top {
                            yield Ok(AddedOutput::added(name, &cid, size, &pin.allocations));
                        }
                    }
                    Ok(Err(e)) => yield Err(ApiError::from(e)),
                    Err(e) => {
                        yield Err(ApiError::internal(format!("the erasure-coded add stopped: {e}")));
                    }
                }
                return;
            }
        };
        // The same content uploaded twice under two names is one pin.
        let mut pinned: HashMap<Cid, Vec<PeerId>> = HashMap::new();
        for (name, cid, size) in top {
            if request.no_pin {
                yield Ok(AddedOutput::added(name, &cid, size, &[]));
                continue;
            }
            if let Some(allocations) = pinned.get(&cid) {
                yield Ok(AddedOutput::added(name, &cid, size, allocations));
                continue;
            }
            match api.pin(cid, request.pin.clone()).await {
                Ok(pin) => {
                    yield Ok(AddedOutput::added(name, &cid, size, &pin.allocations));
                    pinned.insert(cid, pin.allocations);
                }
                Err(e) => {
                    yield Err(ApiError::from(e));
                    return;
                }
            }
        }
    }
    .boxed()
}

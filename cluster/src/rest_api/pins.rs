//! `/pins` and `/allocations`: the pinset (what the cluster agreed to keep, and where) and each
//! peer's status of it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;

use super::Api;
use super::error::{ApiError, ApiResult};
use super::json::{self, GlobalPinInfoJson, PinJson};
use super::query::{self, Params, Segment};
use super::stream;

/// How many statuses `GET /pins?cids=` asks for at once (IPFS Cluster asks for all in parallel;
/// a bound keeps a long list from flooding the peers).
const STATUS_CONCURRENCY: usize = 8;

/// IPFS Cluster's pin types as `/allocations?filter=` names them. tessera only has `pin`.
const PIN_TYPES: [&str; 5] = ["pin", "meta-pin", "clusterdag-pin", "shard-pin", "all"];

/// `POST /pins/{cid}`: pins with the query's options; answers the committed pin.
pub(super) async fn pin(
    State(api): State<Api>,
    Segment(cid): Segment,
    params: Params,
) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    let options = params.pin_options()?;
    let pin = api.pin(cid, options).await?;
    Ok(json::ok(&PinJson::from(&pin)))
}

/// `DELETE /pins/{cid}`: answers the pin that was removed.
pub(super) async fn unpin(State(api): State<Api>, Segment(cid): Segment) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    let pin = api.unpin(cid).await?;
    Ok(json::ok(&PinJson::from(&pin)))
}

/// `POST /pins/ipfs/{path}` (and `/ipld/`): a bare CID is pinned as `POST /pins/{cid}` would.
pub(super) async fn pin_ipfs_path(
    state: State<Api>,
    Segment(path): Segment,
    params: Params,
) -> ApiResult<Response> {
    let root = path_root(&path)?;
    pin(state, Segment(root), params).await
}

/// `DELETE /pins/ipfs/{path}` (and `/ipld/`).
pub(super) async fn unpin_ipfs_path(
    state: State<Api>,
    Segment(path): Segment,
) -> ApiResult<Response> {
    let root = path_root(&path)?;
    unpin(state, Segment(root)).await
}

/// `/pins/ipns/{name}`: tessera has no IPNS resolver.
pub(super) async fn ipns_path() -> ApiError {
    ApiError::bad_request(
        "error parsing path: tessera does not resolve IPNS names; pin the CID the name points to",
    )
}

/// The CID of a path that is only a CID (slashes around it allowed).
fn path_root(path: &str) -> ApiResult<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.contains('/') {
        return Err(ApiError::bad_request(format!(
            "error parsing path: tessera does not resolve paths below a CID (\"{trimmed}\"); \
             pin the CID the path points to"
        )));
    }
    Ok(trimmed.to_string())
}

/// `GET /allocations`: the pinset, streamed; `filter` selects IPFS Cluster pin types.
pub(super) async fn allocations(State(api): State<Api>, params: Params) -> ApiResult<Response> {
    let words = params.list("filter");
    if let Some(bad) = words.iter().find(|w| !PIN_TYPES.contains(w)) {
        return Err(ApiError::bad_request(format!(
            "invalid filter value: \"{bad}\" is not a pin type (use {})",
            PIN_TYPES.join(", ")
        )));
    }
    // Every tessera pin is of type `pin`: other types alone select nothing.
    let wanted = words.is_empty() || words.iter().any(|w| *w == "pin" || *w == "all");
    if !wanted {
        return Ok(stream::respond::<PinJson>(futures::stream::empty().boxed()).await);
    }
    let pins = api
        .allocations()
        .map(|r| r.map(|p| PinJson::from(&p)).map_err(ApiError::from));
    Ok(stream::respond(pins.boxed()).await)
}

/// `GET /allocations/{cid}`: one pin of the pinset; 404 when the CID is not in it.
pub(super) async fn allocation(
    State(api): State<Api>,
    Segment(cid): Segment,
) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    match api.allocation(cid).await? {
        Some(pin) => Ok(json::ok(&PinJson::from(&pin))),
        // IPFS Cluster's message for a CID outside the state, which its clients may match.
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
    }
}

/// `GET /pins/{cid}`: every peer's status of one CID (this peer's with `local=true`).
pub(super) async fn status(
    State(api): State<Api>,
    Segment(cid): Segment,
    params: Params,
) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    let local = params.local()?;
    let info = api.status(cid, local).await?;
    Ok(json::ok(&GlobalPinInfoJson::from(&info)))
}

/// `GET /pins`: statuses, streamed: of the listed `cids`, or of the whole pinset kept by `filter`.
pub(super) async fn status_all(State(api): State<Api>, params: Params) -> ApiResult<Response> {
    let local = params.local()?;
    let cids = params.list("cids");
    if !cids.is_empty() {
        // As in IPFS Cluster, `filter` does not apply to a list of CIDs.
        let cids = cids
            .into_iter()
            .map(query::cid)
            .collect::<ApiResult<Vec<_>>>()?;
        let infos = futures::stream::iter(cids)
            .map(move |cid| {
                let api = api.clone();
                async move {
                    api.status(cid, local)
                        .await
                        .map(|i| GlobalPinInfoJson::from(&i))
                        .map_err(ApiError::from)
                }
            })
            .buffered(STATUS_CONCURRENCY);
        return Ok(stream::respond(infos.boxed()).await);
    }
    let words = params.list("filter");
    if let Some(bad) = words
        .iter()
        .find(|w| **w != "sharded" && !api.known_status(w))
    {
        return Err(ApiError::bad_request(format!(
            "invalid filter value: \"{bad}\" is not a pin status (for example pinned, pinning, \
             pin_queued, pin_error, error, queued)"
        )));
    }
    // tessera shards nothing, so `sharded` matches nothing; alone it leaves nothing to match.
    let filter: Vec<String> = words
        .iter()
        .filter(|w| **w != "sharded")
        .map(|w| w.to_string())
        .collect();
    if filter.is_empty() && !words.is_empty() {
        return Ok(stream::respond::<GlobalPinInfoJson>(futures::stream::empty().boxed()).await);
    }
    let infos = api.status_all(filter, local).map(|r| {
        r.map(|i| GlobalPinInfoJson::from(&i))
            .map_err(ApiError::from)
    });
    Ok(stream::respond(infos.boxed()).await)
}

/// `POST /pins/{cid}/recover`: retries a pin in error; answers the new statuses.
pub(super) async fn recover(
    State(api): State<Api>,
    Segment(cid): Segment,
    params: Params,
) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    let local = params.local()?;
    let info = api.recover(cid, local).await?;
    Ok(json::ok(&GlobalPinInfoJson::from(&info)))
}

/// `POST /pins/{cid}/repair` (tessera's): moves the columns of peers that are down now to live
/// peers, without waiting for `Cluster.ReallocateAfter`, and has every holder rebuild what it
/// lacks; answers the new statuses.
pub(super) async fn repair(State(api): State<Api>, Segment(cid): Segment) -> ApiResult<Response> {
    let cid = query::cid(&cid)?;
    let info = api.repair(cid).await?;
    Ok(json::ok(&GlobalPinInfoJson::from(&info)))
}

/// `POST /pins/recover`: retries every pin in error, streaming the new statuses.
pub(super) async fn recover_all(State(api): State<Api>, params: Params) -> ApiResult<Response> {
    let local = params.local()?;
    let infos = api.recover_all(local).map(|r| {
        r.map(|i| GlobalPinInfoJson::from(&i))
            .map_err(ApiError::from)
    });
    Ok(stream::respond(infos.boxed()).await)
}

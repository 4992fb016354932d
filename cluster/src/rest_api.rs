//! The IPFS Cluster REST API (default `127.0.0.1:9094`) over [`ClusterApi`], with IPFS Cluster 1.1's
//! paths, query parameters, JSON field names, status codes and error bodies, so that
//! `ipfs-cluster-ctl`, the Go client and `@nftstorage/ipfs-cluster` work unchanged.
//!
//! The trait speaks the crate's own types; this layer only translates: query strings into
//! [`PinOptions`](crate::PinOptions), pins and statuses into IPFS Cluster's JSON (`json`), results
//! into responses. Streams (`/peers`, `/pins`, `/allocations`, `/pins/recover`, `/add`) are NDJSON
//! with the `X-Stream-Error` trailer, as 1.1 streams them (`stream`).
//!
//! # Where tessera differs from IPFS Cluster 1.1
//!
//! - **Erasure coding.** `POST /pins/{cid}` and `POST /add` take `data-shards` and `parity-shards`
//!   (both or neither). A Pin's JSON carries an extra `erasure` object (`data_shards`,
//!   `parity_shards`, `manifest`, `columns`, `interior`) on erasure-coded pins only; clients ignore
//!   fields they do not know.
//! - **Paths are not resolved.** `POST|DELETE /pins/ipfs/{path}` and `/pins/ipld/{path}` accept a
//!   bare CID only; a path below it, and any `/pins/ipns/...`, is a 400 that says to pin the CID.
//! - **Fields tessera does not keep** are answered with their empty value: `shard_size` 0,
//!   `origins` `[]` (the `origins` parameter is validated, then ignored), `pin_update` `null`,
//!   `reference` `null`, `cluster_peers_addresses` `[]`, `commit` `""`. `type` is always `"pin"`
//!   (tessera has no sharded DAGs). Lists and maps that Go may print as `null` are always `[]`/`{}`.
//! - **Times** are written in UTC (`...Z`); an unknown time is Go's zero time
//!   `0001-01-01T00:00:00Z`, as IPFS Cluster prints an unset `time.Time`.
//! - **Metrics**: `weight` and `partitionable` are derived from the metric's name as IPFS Cluster's
//!   informers set them (`freespace`: weight = value; `pins`, `pinqueue`: weight = -value; `tag:*`:
//!   partitionable).
//! - **Stricter input**: an unknown `mode`, an unknown `filter` word anywhere in the list (1.1 only
//!   refuses a filter where no word is known), or a malformed `user-allocations` peer id is a 400
//!   instead of being ignored. The filter word `sharded` is accepted and matches nothing.
//! - **`/add`**: `shard=true`, `format=car`, `layout=trickle`, `nocopy=true` and hash functions other
//!   than sha2-256 are refused with a 400. Each top-level entry of the upload is pinned (1.1 pins
//!   only the last one); their lines come last, once pinned, carrying the pin's allocations, while
//!   the entries below them stream as they are imported, without allocations.
//! - **The trailer reaches only clients that ask for it.** hyper's HTTP/1.1 server sends trailers
//!   only to requests carrying `TE: trailers` (Go's `net/http` sends them unasked), so a client that
//!   does not announce it sees a stream cut short by an error as a shorter stream. The JS client
//!   never reads trailers; the Go client over HTTP/1.1 does not announce them.
//! - **Errors of a stream before its first item** keep the error's own status (1.1 always answers
//!   500 there).
//! - **Not served**: `POST /peers` (peers join by bootstrapping), `POST /ipfs/gc`,
//!   `GET /health/bandwidth` and JWT tokens (`POST /token`, `Authorization: Bearer`) answer 501 or
//!   401; `GET /health/alerts` is always `[]`.

mod add;
mod auth;
mod error;
mod health;
mod json;
mod peers;
mod pins;
mod query;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::api::ClusterApi;
use error::ApiError;

/// The single user that may call the API when authentication is on (IPFS Cluster's
/// `basic_auth_credentials`). `/health` and CORS preflights stay open, as in IPFS Cluster, so that
/// load balancers can probe without credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name clients send.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    // Keeps the password out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The handlers' shared state: the cluster peer they translate for.
type Api = Arc<dyn ClusterApi>;

/// The REST API's routes over a cluster peer; with `auth`, every request but `GET /health` and
/// `OPTIONS` must carry those credentials.
pub fn router(api: Arc<dyn ClusterApi>, auth: Option<BasicAuth>) -> Router {
    let router = Router::new()
        .route("/id", get(peers::id))
        .route("/version", get(peers::version))
        .route("/peers", get(peers::list).post(unsupported))
        .route("/peers/{peer}", delete(peers::remove))
        .route("/add", post(add::add))
        .route("/allocations", get(pins::allocations))
        .route("/allocations/{cid}", get(pins::allocation))
        .route("/pins", get(pins::status_all))
        .route("/pins/recover", post(pins::recover_all))
        .route(
            "/pins/{cid}",
            get(pins::status).post(pins::pin).delete(pins::unpin),
        )
        .route("/pins/{cid}/recover", post(pins::recover))
        .route("/pins/{cid}/repair", post(pins::repair))
        .route(
            "/pins/ipfs/{*path}",
            post(pins::pin_ipfs_path).delete(pins::unpin_ipfs_path),
        )
        .route(
            "/pins/ipld/{*path}",
            post(pins::pin_ipfs_path).delete(pins::unpin_ipfs_path),
        )
        .route(
            "/pins/ipns/{*path}",
            post(pins::ipns_path).delete(pins::ipns_path),
        )
        .route("/ipfs/gc", post(unsupported))
        .route("/token", post(unsupported))
        .route("/health", get(health::health))
        .route("/health/graph", get(health::graph))
        .route("/health/alerts", get(health::alerts))
        .route("/health/bandwidth", get(unsupported))
        .route("/monitor/metrics", get(health::metric_names))
        .route("/monitor/metrics/{name}", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Uploads stream through the importer; their size is bounded by the disk, not by memory.
        .layer(DefaultBodyLimit::disable())
        // A bug must cost one request, not the connection's silence.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic));
    let router = match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require,
        )),
        None => router,
    };
    router.with_state(api)
}

/// IPFS Cluster's answer to an unknown path, except that a trailing slash is redirected (307, so
/// that a POST stays a POST) to the path without it, as IPFS Cluster does.
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') {
        let mut target = path.trim_end_matches('/').to_string();
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = uri.query() {
            target.push('?');
            target.push_str(q);
        }
        return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response();
    }
    ApiError::new(StatusCode::NOT_FOUND, "not found").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response()
}

/// IPFS Cluster endpoints that tessera does not serve: a 501 that says so, rather than a 404 that
/// would suggest a typo.
async fn unsupported(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{} is not supported by tessera's IPFS Cluster API",
            uri.path()
        ),
    )
    .into_response()
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a REST API handler panicked; this is a bug in tessera");
    ApiError::internal(
        "internal error in tessera (see the daemon log); the request was not completed",
    )
    .into_response()
}

//! NDJSON streams as IPFS Cluster 1.1 sends them: one JSON object per line, and the HTTP trailer
//! `X-Stream-Error` (declared up front in `Trailer`) set to `""` when the stream ended well, or to
//! the error that cut it short. A status code cannot change once the first line is out; the trailer
//! is how the Go client tells a complete answer from a truncated one. (hyper writes the trailers
//! frame only when the request announced `TE: trailers`; see the module above.)

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use http_body::Frame;
use http_body_util::StreamBody;
use serde::Serialize;

use super::error::{ApiError, json_line};

/// The trailer that carries a stream's outcome.
pub(super) const STREAM_ERROR: &str = "X-Stream-Error";

/// What a streaming handler produces.
pub(super) type Items<T> = BoxStream<'static, Result<T, ApiError>>;

/// IPFS Cluster's `StreamResponse`: the first item decides the status. An error before it is a
/// plain error answer; no item at all is a 204; otherwise a 200 whose lines follow.
pub(super) async fn respond<T: Serialize + Send + 'static>(mut items: Items<T>) -> Response {
    match items.next().await {
        Some(Err(e)) => {
            tracing::warn!(error = %e.message, "stream failed before its first item");
            e.into_response()
        }
        None => (
            StatusCode::NO_CONTENT,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::TRAILER, HeaderValue::from_static(STREAM_ERROR)),
            ],
        )
            .into_response(),
        Some(Ok(first)) => {
            let all = stream::once(futures::future::ready(Ok(first))).chain(items);
            streaming(all.boxed(), &[])
        }
    }
}

/// A 200 at once, whatever comes: `/add`'s stream, which IPFS Cluster starts before the import.
pub(super) fn started<T: Serialize + Send + 'static>(items: Items<T>) -> Response {
    // go-ipfs clients expect X-Chunked-Output on add; browsers must not cache it.
    streaming(
        items,
        &[
            ("X-Chunked-Output", "1"),
            (header::CACHE_CONTROL.as_str(), "no-cache"),
        ],
    )
}

fn streaming<T: Serialize + Send + 'static>(
    items: Items<T>,
    extra: &[(&'static str, &'static str)],
) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRAILER, STREAM_ERROR);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Body::new(StreamBody::new(frames(items))))
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
}

/// The lines, then exactly one trailers frame; nothing follows the trailers.
fn frames<T: Serialize + Send + 'static>(
    items: Items<T>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    stream::unfold(Some(items), |state| async move {
        let mut items = state?;
        let frame = match items.next().await {
            Some(Ok(item)) => {
                return Some((Ok(Frame::data(Bytes::from(json_line(&item)))), Some(items)));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e.message, "stream cut short");
                trailer(&e.message)
            }
            None => trailer(""),
        };
        Some((Ok(frame), None))
    })
}

fn trailer(message: &str) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    // A header value holds visible ASCII only: line breaks become spaces, other characters `?`.
    let flat: String = message
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    let value = HeaderValue::from_str(&flat)
        .unwrap_or_else(|_| HeaderValue::from_static("the stream failed (see the daemon log)"));
    trailers.insert(STREAM_ERROR, value);
    Frame::trailers(trailers)
}

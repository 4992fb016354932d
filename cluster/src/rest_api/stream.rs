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
use futures::{FutureExt, StreamExt, stream};
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

/// Lines that are ready at once go out in one data frame up to this size: a frame per line made
/// a listing of 100 000 pins 100 000 chunks, and a client thread wake-up for each.
const FRAME_BYTES: usize = 64 << 10;

/// Where [`frames`] is in its stream.
enum State<T> {
    Lines(Items<T>),
    /// The data is out; this trailers frame ends the body.
    Trailer(Frame<Bytes>),
    Done,
}

/// The lines, then exactly one trailers frame; nothing follows the trailers.
fn frames<T: Serialize + Send + 'static>(
    items: Items<T>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    stream::unfold(State::Lines(items), |state| async move {
        let mut items = match state {
            State::Lines(items) => items,
            State::Trailer(frame) => return Some((Ok(frame), State::Done)),
            State::Done => return None,
        };
        let mut buf = match items.next().await {
            Some(Ok(item)) => json_line(&item),
            Some(Err(e)) => return Some((Ok(cut_short(&e)), State::Done)),
            None => return Some((Ok(trailer("")), State::Done)),
        };
        // More lines that are ready now join this frame; the first that is not ready waits for
        // the next one.
        let mut next = None;
        while buf.len() < FRAME_BYTES {
            match items.next().now_or_never() {
                Some(Some(Ok(item))) => buf.extend_from_slice(&json_line(&item)),
                Some(Some(Err(e))) => {
                    next = Some(State::Trailer(cut_short(&e)));
                    break;
                }
                Some(None) => {
                    next = Some(State::Trailer(trailer("")));
                    break;
                }
                None => break,
            }
        }
        let next = next.unwrap_or(State::Lines(items));
        Some((Ok(Frame::data(Bytes::from(buf))), next))
    })
}

fn cut_short(e: &ApiError) -> Frame<Bytes> {
    tracing::warn!(error = %e.message, "stream cut short");
    trailer(&e.message)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn collect(items: Vec<Result<u32, ApiError>>) -> Vec<Frame<Bytes>> {
        frames(stream::iter(items).boxed())
            .map(|f| f.unwrap())
            .collect()
            .await
    }

    #[tokio::test]
    async fn ready_lines_share_a_frame_then_one_trailer_ends_the_body() {
        let got = collect(vec![Ok(1), Ok(2), Ok(3)]).await;
        assert_eq!(got.len(), 2, "one data frame, one trailers frame");
        assert_eq!(got[0].data_ref().unwrap().as_ref(), b"1\n2\n3\n");
        assert_eq!(got[1].trailers_ref().unwrap()[STREAM_ERROR], "");
    }

    #[tokio::test]
    async fn an_error_after_lines_becomes_the_trailer() {
        let got = collect(vec![Ok(1), Err(ApiError::internal("boom")), Ok(3)]).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data_ref().unwrap().as_ref(), b"1\n");
        assert_eq!(got[1].trailers_ref().unwrap()[STREAM_ERROR], "boom");
    }
}

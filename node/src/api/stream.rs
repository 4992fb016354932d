//! Streaming responses as Kubo sends them: NDJSON objects with `X-Chunked-Output`, raw bytes with
//! `X-Stream-Output`, and an error that happens after the headers are gone reported so that no client
//! takes half an answer for a whole one.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body::Frame;
use http_body_util::StreamBody;
use serde::Serialize;

use super::error::ApiError;

/// A CID as IPLD JSON writes a link: `{"/": "bafy..."}`.
#[derive(Serialize)]
pub(crate) struct CidLink {
    #[serde(rename = "/")]
    pub(crate) cid: String,
}

/// One JSON document followed by a newline, as Kubo answers non-streaming commands.
pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response()
        }
        Err(e) => ApiError::normal(format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A stream of JSON objects, one per line. An error mid-stream ends the stream with Kubo's error
/// object as the last line and the `X-Stream-Error` trailer.
pub(crate) fn ndjson<S, T>(items: S) -> Response
where
    S: Stream<Item = Result<T, ApiError>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let frames = items
        .map(|item| match item {
            Ok(v) => match serde_json::to_vec(&v) {
                Ok(mut line) => {
                    line.push(b'\n');
                    vec![Frame::data(Bytes::from(line))]
                }
                Err(e) => error_frames(&format!("cannot encode the answer: {e}")),
            },
            Err(e) => error_frames(&e.message),
        })
        .flat_map(futures::stream::iter)
        // Lines that are ready together go out as one frame: a frame per line made `refs -r` of a
        // large DAG a chunk, and a client wake-up, per line.
        .ready_chunks(READY_FRAMES)
        .flat_map(|frames| futures::stream::iter(merge_data(frames)))
        .scan(false, |ended, frame: Frame<Bytes>| {
            // Nothing may follow the trailers.
            if *ended {
                return futures::future::ready(None);
            }
            if frame.is_trailers() {
                *ended = true;
            }
            futures::future::ready(Some(Ok::<_, Infallible>(frame)))
        });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Chunked-Output", "1")
        .header(header::TRAILER, "X-Stream-Error")
        .body(Body::new(StreamBody::new(frames)))
        .unwrap_or_else(|e| ApiError::normal(e).into_response())
}

/// Most frames [`ndjson`] merges into one.
const READY_FRAMES: usize = 512;

/// Joins runs of data frames into one; trailers stay where they are.
fn merge_data(frames: Vec<Frame<Bytes>>) -> Vec<Frame<Bytes>> {
    let mut out = Vec::new();
    let mut data = Vec::new();
    for frame in frames {
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(other) => {
                if !data.is_empty() {
                    out.push(Frame::data(Bytes::from(std::mem::take(&mut data))));
                }
                out.push(other);
            }
        }
    }
    if !data.is_empty() {
        out.push(Frame::data(Bytes::from(data)));
    }
    out
}

fn error_frames(message: &str) -> Vec<Frame<Bytes>> {
    let body = serde_json::json!({"Message": message, "Code": 0, "Type": "error"});
    let mut line = serde_json::to_vec(&body).unwrap_or_default();
    line.push(b'\n');
    let mut trailers = axum::http::HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        trailers.insert("X-Stream-Error", v);
    }
    vec![Frame::data(Bytes::from(line)), Frame::trailers(trailers)]
}

/// Raw bytes (cat, block get, get's tar, dag export). An error mid-stream aborts the response
/// (no final chunk), so that the client sees a broken transfer rather than a short file.
pub(crate) fn bytes<S>(content_type: &'static str, chunks: S) -> Response
where
    S: Stream<Item = Result<Bytes, ApiError>> + Send + 'static,
{
    let body = chunks.map(|c| {
        c.map_err(|e| {
            tracing::warn!(error = %e.message, "stream aborted");
            std::io::Error::other(e.message)
        })
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header("X-Stream-Output", "1")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| ApiError::normal(e).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn runs_of_data_merge_and_trailers_stay_last() {
        let mut trailers = axum::http::HeaderMap::new();
        trailers.insert("X-Stream-Error", HeaderValue::from_static("boom"));
        let merged = merge_data(vec![
            Frame::data(Bytes::from_static(b"a\n")),
            Frame::data(Bytes::from_static(b"b\n")),
            Frame::trailers(trailers),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].data_ref().unwrap().as_ref(), b"a\nb\n");
        assert_eq!(
            merged[1].trailers_ref().unwrap()["X-Stream-Error"],
            HeaderValue::from_static("boom")
        );
        assert!(merge_data(Vec::new()).is_empty());
    }
}

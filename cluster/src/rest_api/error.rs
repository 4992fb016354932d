//! IPFS Cluster's error body, `{"code": N, "message": "..."}`, sent with status `N`: what its clients
//! parse to show an error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::ClusterError;

/// A request that failed, answered with IPFS Cluster's error body.
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

/// `api.Error` of IPFS Cluster.
#[derive(Serialize)]
struct Body<'a> {
    code: u16,
    message: &'a str,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// The caller's mistake: a bad CID, parameter or body.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Something failed here.
    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The body alone, for streams that fail before their first item and for `/add`'s array form.
    pub(super) fn body(&self) -> Vec<u8> {
        json_line(&Body {
            code: self.status.as_u16(),
            message: &self.message,
        })
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        // A status outside 400..=599 would make an error look like a success; treat it as ours.
        let status = StatusCode::from_u16(e.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response()
    }
}

/// JSON followed by a newline, as Go's `json.Encoder` writes every value IPFS Cluster sends.
pub(super) fn json_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Our wire types serialise infallibly (string keys, no non-finite floats); should that ever
    // change, the client gets an empty value it can still parse rather than a panic.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    line.push(b'\n');
    line
}

/// The handlers' result: a response or IPFS Cluster's error body.
pub(super) type ApiResult<T> = Result<T, ApiError>;

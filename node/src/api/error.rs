//! Kubo's error body: `{"Message": .., "Code": .., "Type": "error"}`, with Kubo's status codes, so that
//! clients written for Kubo show tessera's errors as they show Kubo's.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Kubo's error classes (go-ipfs-cmds `ErrorType`): what the caller did wrong, or what went wrong here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Code 0, HTTP 500: the command failed.
    Normal,
    /// Code 1, HTTP 400: the request is malformed (bad CID, missing argument, bad option).
    Client,
}

/// An error answered with Kubo's body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    /// Overrides the status derived from `kind` (404 for an unknown command, as Kubo answers).
    pub(crate) status: Option<StatusCode>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "Message")]
    message: &'a str,
    #[serde(rename = "Code")]
    code: u8,
    #[serde(rename = "Type")]
    kind: &'static str,
}

impl ApiError {
    /// A failure of the command itself.
    pub(crate) fn normal(message: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Normal,
            message: message.to_string(),
            status: None,
        }
    }

    /// A request the client must fix.
    pub(crate) fn client(message: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Client,
            message: message.to_string(),
            status: None,
        }
    }

    /// An unknown path under `/api/v0/`.
    pub(crate) fn not_found(message: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Client,
            message: message.to_string(),
            status: Some(StatusCode::NOT_FOUND),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status.unwrap_or(match self.kind {
            ErrorKind::Normal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Client => StatusCode::BAD_REQUEST,
        })
    }

    fn code(&self) -> u8 {
        match self.kind {
            ErrorKind::Normal => 0,
            ErrorKind::Client => 1,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            message: &self.message,
            code: self.code(),
            kind: "error",
        };
        (self.status(), Json(body)).into_response()
    }
}

/// The result of an API handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_400_with_code_1() {
        let e = ApiError::client("invalid path \"x\"");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.code(), 1);
        assert_eq!(
            ApiError::normal("boom").status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

//! HTTP Basic authentication as IPFS Cluster's REST API checks it: the same open paths, the same
//! `WWW-Authenticate` challenges and the same 401 messages, so clients report the same errors.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::BasicAuth;
use super::error::ApiError;

const BASIC_CHALLENGE: &str = r#"Basic realm="Restricted IPFS Cluster API""#;
const BEARER_CHALLENGE: &str = r#"Bearer realm="Restricted IPFS Cluster API""#;
const BEARER_INVALID: &str = r#"Bearer realm="Restricted IPFS Cluster API", error="invalid_token""#;

/// What the `Authorization` header holds.
enum Credentials {
    Basic { user: String, password: String },
    Bearer,
    Missing,
}

/// Lets the request through when it carries the configured credentials; `GET /health` and CORS
/// preflights pass without them, as in IPFS Cluster.
pub(super) async fn require(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method();
    if method == Method::OPTIONS || (method == Method::GET && request.uri().path() == "/health") {
        return next.run(request).await;
    }
    match credentials(request.headers().get(header::AUTHORIZATION)) {
        Credentials::Basic { user, password } => {
            if !user.is_empty()
                && !password.is_empty()
                && same(&user, &auth.user)
                && same(&password, &auth.password)
            {
                next.run(request).await
            } else {
                refuse("unauthorized: access denied", &[BASIC_CHALLENGE])
            }
        }
        // tessera issues no JWT tokens, so no token can be valid.
        Credentials::Bearer => refuse("unauthorized: invalid token", &[BEARER_INVALID]),
        Credentials::Missing => refuse(
            "unauthorized: no auth provided",
            &[BEARER_CHALLENGE, BASIC_CHALLENGE],
        ),
    }
}

fn credentials(value: Option<&HeaderValue>) -> Credentials {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return Credentials::Missing;
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Credentials::Missing;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer;
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Missing;
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) => Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        },
        // Undecodable: Go's `BasicAuth()` reports no credentials at all.
        None => Credentials::Missing,
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell an attacker
/// how much of a guess was right.
fn same(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

fn refuse(message: &str, challenges: &[&'static str]) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    for c in challenges {
        response
            .headers_mut()
            .append(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    response
}

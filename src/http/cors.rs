//! CORS, as browsers sending beacons need it.
//!
//! A preflight carries no credentials, so it cannot name the token whose `allowed_origins`
//! apply: inlet answers every preflight for its ingest routes (unless the token is in the query
//! string and refuses the origin), and enforces `allowed_origins` on the actual request, whose
//! 403 then lacks `Access-Control-Allow-Origin`, so the browser refuses it too.
//! `navigator.sendBeacon` with a string body is a simple `text/plain` request: no preflight.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::authenticate::{presented_secret, request_origin};
use super::reply::OriginRefused;
use crate::error::ApiError;
use crate::state::AppState;

/// Methods browsers may use on the ingest routes.
const ALLOW_METHODS: &str = "POST, GET, OPTIONS";
/// Request headers browsers may send (the second line: the keys of the error trackers' SDKs;
/// the last: what analytics.js adds when it sends a call again).
const ALLOW_HEADERS: &str = "authorization, content-type, content-encoding, x-inlet-token, \
    x-sentry-auth, x-rollbar-access-token, x-api-key, \
    x-retry-count";
/// Headers a page's script may read from inlet's answers (the last line: the rate limit
/// signals the error trackers' browser SDKs obey).
const EXPOSE_HEADERS: &str = "retry-after, \
    x-sentry-rate-limits, x-rate-limit-remaining, x-rate-limit-remaining-seconds";
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE_SECS: u32 = 86_400;

/// Answers `OPTIONS` on the ingest routes.
pub async fn preflight(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if let Some(token) = presented_secret(&parts).and_then(|s| state.tokens.lookup(&s)) {
        if !token.allows_origin(request_origin(&parts.headers).as_deref()) {
            return ApiError::OriginNotAllowed.into_response();
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    response
}

/// Adds `Access-Control-Allow-Origin` (the request's own origin) to every answer of `inner`
/// that was not refused for its origin.
pub async fn allow_origin<F: std::future::Future<Output = Response>>(
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = inner(request).await;
    let refused = response.extensions().get::<OriginRefused>().is_some();
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let (Some(origin), false) = (origin, refused) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    response
}

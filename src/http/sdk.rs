//! What the SDK endpoints' handlers share: reading a key from a header, reading the body,
//! handing the translated reports to the pipeline, and answering an error in the SDK's own
//! shape while keeping inlet's status, `Retry-After` and stable code.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use axum::extract::MatchedPath;
use axum::http::request::Parts;

use crate::lane::Lane;

use super::authenticate::{request_origin, Authenticated};
use super::body::read_decoded;
use crate::error::{ApiError, Refusal};
use crate::event::Source;
use crate::pipeline::{off_the_runtime_if, Answer, Batch, BLOCKING_PARSE_BYTES};
pub use crate::sdk::count_items;
use crate::sdk::report::Report;
use crate::sdk::{Translated, Untranslated};
use crate::state::AppState;

/// Resolves an SDK's key to a token (wherever the SDK sent it) and admits the request for
/// events of `kind` from its page: the checks every endpoint makes before reading a body.
pub fn authorize(
    state: &AppState,
    parts: &Parts,
    kind: Lane,
    key: Option<String>,
) -> Result<Authenticated, ApiError> {
    let auth = Authenticated::resolve(state, parts, key)?;
    let origin = request_origin(&parts.headers);
    state.pipeline.admit(&auth.token, kind, origin.as_deref())?;
    Ok(auth)
}

/// Whether a decoded body is large enough to be read and translated off the runtime.
pub fn is_large(body: &Bytes) -> bool {
    body.len() >= BLOCKING_PARSE_BYTES
}

/// Runs `work` (reading or translating a body's messages) in place, or on the blocking pool
/// when the body was `large` (see [`is_large`]), as the native endpoints split theirs.
pub async fn off_the_runtime<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    off_the_runtime_if(large, "translated", work).await?
}

/// A header's value, trimmed, when it is there and not empty.
pub fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Reads and decodes a request's body within the caps of `kind`, its size recorded by the
/// request's matched route.
pub async fn read_body(
    state: &AppState,
    kind: Lane,
    parts: &Parts,
    body: Body,
) -> Result<Bytes, ApiError> {
    let config = &state.config;
    let sent_bytes = super::edge::body_bytes(parts.extensions.get::<MatchedPath>());
    read_decoded(
        &parts.headers,
        body,
        config.limits(kind),
        config,
        sent_bytes,
    )
    .await
}

/// 413 `event_too_large` when the report at `index`, `size` bytes as the SDK wrote it, is over
/// the occurrence cap of one event, as it would be on `/v1/occurrences`: checked before the
/// report is parsed, so a large one costs no more than its bytes.
pub fn check_event_size(state: &AppState, index: usize, size: usize) -> Result<(), ApiError> {
    let limit = state.config.limits(Lane::OCCURRENCE).max_event;
    if size > limit {
        return Err(ApiError::EventTooLarge { index, size, limit });
    }
    Ok(())
}

/// Hands an SDK request's reports to the pipeline as occurrences of `source` (see [`ingest`]).
pub async fn ingest_reports(
    state: &AppState,
    auth: &Authenticated,
    headers: &HeaderMap,
    source: Source,
    reports: Vec<Report>,
) -> Result<Answer, ApiError> {
    let events = reports.into_iter().map(|report| report.event).collect();
    ingest(state, auth, headers, Lane::OCCURRENCE, source, events).await
}

/// Hands an SDK request's translated events to the pipeline as events of `kind` from `source`.
///
/// SDKs have no answer for "some accepted": an event that was valid but not delivered makes
/// the whole request a 503 (with `Retry-After`), so the SDK sends it again, and the events
/// already accepted are deduplicated downstream by their ids. Events refused as invalid are
/// not worth a retry: they are answered as their SDK's success when another was accepted.
pub async fn ingest(
    state: &AppState,
    auth: &Authenticated,
    headers: &HeaderMap,
    kind: Lane,
    source: Source,
    events: Vec<Result<Translated, Untranslated>>,
) -> Result<Answer, ApiError> {
    if events.len() > state.config.max_events_per_request {
        return Err(ApiError::TooManyEvents {
            limit: state.config.max_events_per_request,
        });
    }
    let batch = Batch::translated(kind, source, events);
    let answer = state
        .pipeline
        .ingest(&auth.token, auth.client(headers), batch)
        .await?;
    let undelivered = answer.rejected.iter().find_map(|r| match r.refusal {
        Refusal::Undelivered(failure) if r.refusal.is_retriable() => Some(failure),
        _ => None,
    });
    match undelivered {
        Some(failure) => Err(ApiError::Unavailable(failure)),
        None => Ok(answer),
    }
}

/// `error` as inlet would answer it (status, `Retry-After`, CORS marks, logging), with the
/// body `shape` gives from the error, its stable code and its message. For `invalid_events`,
/// the code and message are the first refused event's, which say what is wrong with it.
pub fn error_answer(
    error: ApiError,
    shape: impl FnOnce(&ApiError, &str, &str) -> Value,
) -> Response {
    let (code, message) = match &error {
        ApiError::AllInvalid(rejected) if !rejected.is_empty() => (
            rejected[0].refusal.code(),
            rejected[0].refusal.message().to_owned(),
        ),
        other => (other.code(), other.to_string()),
    };
    let body = shape(&error, code, &message).to_string();
    let (mut parts, _) = error.into_response().into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The seconds of a rate limit's `Retry-After`, when `error` is a 429.
pub fn rate_limited_secs(error: &ApiError) -> Option<u64> {
    (error.status() == StatusCode::TOO_MANY_REQUESTS)
        .then(|| error.retry_after_secs())
        .flatten()
}

/// Sets a header whose value inlet writes itself (a number, a fixed text).
pub fn set_header(response: &mut Response, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

/// The answer an SDK takes as success: `status` with the JSON `body`.
pub fn success(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

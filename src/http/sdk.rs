//! What the SDK protocols share: reading a key from a header, the size of one report, their
//! reports as a batch, and answering an error in the SDK's own shape while keeping inlet's
//! status, `Retry-After` and stable code.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::batch::Batch;
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::sdk::report::Report;

/// A header's value, trimmed, when it is there and not empty.
pub fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// 413 `event_too_large` when the report (or item) at `index`, `size` bytes as the SDK wrote
/// it, is over `limit`: the cap of one event, as it would be on `/v1/occurrences`
/// (`Limits::lane`), or of one item (`Limits::max_item`). Checked before the report is parsed,
/// so a large one costs no more than its bytes.
pub fn check_size(limit: usize, index: usize, size: usize) -> Result<(), ApiError> {
    if size > limit {
        return Err(ApiError::EventTooLarge { index, size, limit });
    }
    Ok(())
}

/// An SDK request's reports as a batch of occurrences from `source`.
pub fn reports(source: Source, reports: Vec<Report>) -> Batch {
    let events = reports.into_iter().map(|report| report.event).collect();
    Batch::translated(Lane::OCCURRENCE, source, events)
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

//! The pipeline's answers and errors as HTTP responses: the one place a status, a body and a
//! `Retry-After` are chosen for them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::config::Delivery;
use crate::error::{ApiError, Rejection};
use crate::pipeline::Answer;

/// Marks a response refused for its `Origin`, so the CORS layer leaves out
/// `Access-Control-Allow-Origin` and the browser's own check refuses it too.
#[derive(Clone, Copy, Debug)]
pub struct OriginRefused;

/// The JSON body of an answer about events: `{"accepted": N, "rejected": [...]}`.
#[derive(Serialize)]
struct Accounting<'a> {
    accepted: usize,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

impl IntoResponse for Answer {
    /// 200 (202 under `enqueue` delivery) when every event was accepted, 207 naming the
    /// others when some were not.
    fn into_response(self) -> Response {
        let status = match (self.rejected.is_empty(), self.delivery) {
            (false, _) => StatusCode::MULTI_STATUS,
            (true, Delivery::Ack) => StatusCode::OK,
            (true, Delivery::Enqueue | Delivery::Spool) => StatusCode::ACCEPTED,
        };
        let body = Accounting {
            accepted: self.accepted,
            rejected: &self.rejected,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// `{"error": {"code", "message"}}` with the error's status (the 207-shaped body for
    /// `invalid_events`), `Retry-After` where a retry may succeed; logged at debug for a client
    /// error, at error for a 5xx.
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code, error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), code, error = %self, "request rejected");
        }
        let mut response = match &self {
            ApiError::AllInvalid(rejected) => (
                status,
                Json(Accounting {
                    accepted: 0,
                    rejected,
                }),
            )
                .into_response(),
            _ => {
                let body = serde_json::json!({
                    "error": { "code": code, "message": self.to_string() }
                });
                (status, Json(body)).into_response()
            }
        };
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::OriginNotAllowed) {
            response.extensions_mut().insert(OriginRefused);
        }
        response
    }
}

//! The request path's one error type, mapped to HTTP once.
//!
//! Every failure a client can cause or observe becomes an [`ApiError`] with a status and a
//! stable, machine-readable `code` (part of the public contract: clients branch on it). Client
//! errors are logged at debug, 5xx at error; no client input produces a 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A request-level failure: nothing in the request was accepted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token in `Authorization`, `X-Inlet-Token` or `?token=`.
    #[error("missing token: send `Authorization: Bearer <token>`, `X-Inlet-Token: <token>` or `?token=<token>`")]
    MissingToken,
    /// The token is not in the registry.
    #[error("unknown token")]
    UnknownToken,
    /// The token may not send this kind of event.
    #[error("token `{token_id}` may not send {kind}s")]
    KindNotAllowed {
        token_id: String,
        kind: &'static str,
    },
    /// The request's `Origin` is not in the token's `allowed_origins`.
    #[error("origin not allowed for this token")]
    OriginNotAllowed,
    /// The body is not something inlet can parse at all.
    #[error("{0}")]
    MalformedBody(String),
    /// The compressed body could not be decoded.
    #[error("body could not be decoded as {encoding}: {detail}")]
    MalformedEncoding {
        encoding: &'static str,
        detail: String,
    },
    /// This client address failed to authenticate too often.
    #[error("too many failed authentications from this address")]
    TooManyAuthFailures { retry_after_secs: u64 },
    /// The body did not arrive in time.
    #[error("the request body arrived too slowly")]
    BodyTimeout,
    /// Too many requests in flight on this replica.
    #[error("inlet is at its limit of concurrent requests; retry later")]
    Overloaded,
    /// The body holds no event.
    #[error("the body holds no event")]
    NoEvents,
    /// The body as sent is over the endpoint's cap.
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The decoded body is over the endpoint's cap.
    #[error("decoded body larger than {limit} bytes")]
    DecodedTooLarge { limit: usize },
    /// One event is over the per-event cap.
    #[error("event {index} is {size} bytes, over the limit of {limit}")]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    /// More events than a request may carry.
    #[error("more than {limit} events in one request")]
    TooManyEvents { limit: usize },
    /// More events than the token's burst: this request can never pass the rate limit.
    #[error("{count} events in one request, over this token's burst of {burst}: split the batch")]
    BatchExceedsBurst { count: usize, burst: u32 },
    /// `Content-Type` is not one inlet accepts.
    #[error(
        "unsupported media type `{0}`: use application/json, application/x-ndjson or text/plain"
    )]
    UnsupportedMediaType(String),
    /// `Content-Encoding` is not one inlet decodes.
    #[error("unsupported content encoding `{0}`: use gzip, deflate, br or zstd")]
    UnsupportedEncoding(String),
    /// The token's rate limit is exhausted.
    #[error("rate limit exceeded for this token")]
    RateLimited { retry_after_secs: u64 },
    /// inlet cannot take events now; the client should retry after `retry_after_secs`.
    #[error("{reason}")]
    Unavailable {
        code: &'static str,
        reason: String,
        retry_after_secs: u64,
    },
    /// The broker refused an event as too large.
    #[error("event too large for the broker")]
    RejectedTooLarge,
    /// Every event of the request is invalid; the body lists why, as a 207 would.
    #[error("every event is invalid")]
    AllInvalid(serde_json::Value),
    /// No such route.
    #[error("no such endpoint")]
    NotFound,
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingToken | UnknownToken => StatusCode::UNAUTHORIZED,
            KindNotAllowed { .. } | OriginNotAllowed => StatusCode::FORBIDDEN,
            MalformedBody(_) | MalformedEncoding { .. } | NoEvents | AllInvalid(_) => {
                StatusCode::BAD_REQUEST
            }
            BodyTooLarge { .. }
            | DecodedTooLarge { .. }
            | EventTooLarge { .. }
            | TooManyEvents { .. }
            | BatchExceedsBurst { .. }
            | RejectedTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) | UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } | TooManyAuthFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable, machine-readable code of this error (public contract).
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingToken => "missing_token",
            UnknownToken => "unknown_token",
            KindNotAllowed { .. } => "kind_not_allowed",
            OriginNotAllowed => "origin_not_allowed",
            MalformedBody(_) => "malformed_body",
            MalformedEncoding { .. } => "malformed_encoding",
            NoEvents => "no_events",
            AllInvalid(_) => "invalid_events",
            BodyTooLarge { .. } => "body_too_large",
            DecodedTooLarge { .. } => "decoded_body_too_large",
            EventTooLarge { .. } | RejectedTooLarge => "event_too_large",
            TooManyEvents { .. } => "too_many_events",
            BatchExceedsBurst { .. } => "batch_exceeds_burst",
            UnsupportedMediaType(_) => "unsupported_media_type",
            UnsupportedEncoding(_) => "unsupported_content_encoding",
            RateLimited { .. } => "rate_limited",
            TooManyAuthFailures { .. } => "too_many_auth_failures",
            BodyTimeout => "body_timeout",
            Overloaded => "overloaded",
            Unavailable { code, .. } => code,
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::TooManyAuthFailures { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            ApiError::Overloaded => Some(1),
            _ => None,
        }
    }
}

/// Marks a response refused for its `Origin`, so the CORS layer leaves out
/// `Access-Control-Allow-Origin` and the browser's own check refuses it too.
#[derive(Clone, Copy, Debug)]
pub struct OriginRefused;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code, error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), code, error = %self, "request rejected");
        }
        let body = match self {
            ApiError::AllInvalid(ref answer) => answer.clone(),
            _ => serde_json::json!({ "error": { "code": code, "message": self.to_string() } }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
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

/// Why one event of a request was not accepted; listed in 207 and 400 answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the event in the request (0-based; NDJSON counts non-blank lines).
    pub index: usize,
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// Human-readable detail naming the field.
    pub message: String,
}

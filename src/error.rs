//! Why something was not accepted, as types: [`ApiError`] for a whole request, [`Refusal`] for
//! one event of it.
//!
//! Every failure a client can cause or observe becomes an [`ApiError`] with a status and a
//! stable, machine-readable `code` (part of the public contract: clients branch on it); one
//! event that was not accepted carries a [`Refusal`], which says once what it means for the API
//! (its code and message) and once for the metrics (its outcome label). Rendering either as an
//! HTTP answer is the HTTP layer's job (`http::reply`); nothing here knows about axum.

use http::StatusCode;
use serde::{Serialize, Serializer};

use crate::event::Invalid;
use crate::sink::Failure;

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
    /// More bytes than the token's `bytes_burst`: this request can never pass its byte quota.
    #[error("{bytes} bytes in one request, over this token's bytes_burst of {burst}: send smaller requests")]
    BytesExceedBurst { bytes: usize, burst: u32 },
    /// `Content-Type` is not one inlet accepts.
    #[error("unsupported media type `{sent}`: use {accepted}")]
    UnsupportedMediaType { sent: String, accepted: String },
    /// `Content-Encoding` is not one inlet decodes.
    #[error("unsupported content encoding `{0}`: use gzip, deflate, br or zstd")]
    UnsupportedEncoding(String),
    /// The token's rate limit is exhausted.
    #[error("rate limit exceeded for this token")]
    RateLimited { retry_after_secs: u64 },
    /// inlet cannot take events now (a delivery failure worth a retry, or shutting down).
    #[error("{}", .0.meaning().message)]
    Unavailable(Failure),
    /// The topic the token's registry entry names for the lane does not exist on the broker.
    #[error("topic `{topic}` (token `{token_id}`'s topics.{lane}) does not exist on the broker; retry later")]
    TopicMissing {
        topic: String,
        token_id: String,
        lane: &'static str,
    },
    /// The broker refused an event as too large.
    #[error("event too large for the broker")]
    RejectedTooLarge,
    /// No event of the request was accepted and at least one is invalid; the body lists every
    /// event's reason, as a 207 would, with `accepted: 0`.
    #[error("every event is invalid")]
    AllInvalid(Vec<Rejection>),
    /// A bug: the request's handler panicked (caught, logged and counted).
    #[error("inlet failed to handle the request; this is a bug, and was logged")]
    Internal,
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
            | BytesExceedBurst { .. }
            | RejectedTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType { .. } | UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            RateLimited { .. } | TooManyAuthFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Overloaded | TopicMissing { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
            BytesExceedBurst { .. } => "bytes_exceed_burst",
            UnsupportedMediaType { .. } => "unsupported_media_type",
            UnsupportedEncoding(_) => "unsupported_content_encoding",
            RateLimited { .. } => "rate_limited",
            TooManyAuthFailures { .. } => "too_many_auth_failures",
            BodyTimeout => "body_timeout",
            Overloaded => "overloaded",
            TopicMissing { .. } => "topic_missing",
            Unavailable(failure) => failure.meaning().code,
            Internal => "internal_error",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The `outcome` label, as `inlet_events_total` has it, of the events of a request this
    /// error refused whole (`refused` for a reason of the request rather than of its events:
    /// a lane its token may not send).
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::BAD_REQUEST => "invalid",
            status if status.is_server_error() => "unavailable",
            _ => "refused",
        }
    }

    /// Seconds a client should wait before retrying, for the `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::TooManyAuthFailures { retry_after_secs } => {
                Some((*retry_after_secs).max(1))
            }
            ApiError::Unavailable(failure) => Some(failure_retry_after_secs(*failure)),
            ApiError::Overloaded => Some(1),
            // An operator must create the topic or change the registry: not in a second.
            ApiError::TopicMissing { .. } => Some(30),
            _ => None,
        }
    }
}

/// Why one event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The event broke a rule of the contract; the client must not resend it as it is.
    Invalid(Invalid),
    /// The event was valid but not delivered (or, under `enqueue`, not queued).
    Undelivered(Failure),
}

impl Refusal {
    /// The stable code listed for the event in a 207 or 400 answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(invalid) => invalid.code,
            Refusal::Undelivered(failure) => failure.meaning().code,
        }
    }

    /// The detail listed for the event, naming the field when it is invalid.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Invalid(invalid) => &invalid.message,
            Refusal::Undelivered(failure) => failure.meaning().message,
        }
    }

    /// The `outcome` label of `inlet_events_total` for the event.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid",
            Refusal::Undelivered(Failure::TooLarge) => "too_large",
            Refusal::Undelivered(_) => "unavailable",
        }
    }

    /// Whether a retry of the same event may succeed (it was valid but not taken now), as
    /// opposed to an event that can never be accepted (invalid, or too large for the broker).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Refusal::Undelivered(f) if *f != Failure::TooLarge)
    }
}

/// One event of a request that was not accepted, listed in 207 and 400 answers as
/// `{"index", "code", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Position of the event in the request (0-based; NDJSON counts non-blank lines).
    pub index: usize,
    pub refusal: Refusal,
}

impl Serialize for Rejection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Rejection", 3)?;
        out.serialize_field("index", &self.index)?;
        out.serialize_field("code", self.refusal.code())?;
        out.serialize_field("message", self.refusal.message())?;
        out.end()
    }
}

/// Seconds a client should wait before retrying an event that failed so.
pub fn failure_retry_after_secs(failure: Failure) -> u64 {
    failure.meaning().retry_after_secs
}

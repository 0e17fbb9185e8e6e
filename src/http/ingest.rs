//! `POST /v1/beacons` and `POST /v1/occurrences`: decode, limit, validate, convert, key,
//! produce, and answer with exactly which events were accepted.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use prost::Message;
use serde::Serialize;

use super::body::{check_media_type, content_encoding, read_body, MinRate};
use super::AppState;
use crate::auth::{Authenticated, Token};
use crate::config::Delivery;
use crate::decode;
use crate::error::{ApiError, Rejection};
use crate::event::{self, Invalid, Kind, Meta, Validated};
use crate::key::shard_key;
use crate::limit::Decision;
use crate::metrics;
use crate::sink::{Failure, Record};

/// `POST /v1/beacons`.
pub async fn beacons(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest(Kind::Beacon, state, auth, headers, body).await
}

/// `POST /v1/occurrences`.
pub async fn occurrences(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest(Kind::Occurrence, state, auth, headers, body).await
}

async fn ingest(
    kind: Kind,
    state: AppState,
    Authenticated { token, client_ip }: Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    admit(kind, &state, &token, &headers)?;
    check_media_type(&headers)?;
    let encoding = content_encoding(&headers)?;
    let limits = state.config.limits(kind);
    let sent = read_body(body, &headers, limits.max_body, MinRate::of(&state.config)).await?;
    ::metrics::histogram!(metrics::HTTP_BODY_BYTES, "route" => route(kind))
        .record(sent.len() as f64);
    let decoded = if encoding != decode::Encoding::Identity
        && sent.len() >= decode::BLOCKING_DECODE_BYTES
    {
        tokio::task::spawn_blocking(move || decode::decompress(encoding, sent, limits.max_decoded))
            .await
            .map_err(|_| ApiError::MalformedBody("the body could not be decoded".into()))??
    } else {
        decode::decompress(encoding, sent, limits.max_decoded)?
    };
    let events = events(
        kind,
        &token,
        decoded,
        state.config.max_events_per_request,
        limits.max_event,
    )
    .await?;
    let answer = produce(
        kind,
        &state,
        &token,
        meta(kind, &state, &token, client_ip, &headers),
        events,
    )
    .await?;
    Ok(answer.into_response())
}

/// Decoded bodies at least this large are split, parsed and validated on the blocking pool, so
/// one huge body cannot hold up a runtime worker (and every request queued behind it); smaller
/// ones, the usual case, are handled in place.
pub const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

/// Splits a decoded body into events, charges the token's limiter for them, and parses and
/// validates each one; on the blocking pool when the body is large.
async fn events(
    kind: Kind,
    token: &Arc<Token>,
    decoded: Bytes,
    max_events: usize,
    max_event: usize,
) -> Result<Vec<Result<Validated, Invalid>>, ApiError> {
    if decoded.len() < BLOCKING_PARSE_BYTES {
        return parse(kind, token, &decoded, max_events, max_event);
    }
    let token = Arc::clone(token);
    tokio::task::spawn_blocking(move || parse(kind, &token, &decoded, max_events, max_event))
        .await
        .map_err(|_| ApiError::MalformedBody("the body could not be parsed".into()))?
}

fn parse(
    kind: Kind,
    token: &Token,
    decoded: &[u8],
    max_events: usize,
    max_event: usize,
) -> Result<Vec<Result<Validated, Invalid>>, ApiError> {
    let raw_events = decode::split_events(decoded, max_events)?;
    if let Some((index, size)) = raw_events.iter().enumerate().find_map(|(i, e)| {
        e.as_ref()
            .ok()
            .filter(|raw| raw.len() > max_event)
            .map(|raw| (i, raw.len()))
    }) {
        count(kind, "too_large", raw_events.len());
        return Err(ApiError::EventTooLarge {
            index,
            size,
            limit: max_event,
        });
    }
    charge(kind, token, raw_events.len())?;
    Ok(raw_events
        .into_iter()
        .map(|raw| raw.and_then(|raw| event::parse(kind, raw)))
        .collect())
}

/// The checks every ingest request passes before its body is read.
pub(super) fn admit(
    kind: Kind,
    state: &AppState,
    token: &Token,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(unavailable(Failure::ShuttingDown));
    }
    if !token.allows(kind) {
        return Err(ApiError::KindNotAllowed {
            token_id: token.id.clone(),
            kind: kind.as_str(),
        });
    }
    token.check_origin(headers)
}

/// Charges the token's limiter for `events` events.
pub(super) fn charge(kind: Kind, token: &Token, events: usize) -> Result<(), ApiError> {
    match token.limiter.check(events) {
        Decision::Allowed => Ok(()),
        Decision::Wait(wait) => {
            count(kind, "rate_limited", events);
            ::metrics::counter!(metrics::RATE_LIMITED, "token" => token.id.clone()).increment(1);
            Err(ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
        }
        Decision::TooBig => {
            count(kind, "rate_limited", events);
            ::metrics::counter!(metrics::RATE_LIMITED, "token" => token.id.clone()).increment(1);
            Err(ApiError::BatchExceedsBurst {
                count: events,
                burst: token.limiter.burst,
            })
        }
    }
}

/// The gateway metadata of a request.
pub(super) fn meta(
    kind: Kind,
    state: &AppState,
    token: &Token,
    client_ip: IpAddr,
    headers: &HeaderMap,
) -> Meta {
    const MAX_USER_AGENT: usize = 512;
    let mut user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if user_agent.len() > MAX_USER_AGENT {
        let mut end = MAX_USER_AGENT;
        while !user_agent.is_char_boundary(end) {
            end -= 1;
        }
        user_agent.truncate(end);
    }
    Meta {
        received_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        project_id: token.project_id.clone(),
        account_id: token.account_id.clone(),
        token_id: token.id.clone(),
        client_ip: if state.config.client_ip_truncation.applies_to(kind) {
            crate::client::truncate(client_ip)
        } else {
            client_ip
        }
        .to_string(),
        user_agent,
    }
}

/// What a request's events came to.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub accepted: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
    #[serde(skip)]
    delivery: Delivery,
    #[serde(skip)]
    retry_after_secs: Option<u64>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = match (self.rejected.is_empty(), self.delivery) {
            (false, _) => StatusCode::MULTI_STATUS,
            (true, Delivery::Ack) => StatusCode::OK,
            (true, Delivery::Enqueue) => StatusCode::ACCEPTED,
        };
        let retry = self.retry_after_secs;
        let mut response = (status, Json(self)).into_response();
        if let Some(secs) = retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Converts, keys and produces the valid events; answers per event. Fails as a whole exactly
/// when nothing was accepted: 503 when an event could not be delivered for a reason worth a
/// retry, 413 when every event was too large for the broker, else 400 (every event invalid, or
/// invalid and too large), so an [`Answer`] always has `accepted` > 0.
pub(super) async fn produce(
    kind: Kind,
    state: &AppState,
    token: &Token,
    meta: Meta,
    events: Vec<Result<Validated, Invalid>>,
) -> Result<Answer, ApiError> {
    let mut records = Vec::with_capacity(events.len());
    let mut indices = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match event {
            Ok(valid) => {
                let key = shard_key(&valid.body, token).to_owned();
                let value = event::envelope(valid, &meta).encode_to_vec();
                records.push(Record { kind, key, value });
                indices.push(index);
            }
            Err(invalid) => rejected.push(Rejection {
                index,
                code: invalid.code,
                message: invalid.message,
            }),
        }
    }
    count(kind, "invalid", rejected.len());
    let delivery = state.config.delivery;
    if records.is_empty() {
        return Err(all_invalid(Answer {
            accepted: 0,
            rejected,
            delivery,
            retry_after_secs: None,
        }));
    }
    let outcomes = state.sink.send(records, delivery == Delivery::Ack).await;
    let (mut accepted, mut worst) = (0, None::<Failure>);
    let mut too_large = 0;
    for (index, outcome) in indices.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => accepted += 1,
            Err(failure) => {
                if failure == Failure::TooLarge {
                    too_large += 1;
                } else {
                    worst = Some(failure);
                }
                rejected.push(Rejection {
                    index,
                    code: failure_code(failure),
                    message: failure_message(failure).into(),
                });
            }
        }
    }
    count(kind, "accepted", accepted);
    count(kind, "too_large", too_large);
    count(
        kind,
        "unavailable",
        rejected.len() - too_large - count_invalid(&rejected),
    );
    rejected.sort_by_key(|r| r.index);
    if accepted == 0 {
        if let Some(failure) = worst {
            return Err(unavailable(failure));
        }
        if count_invalid(&rejected) == 0 {
            return Err(ApiError::RejectedTooLarge);
        }
        // Some invalid, the others too large for the broker: nothing was accepted, so this is
        // the 400 with every event's reason, never a 207 with `accepted: 0`.
        return Err(all_invalid(Answer {
            accepted,
            rejected,
            delivery,
            retry_after_secs: None,
        }));
    }
    Ok(Answer {
        accepted,
        rejected,
        delivery,
        retry_after_secs: worst.map(retry_after_secs),
    })
}

fn count_invalid(rejected: &[Rejection]) -> usize {
    rejected
        .iter()
        .filter(|r| !is_delivery_code(r.code))
        .count()
}

fn is_delivery_code(code: &str) -> bool {
    [
        Failure::QueueFull,
        Failure::TooLarge,
        Failure::TimedOut,
        Failure::Broker,
        Failure::ShuttingDown,
    ]
    .iter()
    .any(|f| failure_code(*f) == code)
}

/// The 400 answer for a request whose every event is invalid: the 207 body with `accepted: 0`.
fn all_invalid(answer: Answer) -> ApiError {
    ApiError::AllInvalid(serde_json::to_value(&answer).unwrap_or_default())
}

fn failure_code(failure: Failure) -> &'static str {
    match failure {
        Failure::QueueFull => "queue_full",
        Failure::TooLarge => "event_too_large",
        Failure::TimedOut => "delivery_timed_out",
        Failure::Broker => "delivery_failed",
        Failure::ShuttingDown => "shutting_down",
    }
}

fn failure_message(failure: Failure) -> &'static str {
    match failure {
        Failure::QueueFull => "inlet's producer queue is full; retry later",
        Failure::TooLarge => "the event is larger than the broker accepts",
        Failure::TimedOut => "the broker did not acknowledge the event in time; retry later",
        Failure::Broker => "the broker refused the event; retry later",
        Failure::ShuttingDown => "inlet is shutting down; retry on another replica",
    }
}

fn retry_after_secs(failure: Failure) -> u64 {
    match failure {
        Failure::QueueFull => 1,
        _ => 5,
    }
}

fn unavailable(failure: Failure) -> ApiError {
    ApiError::Unavailable {
        code: failure_code(failure),
        reason: failure_message(failure).into(),
        retry_after_secs: retry_after_secs(failure),
    }
}

fn route(kind: Kind) -> &'static str {
    match kind {
        Kind::Beacon => "/v1/beacons",
        Kind::Occurrence => "/v1/occurrences",
    }
}

fn count(kind: Kind, outcome: &'static str, n: usize) {
    if n > 0 {
        ::metrics::counter!(metrics::EVENTS, "kind" => kind.as_str(), "outcome" => outcome)
            .increment(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use axum::http::Request;
    use serde_json::{json, Value};

    use super::*;
    use crate::http::public_router;
    use crate::http::testing::{send, state, SECRET};
    use crate::sink::memory::MemorySink;

    /// Posts `events` as a JSON array to a router whose sink refuses, as too large for the
    /// broker, every event of session `big`.
    async fn post_to_picky_broker(events: Value) -> (StatusCode, Value, usize) {
        let sink = Arc::new(MemorySink::answering(|record| {
            if record.key == "big" {
                Err(Failure::TooLarge)
            } else {
                Ok(())
            }
        }));
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let request = Request::post("/v1/beacons")
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .body(Body::from(events.to_string()))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        let produced = sink.records().len();
        (status, serde_json::from_slice(&body).unwrap(), produced)
    }

    #[tokio::test]
    async fn nothing_accepted_is_never_a_207() {
        let big = json!({"session_id": "big", "event": "e"});
        let small = json!({"session_id": "small", "event": "e"});
        let invalid = json!({"session_id": "small"});
        // Invalid and too large for the broker, none accepted: 400, with every event's reason.
        let (status, body, _) = post_to_picky_broker(json!([invalid, big])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["accepted"], 0);
        let codes: Vec<&str> = body["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["missing_field", "event_too_large"]);
        // Every event too large for the broker: 413.
        let (status, body, produced) = post_to_picky_broker(json!([big, big])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["error"]["code"], "event_too_large");
        assert_eq!(produced, 2);
        // Every event invalid: 400, nothing handed to the sink.
        let (status, body, produced) = post_to_picky_broker(json!([invalid, invalid])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["accepted"], 0);
        assert_eq!(produced, 0);
        // One accepted: 207 naming the others.
        let (status, body, _) = post_to_picky_broker(json!([invalid, big, small])).await;
        assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
        assert_eq!(body["accepted"], 1);
        assert_eq!(body["rejected"].as_array().unwrap().len(), 2);
    }

    /// Whether parsing `body` let another task of a single-threaded runtime run, which it can
    /// only when the parsing went to the blocking pool.
    async fn yields_while_parsing(body: Bytes) -> (bool, usize) {
        let token = state(Arc::new(MemorySink::accepting()), |_| {})
            .tokens
            .lookup(SECRET)
            .unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = Arc::clone(&ran);
            async move { ran.store(true, Ordering::SeqCst) }
        });
        let parsed = events(Kind::Beacon, &token, body, 100_000, 1 << 20)
            .await
            .unwrap();
        let yielded = ran.load(Ordering::SeqCst);
        other.await.unwrap();
        (yielded, parsed.len())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn large_bodies_are_parsed_off_the_runtime_and_small_ones_in_place() {
        let event = json!({"session_id": "s", "event": "e"}).to_string();
        let small = Bytes::from(format!("[{}]", [event.as_str(); 10].join(",")));
        assert_eq!(yields_while_parsing(small).await, (false, 10));
        let n = BLOCKING_PARSE_BYTES / event.len() + 1;
        let large = Bytes::from(format!("[{}]", vec![event.as_str(); n].join(",")));
        assert!(large.len() >= BLOCKING_PARSE_BYTES);
        assert_eq!(yields_while_parsing(large).await, (true, n));
    }
}

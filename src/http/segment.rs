//! Segment's tracking API: `POST /v1/batch` and the single calls (`/v1/track`, `/v1/page`,
//! `/v1/screen`, `/v1/identify`, `/v1/group`, `/v1/alias`), for `@segment/analytics-node` and
//! `segment-analytics-python` pointed at inlet (`host`). The key is the HTTP Basic user (the
//! write key), else the body's `writeKey`; the messages become beacons ([`crate::sdk::segment`]).
//!
//! Answers as Segment's API does: 200 `{"success":true}`, errors as
//! `{"success":false,"code","message"}` (what the SDKs log), `Retry-After` on 429 and 503.
//! A batch whose messages are partly invalid is still a 200: the SDKs drop a batch answered
//! 4xx and resend one answered 5xx, and resending a message that can never be valid helps no
//! one, while dropping the valid ones would lose them. The invalid ones are counted
//! (`inlet_events_total{outcome="invalid"}`). Only a message refused for a reason a retry may
//! overcome (the broker, a full queue) turns the answer into a 503, so the SDK resends the
//! batch: the messages accepted the first time then arrive twice, with the same `messageId`,
//! which is their event id, for consumers to deduplicate on.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde_json::json;

use super::adapter::{Limits, Protocol, Translation};
use super::authenticate::presented_secret;
use super::body::check_media_type;
use super::sdk::error_answer;
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::{self, Items};

/// Segment's tracking API.
#[derive(Debug, Clone, Copy)]
pub enum Segment {
    /// `POST /v1/batch`: `{"batch": [...]}`, each message naming its `type`.
    Batch,
    /// `POST /v1/track` and the other single calls: one message, whose `type` defaults to the
    /// path's call.
    Call,
}

impl Protocol for Segment {
    /// The path's call, for [`Segment::Call`].
    type Head = Option<String>;
    type Receipt = ();

    fn lane(self) -> Lane {
        Lane::BEACON
    }

    /// The Basic key is checked before the body is read; a key in the body, after.
    fn key(self, parts: &Parts) -> Option<String> {
        basic_user(&parts.headers).or_else(|| presented_secret(parts))
    }

    fn key_in_body(self) -> bool {
        true
    }

    fn head(self, parts: &Parts) -> Result<Option<String>, ApiError> {
        check_media_type(&parts.headers)?;
        Ok(match self {
            Segment::Batch => None,
            Segment::Call => {
                let path = parts.uri.path().trim_end_matches('/');
                Some(path.rsplit('/').next().unwrap_or_default().to_owned())
            }
        })
    }

    /// Read and translated in one go: the messages borrow the body. A key in the body is known
    /// only once the body is read, so the translation may come before it is checked.
    fn translate(
        self,
        call: Option<String>,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<()>, ApiError> {
        let read = sdk::segment::read(&body, limits.max_events)?;
        let mut items = Items::default();
        let events = sdk::segment::translate(&read.messages, call.as_deref(), &mut items);
        let batch = crate::batch::Batch::translated(Lane::BEACON, Source::Segment, events);
        Ok(Translation::of(batch, ())
            .with_key(read.key)
            .with_items(items))
    }

    /// Segment's answers: 200 `{"success":true}`, or the error as
    /// `{"success":false,"code","message"}`.
    fn reply(self, outcome: Result<(Answer, ()), ApiError>) -> Response {
        match outcome {
            Ok(_) => Json(json!({"success": true})).into_response(),
            Err(error) => error_answer(
                error,
                |_, code, message| json!({"success": false, "code": code, "message": message}),
            ),
        }
    }
}

/// The user of `Authorization: Basic` (Segment's write key, with an empty password).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;

    use super::*;
    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::sink::Failure;
    use crate::testing::{state, SECRET};

    fn basic(key: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        format!("Basic {encoded}")
    }

    #[test]
    fn the_basic_user_is_the_write_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_user(&headers), None);
        headers.insert(header::AUTHORIZATION, basic("wk").parse().unwrap());
        assert_eq!(basic_user(&headers).as_deref(), Some("wk"));
        headers.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_user(&headers), None);
        headers.insert(header::AUTHORIZATION, basic("").parse().unwrap());
        assert_eq!(basic_user(&headers), None);
    }

    async fn post(
        sink: Arc<MemorySink>,
        path: &str,
        auth: Option<&str>,
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let router = public_router(state(sink, |_| {}));
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request.body(Body::from(body.to_string())).unwrap();
        let (status, headers, body) = send(&router, request).await;
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn answers_are_segment_s() {
        let track = json!({"type": "track", "event": "e", "anonymousId": "a"});
        let invalid = json!({"type": "track", "anonymousId": "a"});
        let sink = Arc::new(MemorySink::accepting());
        // The key from Basic, or from the body.
        let body = json!({"batch": [track, invalid]});
        let (status, _, answer) =
            post(Arc::clone(&sink), "/v1/batch", Some(&basic(SECRET)), body).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"success": true})));
        assert_eq!(
            sink.records().len(),
            1,
            "the valid message produced, the invalid one not"
        );
        let body = json!({"writeKey": SECRET, "event": "e", "userId": "u"});
        let (status, _, _) = post(Arc::clone(&sink), "/v1/track/", None, body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.records().len(), 2);
        // Errors in Segment's shape.
        let (status, _, answer) = post(
            Arc::clone(&sink),
            "/v1/batch",
            None,
            json!({"batch": [track]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer["success"], false);
        assert_eq!(answer["code"], "missing_token");
        let body = json!({"writeKey": SECRET, "batch": [invalid]});
        let (status, _, answer) = post(Arc::clone(&sink), "/v1/batch", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["code"], "missing_field");
        assert!(
            answer["message"].as_str().unwrap().contains("`event`"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_message_worth_retrying_makes_the_batch_a_503() {
        let sink = Arc::new(MemorySink::answering(|record| {
            if record.key == "full" {
                Err(Failure::QueueFull)
            } else {
                Ok(())
            }
        }));
        let body = json!({"writeKey": SECRET, "batch": [
            {"type": "track", "event": "e", "anonymousId": "ok"},
            {"type": "track", "event": "e", "anonymousId": "full"},
        ]});
        let (status, headers, answer) = post(sink, "/v1/batch", None, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(answer["code"], "queue_full");
    }
}

//! Segment's tracking API: `POST /v1/batch` and the single calls (`/v1/track`, `/v1/page`,
//! `/v1/screen`, `/v1/identify`, `/v1/group`, `/v1/alias`), for `@segment/analytics-node` and
//! `segment-analytics-python` pointed at inlet (`host`); analytics.js's short paths (`/v1/t`,
//! `/v1/p`, ..., `/v1/b` in its batching mode) and the settings it loads from its CDN
//! ([`settings`]), for `AnalyticsBrowser.load({ writeKey, cdnURL })` pointed at inlet; and
//! `/v1/import`, a batch. The key is the HTTP Basic user (the write key), else the body's
//! `writeKey`; the messages become beacons ([`crate::sdk::segment`]).
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

use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use serde_json::json;

use super::adapter::{authorize, Limits, Protocol, Translation};
use super::authenticate::presented_secret;
use super::body::check_media_type;
use super::sdk::{error_answer, header_value};
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::{self, Items};
use crate::state::AppState;

/// Segment's tracking API.
#[derive(Debug, Clone, Copy)]
pub enum Segment {
    /// `POST /v1/batch` (`/v1/b` from analytics.js, `/v1/import`): `{"batch": [...]}`, each
    /// message naming its `type`.
    Batch,
    /// `POST /v1/track` and the other single calls (analytics.js's `/v1/t`, `/v1/p`, ...): one
    /// message, whose `type` defaults to the path's call.
    Call(&'static str),
}

/// The single calls, each by its path and analytics.js's one-letter path.
pub const CALLS: [(&str, &str); 6] = [
    ("track", "t"),
    ("page", "p"),
    ("screen", "s"),
    ("identify", "i"),
    ("group", "g"),
    ("alias", "a"),
];

impl Protocol for Segment {
    type Head = ();
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

    /// analytics.js sends `text/plain` (no preflight); the server SDKs JSON.
    fn head(self, parts: &Parts) -> Result<(), ApiError> {
        check_media_type(&parts.headers)
    }

    /// Read and translated in one go: the messages borrow the body. A key in the body is known
    /// only once the body is read, so the translation may come before it is checked.
    fn translate(self, _: (), body: Bytes, limits: Limits) -> Result<Translation<()>, ApiError> {
        let call = match self {
            Segment::Batch => None,
            Segment::Call(call) => Some(call),
        };
        let read = sdk::segment::read(&body, limits.max_events)?;
        let mut items = Items::default();
        let events = sdk::segment::translate(&read.messages, call, &mut items);
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

/// `GET /v1/projects/{writeKey}/settings`: the settings analytics.js loads from its CDN
/// (`cdnURL`), pointing it at this host for every call (`apiHost`: the request's `Host` and
/// `/v1`; `protocol`: `X-Forwarded-Proto`, else `http`), with no destinations, plugins or
/// metrics of Segment's own to load. The write key must be a token that may send beacons from
/// the page asking (401, 403 in Segment's shape otherwise).
pub async fn settings(
    State(state): State<AppState>,
    Path(write_key): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(error) = authorize(&state, &parts, Lane::BEACON, Some(write_key.clone())) {
        return Segment::Batch.reply(Err(error));
    }
    let host = header_value(&parts.headers, "host").unwrap_or_else(|| "localhost".into());
    let protocol = header_value(&parts.headers, "x-forwarded-proto")
        .filter(|p| p == "https" || p == "http")
        .unwrap_or_else(|| "http".into());
    let settings = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {"track": {"__default": {"enabled": true, "integrations": {}}}},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    let mut response = Json(settings).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
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

    #[tokio::test]
    async fn analytics_js_paths_are_its_calls_and_its_batch() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        // analytics.js sends text/plain (no preflight), the key in the body.
        let message = |extra: Value| {
            let mut message = json!({"writeKey": SECRET, "anonymousId": "a", "event": "e"});
            message
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            message
        };
        let mut expected = Vec::new();
        for (call, short) in CALLS {
            let request = Request::post(format!("/v1/{short}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(message(json!({})).to_string()))
                .unwrap();
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::OK, "/v1/{short}: {body:?}");
            expected.push(if call == "track" { "e" } else { call });
        }
        for path in ["/v1/b", "/v1/import/"] {
            let batch = json!({"writeKey": SECRET, "batch": [
                message(json!({"type": "track", "event": "batched"})),
                message(json!({"type": "identify", "userId": "u"})),
            ]});
            let request = Request::post(path)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(batch.to_string()))
                .unwrap();
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body:?}");
            expected.extend(["batched", "identify"]);
        }
        let events: Vec<String> = (sink.records().iter())
            .map(|record| crate::testing::beacon(record).event)
            .collect();
        assert_eq!(events, expected);
    }

    #[tokio::test]
    async fn the_settings_point_analytics_js_at_this_host() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let get = |key: &str, proto: Option<&str>| {
            let mut request = Request::get(format!("/v1/projects/{key}/settings"))
                .header(header::HOST, "inlet.example:8443");
            if let Some(proto) = proto {
                request = request.header("x-forwarded-proto", proto);
            }
            request.body(Body::empty()).unwrap()
        };
        let (status, headers, body) = send(&router, get(SECRET, Some("https"))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age"));
        let settings: Value = serde_json::from_slice(&body).unwrap();
        let segment = &settings["integrations"]["Segment.io"];
        assert_eq!(segment["apiKey"], SECRET);
        assert_eq!(segment["apiHost"], "inlet.example:8443/v1");
        assert_eq!(segment["protocol"], "https");
        assert_eq!(settings["remotePlugins"], json!([]));
        let (_, _, body) = send(&router, get(SECRET, None)).await;
        let settings: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(settings["integrations"]["Segment.io"]["protocol"], "http");
        // A stranger's key is refused in Segment's shape.
        let (status, _, body) = send(&router, get("nope", None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (body["success"].clone(), body["code"].clone()),
            (json!(false), json!("unknown_token"))
        );
        assert!(sink.records().is_empty());
    }
}

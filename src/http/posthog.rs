//! PostHog's capture API: `POST /e/`, `/i/v0/e/`, `/capture/` and `/batch/` (each with or
//! without its trailing slash), for `posthog-js`, `posthog-node` and `posthog` (Python) pointed
//! at inlet (`api_host` / `host`). The key is the body's `api_key`, else the first event's
//! `token` / `properties.token`; the events become beacons ([`crate::sdk::posthog`]).
//!
//! Answers exactly 200 `{"status":1}` on success (posthog-python takes any other status as a
//! failure), errors as PostHog's `{"type","code","detail","attr"}`, `Retry-After` on 429 and
//! 503. Partly invalid batches are answered as on Segment's endpoint (see `http::segment`):
//! 200, the invalid events counted, and a 503 only for a refusal a retry may overcome.
//!
//! posthog-js also asks its host for a remote configuration and for feature flags. inlet is no
//! flags service: it answers both with an empty, valid configuration (no flags, no surveys,
//! session recording, heatmaps and autocaptured exceptions off), so posthog-js starts, sends
//! its events, and logs no errors.

use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};

use super::adapter::{Limits, Protocol, Translation};
use super::body::read_body as read_capped;
use super::body::{media_type, MinRate};
use super::sdk::error_answer;
use crate::batch::{Batch, BLOCKING_PARSE_BYTES};
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::posthog::{self, Wire};
use crate::sdk::Items;
use crate::state::AppState;

/// PostHog's capture API: `POST /e/`, `/i/v0/e/`, `/capture/`, `/batch/`.
#[derive(Debug, Clone, Copy)]
pub struct Capture;

/// What the body's wire format is, from the request's head.
pub struct Head {
    /// The `compression` query parameter.
    compression: Option<String>,
    /// Whether the body is a form.
    form: bool,
}

impl Head {
    fn wire(&self) -> Wire<'_> {
        Wire {
            compression: self.compression.as_deref(),
            form: self.form,
        }
    }
}

impl Protocol for Capture {
    type Head = Head;
    type Receipt = ();

    fn lane(self) -> Lane {
        Lane::BEACON
    }

    /// The key is in the body, so it is checked once the body is read.
    fn key(self, _: &Parts) -> Option<String> {
        None
    }

    fn key_in_body(self) -> bool {
        true
    }

    fn head(self, parts: &Parts) -> Result<Head, ApiError> {
        let form = is_form(&parts.headers)?;
        let compression = parts.uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "compression")
                .map(|(_, value)| value.into_owned())
        });
        Ok(Head { compression, form })
    }

    /// A body that may hold gzip (posthog-js does not always say) goes off the runtime at the
    /// size a compressed body does; plain JSON at the size a native body does.
    fn off_the_runtime(self, head: &Head, body: &Bytes) -> bool {
        body.len()
            >= match posthog::may_inflate(body, head.wire()) {
                true => crate::decode::BLOCKING_DECODE_BYTES,
                false => BLOCKING_PARSE_BYTES,
            }
    }

    /// Decoded, read and translated in one go: the events borrow the body.
    fn translate(
        self,
        head: Head,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<()>, ApiError> {
        let body = posthog::decode(body, head.wire(), limits.lane.max_decoded)?;
        let read = posthog::read(&body, limits.max_events)?;
        let mut items = Items::default();
        let events = posthog::translate(&read.messages, read.key.as_deref(), &mut items);
        let batch = Batch::translated(Lane::BEACON, Source::Posthog, events);
        Ok(Translation::of(batch, ())
            .with_key(read.key)
            .with_items(items))
    }

    /// Exactly 200 `{"status":1}`, or the error in PostHog's shape.
    fn reply(self, outcome: Result<(Answer, ()), ApiError>) -> Response {
        match outcome {
            Ok(_) => Json(json!({"status": 1})).into_response(),
            Err(error) => error_answer(error, error_body),
        }
    }
}

/// PostHog's error body: `{"type", "code", "detail", "attr"}` (posthog-python logs `detail`).
fn error_body(error: &ApiError, code: &str, message: &str) -> Value {
    json!({"type": error_type(error), "code": code, "detail": message, "attr": null})
}

/// Whether the body is a form (`data=`); 415 for a media type no PostHog client sends.
fn is_form(headers: &HeaderMap) -> Result<bool, ApiError> {
    const FORM: &str = "application/x-www-form-urlencoded";
    Ok(media_type(headers, &[FORM, "application/json", "text/plain"])? == FORM)
}

/// The `type` of a PostHog error body.
fn error_type(error: &ApiError) -> &'static str {
    match error.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "authentication_error",
        StatusCode::TOO_MANY_REQUESTS => "throttled",
        status if status.is_server_error() => "server_error",
        _ => "validation_error",
    }
}

/// The configuration posthog-js asks for: nothing to load, no flags to ask for.
fn remote_config(token: &str) -> Value {
    json!({
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": false,
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "captureDeadClicks": false,
        "capturePerformance": false,
        "heatmaps": false,
        "sessionRecording": false,
        "surveys": false,
        "productTours": false,
        "defaultIdentifiedOnly": true,
        "siteApps": [],
    })
}

/// `GET /array/{token}/config`: the remote configuration as JSON.
pub async fn config(Path(token): Path<String>) -> Response {
    Json(remote_config(&token)).into_response()
}

/// `GET /array/{token}/config.js`: the remote configuration as the script posthog-js loads,
/// which leaves it in `window._POSTHOG_REMOTE_CONFIG[token]`.
pub async fn config_js(Path(token): Path<String>) -> Response {
    // JSON text is a JavaScript expression: the token is a string literal, escaped.
    let script = format!(
        "(function() {{\n  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {{}};\n  \
         window._POSTHOG_REMOTE_CONFIG[{token}] = {{ config: {config}, siteApps: [] }};\n}})();\n",
        token = Value::from(token.as_str()),
        config = remote_config(&token),
    );
    let mut response = script.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript"),
    );
    response
}

/// `POST /flags/?v=2`: no flags. The body (the person asking) is read within the beacon cap
/// and ignored.
pub async fn flags(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.limits(Lane::BEACON).max_body;
    if let Err(error) = read_capped(body, &parts.headers, limit, MinRate::of(&state.edge)).await {
        return error.into_response();
    }
    Json(json!({
        "flags": {},
        "featureFlags": {},
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": false,
        "quotaLimited": [],
        "requestId": crate::id::uuid_v7().hyphenated().to_string(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;

    use super::*;
    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    async fn post(
        sink: Arc<MemorySink>,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let router = public_router(state(sink, |_| {}));
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_capture_path_answers_status_1() {
        let sink = Arc::new(MemorySink::accepting());
        let event = json!({"event": "e", "distinct_id": "d", "properties": {"token": SECRET}});
        let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzipped
            .write_all(json!([event]).to_string().as_bytes())
            .unwrap();
        let gzipped = gzipped.finish().unwrap();
        let paths = [
            "/e/",
            "/e",
            "/i/v0/e/",
            "/i/v0/e",
            "/capture/",
            "/capture",
            "/batch/",
            "/batch",
        ];
        for path in paths {
            let body = json!({"api_key": SECRET, "batch": [event]})
                .to_string()
                .into_bytes();
            let (status, answer) = post(Arc::clone(&sink), path, "application/json", body).await;
            assert_eq!(
                (status, answer),
                (StatusCode::OK, json!({"status": 1})),
                "{path}"
            );
        }
        let uri = "/e/?compression=gzip-js&ver=1.449.2";
        let (status, _) = post(Arc::clone(&sink), uri, "text/plain", gzipped).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.records().len(), paths.len() + 1);
    }

    #[tokio::test]
    async fn errors_are_posthog_s() {
        let sink = Arc::new(MemorySink::accepting());
        let body = json!({"api_key": "nope", "batch": [{"event": "e", "distinct_id": "d"}]});
        let (status, answer) = post(
            Arc::clone(&sink),
            "/batch/",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer["type"], "authentication_error");
        assert_eq!(answer["code"], "unknown_token");
        let (status, answer) = post(sink, "/batch/", "image/png", b"{}".to_vec()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(answer["type"], "validation_error");
    }

    #[tokio::test]
    async fn the_remote_configuration_and_flags_are_empty() {
        let router = public_router(state(Arc::new(MemorySink::accepting()), |_| {}));
        let get = Request::get("/array/phc_abc/config")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&router, get).await;
        assert_eq!(status, StatusCode::OK);
        let config: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (config["token"].clone(), config["sessionRecording"].clone()),
            (json!("phc_abc"), json!(false))
        );
        let get = Request::get("/array/a'b/config.js")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&router, get).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/javascript");
        let script = String::from_utf8(body).unwrap();
        assert!(
            script.contains(r#"window._POSTHOG_REMOTE_CONFIG["a'b"] = { config: {"#),
            "{script}"
        );
        let flags = Request::post("/flags/?v=2").body(Body::from("{}")).unwrap();
        let (status, _, body) = send(&router, flags).await;
        assert_eq!(status, StatusCode::OK);
        let flags: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(flags["flags"], json!({}));
    }
}

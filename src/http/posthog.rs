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
//! `POST /s/` takes posthog-js's session recording: its `$snapshot` events, one recording per
//! session, into the `recording` lane.
//!
//! posthog-js also asks its host for a remote configuration and for feature flags. inlet is no
//! flags service: it answers both with an empty, valid configuration (no flags, no surveys,
//! heatmaps and autocaptured exceptions off), so posthog-js starts, sends its events, and logs
//! no errors. Session recording is on for a token whose `kinds` include `recording`, off for
//! any other.

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
use super::sdk::{self, error_answer};
use crate::batch::{Batch, BLOCKING_PARSE_BYTES};
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::{BodyLimits, Lane};
use crate::pipeline::Answer;
use crate::sdk::posthog::{self, Wire};
use crate::sdk::Items;
use crate::state::AppState;

/// The largest body a PostHog route takes, as sent and decoded, unless the beacons' caps are
/// larger.
pub const MAX_BODY: usize = 20 << 20;

/// PostHog's capture API.
#[derive(Debug, Clone, Copy)]
pub enum Capture {
    /// `POST /e/`, `/i/v0/e/`, `/capture/`, `/batch/`, `/track/`, `/engage/`: events, as beacons
    /// (and `$exception` events as occurrences).
    Events,
    /// `POST /s/`: posthog-js's session recording, `$snapshot` events, as recordings.
    Snapshots,
}

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
        match self {
            Capture::Events => Lane::BEACON,
            Capture::Snapshots => Lane::RECORDING,
        }
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

    /// posthog-python's batches reach 5 MiB as JSON, uncompressed (up to 100 events of up to
    /// 900 KB), and PostHog's own capture takes 20 MB: so does inlet, whatever the beacons'
    /// body caps (one event's cap stays theirs).
    fn body_limits(self, lane: BodyLimits) -> BodyLimits {
        BodyLimits {
            max_body: lane.max_body.max(MAX_BODY),
            max_decoded: lane.max_decoded.max(MAX_BODY),
            ..lane
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
        if let Capture::Snapshots = self {
            let recordings = posthog::snapshots(&read.messages, read.key.as_deref(), &mut items);
            let batch = Batch::translated(Lane::RECORDING, Source::Posthog, recordings);
            return Ok(Translation::of(batch, ())
                .with_key(read.key)
                .with_items(items));
        }
        let events = posthog::translate(&read.messages, read.key.as_deref(), &mut items);
        let batch = Batch::translated(Lane::BEACON, Source::Posthog, events.beacons);
        let translation = Translation::of(batch, ())
            .with_key(read.key)
            .with_items(items);
        if events.exceptions.is_empty() {
            return Ok(translation);
        }
        let beacons =
            Batch::translated(Lane::BEACON, Source::Posthog, events.exceptions_as_beacons);
        Ok(Translation {
            also: vec![sdk::reports(Source::Posthog, events.exceptions)],
            instead: Some((Lane::OCCURRENCE, beacons)),
            ..translation
        })
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

/// The configuration posthog-js asks for: nothing to load, no flags to ask for, and session
/// recording on when the token may send recordings (to `/s/`, its default settings). It names
/// no `surveys` at all: posthog-js 1.449 loads `surveys.js` for `"surveys": false` too.
fn remote_config(token: &str, recording: bool) -> Value {
    let session_recording = match recording {
        true => json!({
            "endpoint": "/s/",
            "consoleLogRecordingEnabled": true,
            "recorderVersion": "v2",
            "sampleRate": null,
            "linkedFlag": null,
            "networkPayloadCapture": null,
            "masking": null,
            "urlTriggers": [],
            "urlBlocklist": [],
            "eventTriggers": [],
            "scriptConfig": null,
        }),
        false => json!(false),
    };
    json!({
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": false,
        "autocapture_opt_out": false,
        "autocaptureExceptions": false,
        "captureDeadClicks": false,
        "capturePerformance": false,
        "heatmaps": false,
        "sessionRecording": session_recording,
        "productTours": false,
        "defaultIdentifiedOnly": true,
        "siteApps": [],
    })
}

/// Whether `token` is a token that may send recordings: the remote configuration then turns
/// posthog-js's session recording on. (posthog-js's token is public: it is in every page.)
fn records(state: &AppState, token: &str) -> bool {
    (state.tokens.lookup(token)).is_some_and(|token| token.allows(Lane::RECORDING))
}

/// `GET /array/{token}/config`: the remote configuration as JSON.
pub async fn config(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    Json(remote_config(&token, records(&state, &token))).into_response()
}

/// `GET /array/{token}/config.js`: the remote configuration as the script posthog-js loads,
/// which leaves it in `window._POSTHOG_REMOTE_CONFIG[token]`.
pub async fn config_js(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    // JSON text is a JavaScript expression: the token is a string literal, escaped.
    let script = format!(
        "(function() {{\n  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {{}};\n  \
         window._POSTHOG_REMOTE_CONFIG[{token}] = {{ config: {config}, siteApps: [] }};\n}})();\n",
        token = Value::from(token.as_str()),
        config = remote_config(&token, records(&state, &token)),
    );
    let mut response = script.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript"),
    );
    response
}

/// `/flags/?v=2` (posthog-js, posthog-python and posthog-node today) and `/decide/?v=3`
/// (posthog-js before 1.233, posthog-python before 4.4, older mobile SDKs), `GET` or `POST`:
/// no flags, in the fields each version reads, and the remote configuration's fields that
/// `/decide/` carried (nothing enabled). The body (the person asking) is read within the
/// beacon cap and ignored.
pub async fn flags(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.limits(Lane::BEACON).max_body;
    let body = match read_capped(body, &parts.headers, limit, MinRate::of(&state.edge)).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let recording = asking_token(&parts, body, limit).is_some_and(|t| records(&state, &t));
    let mut answer = remote_config("", recording);
    let fields = answer.as_object_mut().expect("an object");
    fields.remove("token");
    fields.extend(
        [
            ("flags", json!({})),
            ("featureFlags", json!({})),
            ("featureFlagPayloads", json!({})),
            ("errorsWhileComputingFlags", json!(false)),
            ("quotaLimited", json!([])),
            ("config", json!({"enable_collect_everything": true})),
            ("isAuthenticated", json!(false)),
            ("toolbarParams", json!({})),
            ("editorParams", json!({})),
            (
                "requestId",
                json!(crate::id::uuid_v7().hyphenated().to_string()),
            ),
        ]
        .map(|(name, value)| (name.to_owned(), value)),
    );
    Json(answer).into_response()
}

/// The token a flags request names in its body (`token`, or `api_key`), however posthog-js
/// encoded it.
fn asking_token(parts: &Parts, body: Bytes, limit: usize) -> Option<String> {
    let head = Capture::Events.head(parts).ok()?;
    let body = posthog::decode(body, head.wire(), limit).ok()?;
    let asking: Value = serde_json::from_slice(&body).ok()?;
    let token = asking.get("token").or_else(|| asking.get(posthog::KEY))?;
    token.as_str().map(str::to_owned)
}

/// `GET /flags/definitions` (posthog-python 7.11.2 and later, posthog-node 5.29.4 and later)
/// and `/api/feature_flag/local_evaluation` (before them), polled when the SDK is given a
/// personal API key: no flags to evaluate locally. The key is not checked: there is
/// nothing to give away.
pub async fn flag_definitions() -> Response {
    Json(json!({"flags": [], "group_type_mapping": {}, "cohorts": {}})).into_response()
}

/// `GET /static/{file}.js` and `/static/{version}/{file}.js`: posthog-js's scripts, from
/// `posthog_static_dir` (the npm package's `dist/`): `array.js`, which the HTML snippet loads,
/// and the extensions posthog-js loads lazily (`exception-autocapture.js`, `lazy-recorder.js`,
/// ...), which it asks for under its version first. The directory holds one version, served
/// under any. Any other name, or any file when no directory is set, is a 404.
pub async fn script(
    State(state): State<AppState>,
    Path(path): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let file = path.get("file").map_or("", String::as_str);
    let found = match &state.edge.posthog_static_dir {
        Some(dir) if is_script_name(file) => tokio::fs::read(dir.join(file)).await.ok(),
        _ => None,
    };
    let Some(script) = found else {
        return ApiError::NotFound.into_response();
    };
    // Versionless names: a browser keeps them an hour, as PostHog's own host lets it.
    let headers = [
        (
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        ),
        (header::CACHE_CONTROL, "public, max-age=3600"),
    ];
    (headers, script).into_response()
}

/// Whether `file` names a script of the directory itself: `NAME.js`, one path segment, no
/// hidden file, nothing that climbs out.
fn is_script_name(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".js") else {
        return false;
    };
    !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    use crate::state::AppState;
    use crate::testing::{envelope, state, RECORDER, SECRET};

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

    #[tokio::test]
    async fn snapshots_are_a_recording_per_session_and_recording_is_on_for_its_tokens() {
        let sink = Arc::new(MemorySink::accepting());
        let snapshot = |session: &str, n: u32| {
            json!({"event": "$snapshot", "properties": {
                "token": RECORDER, "distinct_id": "d", "$session_id": session,
                "$window_id": "w", "$snapshot_data": [
                    {"type": 2, "data": {"n": n}},
                    {"type": 5, "data": {"tag": "$posthog_config", "payload": {"config": {"token": RECORDER}}}},
                ],
            }})
        };
        let batch = json!([snapshot("s1", 1), snapshot("s2", 2), snapshot("s1", 3)]);
        let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzipped.write_all(batch.to_string().as_bytes()).unwrap();
        let uri = "/s/?compression=gzip-js&ver=1.449.2";
        let body = gzipped.finish().unwrap();
        let (status, answer) = post(Arc::clone(&sink), uri, "text/plain", body.clone()).await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"status": 1})));
        let recordings: Vec<_> = (sink.records().iter())
            .map(|record| match envelope(record).event {
                Some(crate::proto::envelope::Event::Recording(r)) => (record.key.clone(), r),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            recordings.len(),
            2,
            "one recording (of one chunk) a session"
        );
        let (key, s1) = &recordings[0];
        assert_eq!(
            (key.as_str(), s1.r#type.as_str(), s1.last),
            ("s1", "$snapshot", true)
        );
        let events: Value = serde_json::from_slice(&s1.data).unwrap();
        let ns: Vec<_> = (events.as_array().unwrap().iter())
            .map(|e| e["properties"]["$snapshot_data"][0]["data"]["n"].clone())
            .collect();
        assert_eq!(ns, [json!(1), json!(3)]);
        assert!(
            events[0]["properties"].get("token").is_none(),
            "the token is taken out"
        );
        // A token without `recording` is refused them.
        let other =
            json!([{"event": "$snapshot", "properties": {"token": SECRET, "$session_id": "s"}}]);
        let (status, _) = post(
            sink,
            "/s/",
            "application/json",
            other.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Recording is on for the token that may send them, off for the others.
        let router = public_router(state(Arc::new(MemorySink::accepting()), |_| {}));
        for (token, on) in [(RECORDER, true), (SECRET, false), ("unknown", false)] {
            let get = Request::get(format!("/array/{token}/config"))
                .body(Body::empty())
                .unwrap();
            let config: Value = serde_json::from_slice(&send(&router, get).await.2).unwrap();
            assert_eq!(config["sessionRecording"].is_object(), on, "{token}");
            let asking = json!({"token": token, "distinct_id": "d"}).to_string();
            let flags = Request::post("/flags/?v=2&config=true")
                .body(Body::from(asking))
                .unwrap();
            let flags: Value = serde_json::from_slice(&send(&router, flags).await.2).unwrap();
            assert_eq!(
                flags["sessionRecording"]["endpoint"] == "/s/",
                on,
                "{token}"
            );
        }
    }

    /// A posthog-js `$exception` event (posthog-js 1.449's shape: the raised exception first,
    /// its frames the outermost first).
    fn exception_event(token: &str) -> Value {
        json!({
            "event": "$exception",
            "uuid": "01938e1c-6a52-7d6b-9b7e-1b0b3c0c1a2b",
            "timestamp": "2026-12-07T10:00:00.000Z",
            "properties": {
                "token": token,
                "distinct_id": "d",
                "$session_id": "s",
                "$exception_level": "error",
                "$exception_list": [
                    {
                        "type": "TypeError",
                        "value": "x is undefined",
                        "mechanism": {"handled": false, "type": "onerror"},
                        "stacktrace": {"type": "raw", "frames": [
                            {"filename": "https://a.example/app.js", "function": "main", "lineno": 1, "colno": 2, "in_app": true},
                            {"filename": "https://a.example/app.js", "function": "pay", "lineno": 10, "colno": 7, "in_app": true},
                        ]},
                    },
                    {"type": "Error", "value": "the cause"},
                ],
                "$exception_fingerprint": "fp",
            },
        })
    }

    #[tokio::test]
    async fn an_exception_event_is_an_occurrence_beside_the_batch_s_beacons() {
        let sink = Arc::new(MemorySink::accepting());
        let pageview =
            json!({"event": "$pageview", "distinct_id": "d", "properties": {"token": SECRET}});
        let body = json!({"api_key": SECRET, "batch": [pageview, exception_event(SECRET)]});
        let (status, answer) = post(
            Arc::clone(&sink),
            "/batch/",
            "application/json",
            body.to_string().into(),
        )
        .await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"status": 1})));
        let records = sink.records();
        assert_eq!(records.len(), 2);
        assert_eq!(crate::testing::beacon(&records[0]).event, "$pageview");
        let occurrence = crate::testing::occurrence(&records[1]);
        assert_eq!(records[1].key, "a", "keyed by the account");
        assert_eq!(occurrence.level(), crate::proto::Level::Error);
        assert_eq!(occurrence.fingerprint, "fp");
        let exception = occurrence.exception.unwrap();
        assert_eq!(
            (exception.class.as_str(), exception.message.as_str()),
            ("TypeError", "x is undefined")
        );
        let methods: Vec<&str> = exception.frames.iter().map(|f| f.method.as_str()).collect();
        assert_eq!(methods, ["main", "pay"]);
        let envelope = crate::testing::envelope(&records[1]);
        assert_eq!(envelope.source, "posthog");
        assert_eq!(envelope.event_id, "01938e1c-6a52-7d6b-9b7e-1b0b3c0c1a2b");
        let custom: Value = serde_json::from_str(&occurrence.custom_json).unwrap();
        assert_eq!(custom["$exception_causes"][0]["value"], "the cause");
        assert_eq!(custom["properties"]["$session_id"], "s");
        assert!(
            !occurrence.custom_json.contains(SECRET),
            "the token is never kept"
        );
    }

    #[tokio::test]
    async fn without_occurrences_a_token_s_exceptions_stay_beacons() {
        let registry = crate::auth::Registry::parse(
            &format!(
                "[[token]]\nid = \"web\"\ntoken = \"{SECRET}\"\nproject_id = \"p\"\n\
                 account_id = \"a\"\nkinds = [\"beacon\"]\nrate_per_sec = 100\nburst = 100\n"
            ),
            None,
        )
        .unwrap();
        let sink = Arc::new(MemorySink::accepting());
        let tokens = Arc::new(crate::auth::Tokens::fixed(registry));
        let config = crate::testing::config(|_| {});
        let router = public_router(AppState::new(config, tokens, sink.clone()));
        let request = Request::post("/e/")
            .body(Body::from(exception_event(SECRET).to_string()))
            .unwrap();
        let (status, _, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(crate::testing::beacon(&records[0]).event, "$exception");
    }

    #[tokio::test]
    async fn a_batch_as_large_as_posthog_python_sends_is_taken() {
        let sink = Arc::new(MemorySink::accepting());
        // 100 events of 60 KB: 6 MB of plain JSON, past the beacons' 1 MiB body cap.
        let event =
            json!({"event": "e", "distinct_id": "d", "properties": {"blob": "x".repeat(60_000)}});
        let body = json!({"api_key": SECRET, "batch": vec![event; 100]}).to_string();
        assert!(body.len() > 6_000_000);
        let (status, answer) = post(
            Arc::clone(&sink),
            "/batch/",
            "application/json",
            body.into(),
        )
        .await;
        assert_eq!((status, answer), (StatusCode::OK, json!({"status": 1})));
        assert_eq!(sink.records().len(), 100);
        // Past PostHog's own cap: 413.
        let body = format!(
            r#"{{"api_key":"{SECRET}","batch":[{{"blob":"{}"}}]}}"#,
            "x".repeat(MAX_BODY)
        );
        let (status, answer) = post(
            Arc::clone(&sink),
            "/batch/",
            "application/json",
            body.into(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    }

    #[tokio::test]
    async fn flags_decide_and_local_evaluation_answer_no_flags() {
        let router = public_router(state(Arc::new(MemorySink::accepting()), |_| {}));
        for uri in ["/decide/?v=3", "/decide?v=2", "/flags/?v=2&config=true"] {
            let request = Request::post(uri)
                .body(Body::from(r#"{"token":"t","distinct_id":"d"}"#))
                .unwrap();
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(answer["featureFlags"], json!({}), "{uri}");
            assert_eq!(answer["featureFlagPayloads"], json!({}), "{uri}");
            assert_eq!(answer["errorsWhileComputingFlags"], false, "{uri}");
            assert_eq!(answer["sessionRecording"], false, "{uri}");
            assert_eq!(answer["supportedCompression"], json!(["gzip", "gzip-js"]));
        }
        // Local evaluation, where posthog-python 7.11.2+ and posthog-node 5.29.4+ poll, and
        // where the versions before them did.
        for uri in [
            "/flags/definitions?token=t&send_cohorts",
            "/api/feature_flag/local_evaluation/?token=t&send_cohorts",
        ] {
            let request = Request::get(uri).body(Body::empty()).unwrap();
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                answer,
                json!({"flags": [], "group_type_mapping": {}, "cohorts": {}})
            );
        }
    }

    #[tokio::test]
    async fn scripts_are_served_from_the_static_dir_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("inlet-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("array.js"), "/* posthog */").unwrap();
        std::fs::write(dir.join("sub/x.js"), "no").unwrap();
        std::fs::write(dir.join("array.js.map"), "{}").unwrap();
        let static_dir = dir.clone();
        let router = public_router(state(Arc::new(MemorySink::accepting()), |s| {
            s.posthog_static_dir = Some(static_dir)
        }));
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let (status, headers, body) = send(&router, get("/static/array.js")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"/* posthog */");
        // Under posthog-js's version first, as it asks for its extensions.
        let (status, _, body) = send(&router, get("/static/1.449.2/array.js?v=1")).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"/* posthog */"[..]));
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "application/javascript; charset=utf-8"
        );
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age"));
        for uri in [
            "/static/missing.js",
            "/static/array.js.map",
            "/static/sub/x.js",
            "/static/..%2Farray.js",
            "/static/sub%2Fx.js",
            "/static/.js",
        ] {
            let (status, _, _) = send(&router, get(uri)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        }
        // No directory set: nothing is served.
        let router = public_router(state(Arc::new(MemorySink::accepting()), |_| {}));
        let (status, _, _) = send(&router, get("/static/array.js")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

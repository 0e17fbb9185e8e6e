//! `POST /v1/traces`, `/v1/logs`, `/v1/metrics`: OTLP over HTTP, as the OpenTelemetry protocol
//! specifies it, into the OTLP lanes (see [`crate::otlp`]).
//!
//! - Bodies `application/x-protobuf`, or `application/json` (OTLP/JSON, converted), in any
//!   content encoding inlet decodes, within the lanes' caps (`otlp_max_*_bytes`).
//! - The token from `Authorization: Bearer` or `X-Inlet-Token`, as `OTEL_EXPORTER_OTLP_HEADERS`
//!   sets them; the token must list the signal's lane (`traces`, `logs`, `metrics`).
//! - Answers in the request's encoding: 200 with the `Export*ServiceResponse` (its
//!   `partial_success` counting what was refused, and why) under every delivery mode, as the
//!   exporters expect; errors as a `google.rpc.Status` whose message starts with inlet's
//!   stable code, with the status the specification gives (400, 401, 403, 413, 415; 429 and
//!   503 with `Retry-After`, which the exporters wait for before they retry). The CORS layer
//!   adds its headers to every answer, so browser exporters read them.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::adapter::{authorize, panicked, read_body, CatchUnwind};
use super::authenticate::presented_secret;
use super::body::media_type;
use super::reply::OriginRefused;
use crate::error::ApiError;
use crate::otlp::Signal;
use crate::pipeline::Exported;
use crate::state::AppState;

/// The media types of OTLP over HTTP.
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The handler of `signal`'s route.
pub async fn export(signal: Signal, state: AppState, request: Request) -> Response {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with(JSON));
    let route = request.extensions().get::<MatchedPath>().cloned();
    let outcome = match CatchUnwind(run(signal, &state, request, json)).await {
        Ok(outcome) => outcome,
        Err(panic) => Err(panicked(
            route.as_ref().map_or("", MatchedPath::as_str),
            &*panic,
        )),
    };
    match outcome {
        Ok(exported) => answer(signal, exported, json),
        Err(error) => refuse(error, json),
    }
}

async fn run(
    signal: Signal,
    state: &AppState,
    request: Request,
    json: bool,
) -> Result<Exported, ApiError> {
    let (parts, body) = request.into_parts();
    let auth = authorize(state, &parts, signal.lane(), presented_secret(&parts))?;
    // No `Content-Type` is taken as protobuf, OTLP's default.
    media_type(&parts.headers, &[PROTOBUF, JSON])?;
    let body = read_body(state, state.limits(signal.lane()), &parts, body).await?;
    let client = auth.client(&parts.headers);
    (state.pipeline)
        .export(&auth.token, client, signal, body, json)
        .await
}

/// 200 with the export response, in the request's encoding.
fn answer(signal: Signal, exported: Exported, json: bool) -> Response {
    let (rejected, message) = (exported.rejected as u64, exported.message);
    let (body, media) = match json {
        true => (signal.response_json(rejected, message), JSON),
        false => (signal.response(rejected, message), PROTOBUF),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
        body,
    )
        .into_response()
}

/// The error's status and `Retry-After`, its body a `google.rpc.Status` in the request's
/// encoding (with inlet's usual `error` object beside it in JSON).
fn refuse(error: ApiError, json: bool) -> Response {
    let status = error.status();
    let message = format!("{}: {error}", error.code());
    let (body, media) = match json {
        true => {
            let body = serde_json::json!({
                "code": grpc_code(status),
                "message": message,
                "error": { "code": error.code(), "message": error.to_string() },
            });
            (serde_json::to_vec(&body).unwrap_or_default(), JSON)
        }
        false => (rpc_status(grpc_code(status), &message), PROTOBUF),
    };
    // The usual answer gives the headers (Retry-After, the origin's refusal) and the log line.
    let usual = error.into_response();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    if let Some(retry_after) = usual.headers().get(header::RETRY_AFTER) {
        headers.insert(header::RETRY_AFTER, retry_after.clone());
    }
    if let Some(refused) = usual.extensions().get::<OriginRefused>() {
        response.extensions_mut().insert(*refused);
    }
    response
}

/// The gRPC status code an HTTP status maps to, as the OTLP specification pairs them.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        408 => 4,             // DEADLINE_EXCEEDED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// A `google.rpc.Status` (`code` = 1, `message` = 2) as protobuf.
fn rpc_status(code: i32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    prost::encoding::int32::encode(1, &code, &mut out);
    prost::encoding::string::encode(2, &message.to_owned(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use prost::Message as _;
    use serde_json::{json, Value};

    use super::*;
    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::opentelemetry::proto::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use crate::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
    use crate::opentelemetry::proto::resource::v1::Resource;
    use crate::opentelemetry::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
    use crate::sink::memory::MemorySink;
    use crate::sink::Failure;
    use crate::testing::{state, OTEL, OTEL_TIGHT, SECRET};

    fn span(trace: u8, id: u8, name: &str) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: name.into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id),
            attributes: vec![KeyValue {
                key: "http.status".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(200)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("shop".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
            }],
        }
    }

    fn post(path: &str, token: &str, media: &str, body: Vec<u8>) -> Request<Body> {
        Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, media)
            .header(header::ORIGIN, "https://app.example")
            .body(Body::from(body))
            .unwrap()
    }

    /// Each landed record's key and its spans' names.
    fn landed(sink: &MemorySink) -> Vec<(String, Vec<String>)> {
        sink.records()
            .iter()
            .map(|record| {
                let request = ExportTraceServiceRequest::decode(&record.value[..]).unwrap();
                let names = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| s.name.clone())
                    .collect();
                (record.key.clone(), names)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_trace_s_spans_land_in_one_record_keyed_by_its_id_with_the_metadata_in_headers() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let request = export(vec![span(1, 1, "a"), span(2, 2, "b"), span(1, 3, "c")]);
        let body = request.encode_to_vec();
        let (status, headers, answer) =
            send(&router, post("/v1/traces", OTEL, PROTOBUF, body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(headers[header::CONTENT_TYPE], PROTOBUF);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        let answer = ExportTraceServiceResponse::decode(&answer[..]).unwrap();
        assert_eq!(answer.partial_success, None);
        assert_eq!(
            landed(&sink),
            [
                ("01".repeat(16), vec!["a".to_string(), "c".to_string()]),
                ("02".repeat(16), vec!["b".to_string()]),
            ]
        );
        let record = &sink.records()[0];
        assert_eq!(record.kind, crate::lane::Lane::TRACES);
        let header = |name: &str| {
            let found = record.headers.iter().find(|(n, _)| n == name);
            found
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            (
                header("inlet-token-id"),
                header("inlet-project-id"),
                header("inlet-account-id")
            ),
            ("otel".into(), "p".into(), "a".into())
        );
        assert!(header("inlet-received-at-ms").parse::<i64>().unwrap() > 0);
        // Everything but the spans' grouping is as sent: resource, schema, span fields.
        let one = ExportTraceServiceRequest::decode(&record.value[..]).unwrap();
        let sent = &request.resource_spans[0];
        assert_eq!(one.resource_spans[0].resource, sent.resource);
        assert_eq!(one.resource_spans[0].schema_url, sent.schema_url);
        assert_eq!(
            one.resource_spans[0].scope_spans[0].spans[1],
            span(1, 3, "c")
        );
    }

    #[tokio::test]
    async fn otlp_json_with_hex_ids_enum_names_and_string_integers_lands_as_its_protobuf() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "shop"}}
            ]},
            "scopeSpans": [{"spans": [
                {
                    "traceId": "0102030405060708090A0B0C0D0E0F10",
                    "spanId": "1112131415161718",
                    "name": "GET /",
                    "kind": "SPAN_KIND_SERVER",
                    "startTimeUnixNano": "1700000000000000001",
                    "endTimeUnixNano": 1700000000000000002u64,
                    "attributes": [
                        {"key": "n", "value": {"intValue": "42"}},
                        {"key": "d", "value": {"doubleValue": "NaN"}},
                        {"key": "b", "value": {"bytesValue": "aGk="}}
                    ],
                    "status": {"code": 2, "message": "boom"},
                    "futureField": {"ignored": true}
                }
            ]}]
        }]});
        let request = post(
            "/v1/traces",
            OTEL,
            "application/json; charset=utf-8",
            body.to_string().into_bytes(),
        );
        let (status, headers, answer) = send(&router, request).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(headers[header::CONTENT_TYPE], JSON);
        assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap(), json!({}));
        let records = sink.records();
        assert_eq!(records[0].key, "0102030405060708090a0b0c0d0e0f10");
        let landed = ExportTraceServiceRequest::decode(&records[0].value[..]).unwrap();
        let span = &landed.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.span_id,
            [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_001);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_000_000_002);
        let values: Vec<_> = span
            .attributes
            .iter()
            .map(|a| a.value.clone().unwrap().value.unwrap())
            .collect();
        assert_eq!(values[0], any_value::Value::IntValue(42));
        assert!(matches!(values[1], any_value::Value::DoubleValue(d) if d.is_nan()));
        assert_eq!(values[2], any_value::Value::BytesValue(b"hi".to_vec()));
        assert_eq!(
            span.status.as_ref().map(|s| (s.code, s.message.as_str())),
            Some((2, "boom"))
        );
    }

    #[tokio::test]
    async fn a_span_without_a_trace_id_is_a_partial_success_and_a_malformed_body_a_400() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let mut bad = span(0, 9, "no trace");
        bad.trace_id.clear();
        let body = export(vec![span(3, 1, "ok"), bad]).encode_to_vec();
        let (status, _, answer) = send(&router, post("/v1/traces", OTEL, PROTOBUF, body)).await;
        assert_eq!(status, StatusCode::OK);
        let partial = ExportTraceServiceResponse::decode(&answer[..])
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("trace_id"),
            "{}",
            partial.error_message
        );
        assert_eq!(landed(&sink).len(), 1);
        // The same in JSON: the count is a string, as proto3's JSON writes an int64.
        let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]});
        let request = post("/v1/traces", OTEL, JSON, body.to_string().into_bytes());
        let (status, _, answer) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1");
        // Not protobuf at all: 400 with a google.rpc.Status naming inlet's code.
        let request = post("/v1/traces", OTEL, PROTOBUF, b"\xff\xff\xff".to_vec());
        let (status, _, answer) = send(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let message = String::from_utf8_lossy(&answer);
        assert!(message.contains("malformed_body"), "{message}");
        // A JSON id that is not hex.
        let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "AQID"}]}]}]});
        let request = post("/v1/traces", OTEL, JSON, body.to_string().into_bytes());
        let (status, _, answer) = send(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["code"], 3);
        assert_eq!(answer["error"]["code"], "malformed_body");
        assert!(
            answer["message"].as_str().unwrap().contains("traceId"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn tokens_limits_and_a_full_queue_answer_as_the_exporters_expect() {
        let full = Arc::new(MemorySink::answering(|_| Err(Failure::QueueFull)));
        let router = public_router(state(Arc::clone(&full), |_| {}));
        let body = || export(vec![span(1, 1, "a")]).encode_to_vec();
        // A token without the lane, and a wrong media type.
        let (status, _, _) = send(&router, post("/v1/traces", SECRET, PROTOBUF, body())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, answer) = send(&router, post("/v1/traces", OTEL, "text/csv", body())).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let message = String::from_utf8_lossy(&answer);
        assert!(
            message.contains("use application/x-protobuf or application/json"),
            "{message}"
        );
        let (status, headers, _) = send(&router, post("/v1/traces", OTEL, PROTOBUF, body())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        // 25 spans against a burst of 20: 429 with the wait.
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let spans = (0..25).map(|i| span(1, i, "s")).collect();
        let request = post(
            "/v1/traces",
            OTEL_TIGHT,
            PROTOBUF,
            export(spans).encode_to_vec(),
        );
        let (status, _, _) = send(&router, request).await;
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than the burst, ever"
        );
        let spans: Vec<_> = (0..15).map(|i| span(1, i, "s")).collect();
        let first = post(
            "/v1/traces",
            OTEL_TIGHT,
            PROTOBUF,
            export(spans.clone()).encode_to_vec(),
        );
        assert_eq!(send(&router, first).await.0, StatusCode::OK);
        let again = post(
            "/v1/traces",
            OTEL_TIGHT,
            PROTOBUF,
            export(spans).encode_to_vec(),
        );
        let (status, headers, _) = send(&router, again).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
    }

    #[tokio::test]
    async fn refused_bytes_become_dead_letters_with_their_bytes() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.dead_letters = Some(crate::settings::Switch::On)
        }));
        let garbage = b"\x0a\x05ab".to_vec();
        let request = post("/v1/traces", OTEL, PROTOBUF, garbage.clone());
        assert_eq!(send(&router, request).await.0, StatusCode::BAD_REQUEST);
        let mut bad = span(0, 1, "no trace");
        bad.trace_id.clear();
        let body = export(vec![bad.clone(), span(1, 2, "fine")]).encode_to_vec();
        assert_eq!(
            send(&router, post("/v1/traces", OTEL, PROTOBUF, body))
                .await
                .0,
            StatusCode::OK
        );
        let letters: Vec<crate::proto::DeadLetter> = (sink.posted().iter())
            .map(|r| crate::proto::DeadLetter::decode(&r.value[..]).unwrap())
            .collect();
        let seen: Vec<_> = (letters.iter())
            .map(|l| {
                (
                    l.kind.as_str(),
                    l.source.as_str(),
                    l.code.as_str(),
                    l.raw.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("traces", "otlp", "malformed_body", ""),
                ("traces", "otlp", "invalid_trace_id", "")
            ]
        );
        assert_eq!(letters[0].binary, garbage);
        assert_eq!(Span::decode(&letters[1].binary[..]).unwrap(), bad);
    }

    #[tokio::test]
    async fn a_span_sent_again_within_the_dedupe_window_is_answered_and_not_produced_again() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| s.dedupe_window_s = Some(60)));
        let body = |spans| export(spans).encode_to_vec();
        let first = post(
            "/v1/traces",
            OTEL,
            PROTOBUF,
            body(vec![span(1, 1, "a"), span(1, 2, "b")]),
        );
        assert_eq!(send(&router, first).await.0, StatusCode::OK);
        // The exporter retries the batch, with a span it had not sent.
        let again = vec![span(1, 1, "a"), span(1, 2, "b"), span(2, 3, "c")];
        let (status, _, answer) =
            send(&router, post("/v1/traces", OTEL, PROTOBUF, body(again))).await;
        assert_eq!(status, StatusCode::OK);
        let answer = ExportTraceServiceResponse::decode(&answer[..]).unwrap();
        assert_eq!(answer.partial_success, None, "duplicates are accepted");
        let names: Vec<String> = landed(&sink).into_iter().flat_map(|(_, n)| n).collect();
        assert_eq!(names, ["a", "b", "c"], "each span produced once");
    }

    #[tokio::test]
    async fn a_trace_larger_than_a_message_is_cut_into_records_under_it_and_none_is_lost() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.otlp_max_message_bytes = Some(4096)
        }));
        let spans: Vec<_> = (0..100u8)
            .map(|i| Span {
                name: format!("span-{i}-{}", "x".repeat(200)),
                ..span(7, i, "")
            })
            .collect();
        let mut huge = span(7, 200, "huge");
        huge.name = "y".repeat(8000);
        let mut all = spans.clone();
        all.push(huge);
        let body = export(all).encode_to_vec();
        let (status, _, answer) = send(&router, post("/v1/traces", OTEL, PROTOBUF, body)).await;
        assert_eq!(status, StatusCode::OK);
        let partial = ExportTraceServiceResponse::decode(&answer[..])
            .unwrap()
            .partial_success
            .unwrap();
        assert_eq!(
            partial.rejected_spans, 1,
            "the one span larger than a message"
        );
        let records = sink.records();
        assert!(records.len() > 5, "{} records", records.len());
        assert!(records
            .iter()
            .all(|r| r.value.len() <= 4096 && r.key == "07".repeat(16)));
        let names: Vec<String> = landed(&sink).into_iter().flat_map(|(_, n)| n).collect();
        let sent: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, sent, "every span once, in order");
    }
}

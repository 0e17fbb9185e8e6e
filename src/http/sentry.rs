//! Sentry's endpoints, `POST /api/{project}/envelope/` and `POST /api/{project}/store/`, for
//! `sentry-sdk`, `@sentry/node` and `@sentry/browser` pointed at inlet by their DSN
//! (`http://KEY@inlet:8080/PROJECT`). The key is the DSN's public key, from `X-Sentry-Auth`
//! (sentry-python) or `?sentry_key=` (the JavaScript SDKs); the project in the path is not
//! read: the token says which project the events are for.
//!
//! Answers as Sentry does: 200 `{"id": EVENT_ID}` (32 hex digits); errors `{"detail": M,
//! "code": C}` with inlet's status; a rate limit as 429 with `Retry-After` and
//! `X-Sentry-Rate-Limits: SECS::organization`, which the SDKs obey for every category.

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;

use super::adapter::{Limits, Protocol, Translation};
use super::sdk::{self, header_value};
use crate::batch::Batch;
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::report::Report;
use crate::sdk::{sentry, Items};

/// Sentry's endpoints: an envelope, or one event as older SDKs `/store/` it.
#[derive(Debug, Clone, Copy)]
pub enum Sentry {
    /// `POST /api/{project}/envelope/`: its `event` items become occurrences, its replay
    /// items recordings, its other items go to the `item` lane as written.
    Envelope,
    /// `POST /api/{project}/store/`: one event.
    Store,
    /// `POST /api/{project}/security/?sentry_key=K`: a browser's CSP (or other security policy)
    /// report, sent to the `report-uri` Sentry gives, as one `security` item.
    Security,
}

impl Protocol for Sentry {
    /// The request's media type (a security report's).
    type Head = Option<String>;
    /// The id to answer: the first event's, else the envelope's.
    type Receipt = Option<Uuid>;

    fn lane(self) -> Lane {
        match self {
            Sentry::Envelope | Sentry::Store => Lane::OCCURRENCE,
            Sentry::Security => Lane::ITEM,
        }
    }

    fn key(self, parts: &Parts) -> Option<String> {
        sentry_key(parts)
    }

    /// An envelope sent through the SDKs' `tunnel` carries its key only in its header's `dsn`.
    fn key_in_body(self) -> bool {
        matches!(self, Sentry::Envelope)
    }

    /// Any media type: sentry-python sends `application/x-sentry-envelope`, `@sentry/node`
    /// none, browsers `application/csp-report` or `application/reports+json`.
    fn head(self, parts: &Parts) -> Result<Option<String>, ApiError> {
        Ok(header_value(&parts.headers, "content-type"))
    }

    fn translate(
        self,
        media_type: Option<String>,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<Option<Uuid>>, ApiError> {
        let (reports, others, envelope_id, items, key) = match self {
            Sentry::Envelope => {
                let envelope = sentry::envelope(&body).map_err(ApiError::MalformedBody)?;
                let reports = (envelope.events.iter().enumerate())
                    .map(|(index, raw)| {
                        sdk::check_size(limits.lane.max_event, index, raw.len())?;
                        Ok(sentry::event(raw, envelope.event_id))
                    })
                    .collect::<Result<Vec<Report>, ApiError>>()?;
                let others = (envelope.items().enumerate())
                    .map(|(index, other)| {
                        sdk::check_size(limits.max_item, index, other.payload.len())?;
                        Ok(sentry::item(other))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                // Bounded by the envelope's own cap, and cut into chunks: no item cap.
                let replays: Vec<_> = (envelope.replays())
                    .map(|other| sentry::replay(other, envelope.event_id))
                    .collect();
                let mut items = Items::default();
                envelope.labels().for_each(|kind| items.add(kind));
                let others = vec![(Lane::ITEM, others), (Lane::RECORDING, replays)];
                (reports, others, envelope.event_id, items, envelope.dsn_key)
            }
            Sentry::Store => {
                sdk::check_size(limits.lane.max_event, 0, body.len())?;
                let report = sentry::event(&body, None);
                (vec![report], Vec::new(), None, Items::one("event"), None)
            }
            Sentry::Security => {
                sdk::check_size(limits.max_item, 0, body.len())?;
                let media_type = media_type.as_deref().unwrap_or("application/json");
                let report = sentry::security_report(media_type, &body);
                let batch = Batch::translated(Lane::ITEM, Source::Sentry, vec![report]);
                return Ok(Translation::of(batch, None).with_items(Items::one("security")));
            }
        };
        let id = reports.first().map(|r| r.id).or(envelope_id);
        let also = (others.into_iter())
            .filter(|(_, items)| !items.is_empty())
            .map(|(lane, items)| Batch::translated(lane, Source::Sentry, items))
            .collect();
        Ok(Translation {
            also,
            ..Translation::of(sdk::reports(Source::Sentry, reports), id)
                .with_key(key)
                .with_items(items)
        })
    }

    /// Sentry's answer: 200 `{"id": "<32 hex>"}`, or the error in Sentry's shape.
    fn reply(self, outcome: Result<(Answer, Option<Uuid>), ApiError>) -> Response {
        match outcome {
            // As Sentry answers a report: created, nothing to say.
            Ok(_) if matches!(self, Sentry::Security) => StatusCode::CREATED.into_response(),
            Ok((_, id)) => sdk::success(
                StatusCode::OK,
                json!({ "id": id.map(|id| id.simple().to_string()) }),
            ),
            Err(error) => error_answer(error),
        }
    }
}

/// The DSN's public key: `sentry_key` of `X-Sentry-Auth: Sentry sentry_key=K, ...`, else of
/// the query string.
fn sentry_key(parts: &Parts) -> Option<String> {
    let from_header = header_value(&parts.headers, "x-sentry-auth").and_then(|auth| {
        let fields = auth
            .strip_prefix("Sentry ")
            .or_else(|| auth.strip_prefix("sentry "))?;
        fields.split(',').find_map(|field| {
            let (name, value) = field.trim().split_once('=')?;
            (name.trim() == "sentry_key").then(|| value.trim().to_owned())
        })
    });
    from_header.or_else(|| {
        let query = parts.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "sentry_key")
            .map(|(_, value)| value.into_owned())
    })
}

/// An error as Sentry answers one, with the rate limit header the SDKs obey on a 429.
fn error_answer(error: ApiError) -> Response {
    let limited = sdk::rate_limited_secs(&error);
    let mut response = sdk::error_answer(
        error,
        |_, code, message| json!({"detail": message, "code": code}),
    );
    if let Some(secs) = limited {
        sdk::set_header(
            &mut response,
            "x-sentry-rate-limits",
            format!("{secs}::organization"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use serde_json::Value;

    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::lane::Lane;
    use crate::sink::memory::MemorySink;
    use crate::testing::{envelope, state, RECORDER, SECRET};

    const EXCEPTION: &[u8] =
        include_bytes!("../../tests/sdk/payloads/sentry/python-exception.envelope");

    fn post(uri: &str, auth: Option<&str>, body: &[u8]) -> Request<Body> {
        let mut request =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-sentry-envelope");
        if let Some(auth) = auth {
            request = request.header("x-sentry-auth", auth);
        }
        request.body(Body::from(body.to_vec())).unwrap()
    }

    #[tokio::test]
    async fn an_envelope_is_answered_with_its_event_id_and_produced_once() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let auth = format!("Sentry sentry_key={SECRET}, sentry_version=7, sentry_client=x/1");
        let (status, _, body) =
            send(&router, post("/api/42/envelope/", Some(&auth), EXCEPTION)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], "7bc7b823935a4609849b520f1d57f41c");
        let records = sink.records();
        assert_eq!(records.len(), 1);
        // The key in the query string, on the path without its trailing slash, and /store/.
        let uri = format!("/api/42/envelope?sentry_key={SECRET}&sentry_version=7");
        let (status, _, _) = send(&router, post(&uri, None, EXCEPTION)).await;
        assert_eq!(status, StatusCode::OK);
        let event = EXCEPTION.split(|b| *b == b'\n').nth(2).unwrap();
        let uri = format!("/api/42/store/?sentry_key={SECRET}");
        let (status, _, body) = send(&router, post(&uri, None, event)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sink.records().len(), 3);
    }

    /// A request's path, `X-Sentry-Auth` and body, and the status and code of its answer.
    type Case<'a> = (&'a str, Option<&'a str>, &'a [u8], StatusCode, &'a str);

    #[tokio::test]
    async fn errors_keep_their_status_and_code_in_sentry_shape() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let cases: [Case; 4] = [
            (
                "/api/1/envelope/",
                None,
                EXCEPTION,
                StatusCode::UNAUTHORIZED,
                "missing_token",
            ),
            (
                "/api/1/envelope/",
                Some("Sentry sentry_key=nope"),
                EXCEPTION,
                StatusCode::UNAUTHORIZED,
                "unknown_token",
            ),
            (
                "/api/1/envelope/?sentry_key=",
                Some(&format!("Sentry sentry_key={SECRET}")),
                b"nope\n",
                StatusCode::BAD_REQUEST,
                "malformed_body",
            ),
            (
                "/api/1/store/",
                Some(&format!("Sentry sentry_key={SECRET}")),
                br#"{"level":"error"}"#,
                StatusCode::BAD_REQUEST,
                "missing_field",
            ),
        ];
        for (uri, auth, body, expected, code) in cases {
            let (status, headers, body) = send(&router, post(uri, auth, body)).await;
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, expected, "{uri}: {body}");
            assert_eq!(body["code"], code, "{uri}: {body}");
            assert!(body["detail"].as_str().is_some(), "{uri}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        }
        assert!(sink.records().is_empty());
    }

    #[tokio::test]
    async fn an_envelope_without_events_is_answered_without_an_id_and_its_items_produced() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let body = b"{}\n{\"type\":\"client_report\"}\n{\"discarded_events\":[]}\n";
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, body) = send(&router, post(&uri, None, body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["id"],
            Value::Null
        );
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(item(&records[0]).r#type, "client_report");
    }

    fn item(record: &crate::sink::Record) -> crate::proto::Item {
        crate::testing::item(record, "sentry")
    }

    #[tokio::test]
    async fn every_item_of_an_envelope_is_produced_errors_as_occurrences_the_rest_as_items() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let event =
            br#"{"event_id":"0123456789abcdef0123456789abcdef","level":"error","message":"m"}"#;
        let transaction = br#"{"type":"transaction","transaction":"/checkout","spans":[]}"#;
        let attachment = b"line one\nline two";
        let session = br#"{"sid":"s","status":"ok","init":true}"#;
        let mut body = b"{\"event_id\":\"0123456789abcdef0123456789abcdef\"}\n".to_vec();
        for (header, payload) in [
            (
                format!(r#"{{"type":"event","length":{}}}"#, event.len()),
                &event[..],
            ),
            (
                format!(r#"{{"type":"transaction","length":{}}}"#, transaction.len()),
                &transaction[..],
            ),
            (
                format!(
                    r#"{{"type":"attachment","length":{},"filename":"log.txt","content_type":"text/plain"}}"#,
                    attachment.len()
                ),
                &attachment[..],
            ),
            // No length: up to the newline.
            (r#"{"type":"session"}"#.to_owned(), &session[..]),
        ] {
            body.extend_from_slice(header.as_bytes());
            body.push(b'\n');
            body.extend_from_slice(payload);
            body.push(b'\n');
        }
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, answer) = send(&router, post(&uri, None, &body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["id"], "0123456789abcdef0123456789abcdef");
        let records = sink.records();
        assert_eq!(records.len(), 4, "the event and three items");
        assert_eq!(records[0].kind, Lane::OCCURRENCE);
        let items: Vec<_> = records[1..].iter().map(item).collect();
        let seen: Vec<_> = (items.iter())
            .map(|i| {
                (
                    i.r#type.as_str(),
                    i.media_type.as_str(),
                    i.payload.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("transaction", "application/json", &transaction[..]),
                ("attachment", "text/plain", &attachment[..]),
                ("session", "application/json", &session[..]),
            ]
        );
        let headers: Value = serde_json::from_str(&items[1].headers_json).unwrap();
        assert_eq!(headers["filename"], "log.txt");
        assert!(
            records[1..].iter().all(|r| r.key == "a"),
            "keyed by account"
        );
    }

    #[tokio::test]
    async fn replay_items_are_recordings_of_the_replay_and_need_the_lane() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.recordings_chunk_bytes = Some(1024)
        }));
        let replay_event = br#"{"type":"replay_event","replay_id":"0123456789abcdef0123456789abcdef","segment_id":0}"#;
        let mut segment = b"{\"segment_id\":0}\n".to_vec();
        segment.extend((0..3000u32).map(|i| (i % 256) as u8));
        let mut body = br#"{"event_id":"0123456789abcdef0123456789abcdef"}"#.to_vec();
        body.extend_from_slice(b"\n{\"type\":\"replay_event\"}\n");
        body.extend_from_slice(replay_event);
        body.extend_from_slice(
            format!(
                "\n{{\"type\":\"replay_recording\",\"length\":{}}}\n",
                segment.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&segment);
        body.extend_from_slice(b"\n{\"type\":\"client_report\"}\n{}\n");
        // A token without `recording` is refused the envelope: recordings are opt-in.
        let uri = |key: &str| format!("/api/1/envelope/?sentry_key={key}");
        let (status, _, _) = send(&router, post(&uri(SECRET), None, &body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(sink.records().is_empty());
        let (status, _, answer) = send(&router, post(&uri(RECORDER), None, &body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let records = sink.records();
        assert_eq!(records[0].kind, Lane::ITEM, "the client report");
        let chunks: Vec<_> = (records[1..].iter())
            .map(|record| {
                assert_eq!(
                    (record.kind, record.key.as_str()),
                    (Lane::RECORDING, "0123456789abcdef0123456789abcdef")
                );
                match envelope(record).event {
                    Some(crate::proto::envelope::Event::Recording(r)) => r,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let kinds: Vec<_> = chunks
            .iter()
            .map(|c| (c.r#type.as_str(), c.index, c.last))
            .collect();
        assert_eq!(
            kinds,
            [
                ("replay_event", 0, true),
                ("replay_recording", 0, false),
                ("replay_recording", 1, false),
                ("replay_recording", 2, true),
            ]
        );
        assert_eq!(chunks[0].data, replay_event);
        let data: Vec<u8> = chunks[1..].iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(data, segment);
        assert_eq!(chunks[1].media_type, "application/octet-stream");
        assert!(chunks[1].headers_json.contains("replay_recording"));
    }

    #[tokio::test]
    async fn an_envelope_whose_event_is_invalid_is_400_and_its_items_are_not_produced() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let body = b"{}\n{\"type\":\"event\"}\n{\"level\":\"error\"}\n\
            {\"type\":\"transaction\"}\n{\"transaction\":\"t\"}\n";
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, answer) = send(&router, post(&uri, None, body)).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["code"], "missing_field");
        assert!(
            sink.records().is_empty(),
            "the SDK was told 400: nothing produced"
        );
    }

    #[tokio::test]
    async fn an_item_refused_beside_an_accepted_event_does_not_refuse_the_envelope() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let kind = "t".repeat(crate::event::MAX_ITEM_TYPE + 1);
        let body = format!(
            "{{}}\n{{\"type\":\"event\"}}\n{{\"message\":\"m\"}}\n{{\"type\":\"{kind}\"}}\n{{}}\n"
        );
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, answer) = send(&router, post(&uri, None, body.as_bytes())).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kind, Lane::OCCURRENCE);
    }

    #[tokio::test]
    async fn a_tunnelled_envelope_is_authenticated_by_its_headers_dsn() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let tunnelled = |key: &str| {
            let header = format!(
                r#"{{"event_id":"0123456789abcdef0123456789abcdef","dsn":"https://{key}@o1.ingest.sentry.io/42"}}"#
            );
            let body = format!("{header}\n{{\"type\":\"event\"}}\n{{\"message\":\"m\"}}\n");
            post("/api/42/envelope/", None, body.as_bytes())
        };
        let (status, _, body) = send(&router, tunnelled(SECRET)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sink.records().len(), 1);
        let (status, _, body) = send(&router, tunnelled("nope")).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unknown_token"))
        );
        assert_eq!(sink.records().len(), 1);
    }

    #[tokio::test]
    async fn a_csp_report_is_one_security_item_answered_201() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let report = br#"{"csp-report":{"document-uri":"https://shop.example/","violated-directive":"script-src"}}"#;
        let request = Request::post(format!("/api/42/security/?sentry_key={SECRET}"))
            .header(header::CONTENT_TYPE, "application/csp-report")
            .body(Body::from(report.to_vec()))
            .unwrap();
        let (status, _, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::CREATED);
        let records = sink.records();
        assert_eq!(records.len(), 1);
        let item = item(&records[0]);
        let seen = (
            item.r#type.as_str(),
            item.media_type.as_str(),
            item.payload.as_slice(),
        );
        assert_eq!(seen, ("security", "application/csp-report", &report[..]));
    }

    #[test]
    fn a_dsns_public_key_is_read_with_or_without_a_secret() {
        use crate::sdk::sentry::dsn_key;
        assert_eq!(
            dsn_key("https://abc@o1.ingest.sentry.io/42").as_deref(),
            Some("abc")
        );
        assert_eq!(
            dsn_key("http://abc:secret@localhost:9000/1").as_deref(),
            Some("abc")
        );
        assert_eq!(dsn_key("https://o1.ingest.sentry.io/42"), None);
        assert_eq!(dsn_key("not a dsn"), None);
    }

    #[tokio::test]
    async fn an_item_over_the_item_cap_is_413_and_nothing_of_its_envelope_is_produced() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.items_max_event_bytes = Some(100);
        }));
        let event = br#"{"level":"error","message":"m"}"#;
        let profile = "x".repeat(101);
        let body = format!(
            "{{}}\n{{\"type\":\"event\"}}\n{}\n{{\"type\":\"profile\"}}\n{profile}\n",
            String::from_utf8_lossy(event)
        );
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, answer) = send(&router, post(&uri, None, body.as_bytes())).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        assert_eq!(answer["code"], "event_too_large");
        assert!(sink.records().is_empty());
    }

    /// An envelope of `items` events, each about `size` bytes of JSON.
    fn envelope_of(items: usize, size: usize) -> Vec<u8> {
        let mut body = b"{\"event_id\":\"7bc7b823935a4609849b520f1d57f41c\"}\n".to_vec();
        for i in 0..items {
            let pad = "x".repeat(size);
            let event = format!(
                r#"{{"event_id":"{i:032x}","level":"error","message":"m{i}","extra":{{"pad":"{pad}"}}}}"#
            );
            body.extend_from_slice(
                format!("{{\"type\":\"event\",\"length\":{}}}\n", event.len()).as_bytes(),
            );
            body.extend_from_slice(event.as_bytes());
            body.push(b'\n');
        }
        body
    }

    /// One runtime thread: a 40 MiB envelope is translated on the blocking pool, so a small
    /// request sent after it is answered while it is still being translated (in place, it would
    /// hold the only thread until it was done).
    #[tokio::test(flavor = "current_thread")]
    async fn a_small_request_is_answered_while_a_40_mib_envelope_is_translated() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.occurrences_max_body_bytes = Some(48 << 20);
            s.occurrences_max_decoded_bytes = Some(48 << 20);
        }));
        let big = envelope_of(47, 900_000);
        assert!(big.len() >= 40 << 20);
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let large = tokio::spawn({
            let (router, request) = (router.clone(), post(&uri, None, &big));
            async move { send(&router, request).await }
        });
        // The large request runs until it waits for the blocking pool.
        tokio::task::yield_now().await;
        let (status, _, _) = send(&router, post(&uri, None, &envelope_of(1, 100))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !large.is_finished(),
            "the small request waited for the large one"
        );
        let (status, _, body) = large.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sink.records().len(), 48);
    }

    /// A tunnel (the application's own host, forwarding its browsers' envelopes) is a trusted
    /// proxy: failed keys are counted against the client it names in `X-Forwarded-For`, so one
    /// client's bad key does not lock out every other client behind the same tunnel.
    #[tokio::test]
    async fn failed_keys_behind_a_trusted_tunnel_block_only_their_client() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.trusted_proxies = Some(vec!["10.0.0.7".into()]);
            s.auth_failures_per_minute = Some(2);
        }));
        let through_tunnel = |client: &str, key: &str| {
            let mut request = post(
                &format!("/api/1/envelope/?sentry_key={key}"),
                None,
                EXCEPTION,
            );
            request
                .headers_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            let tunnel: std::net::SocketAddr = "10.0.0.7:41000".parse().unwrap();
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(tunnel));
            request
        };
        for _ in 0..2 {
            let (status, _, _) = send(&router, through_tunnel("203.0.113.5", "wrong")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _, body) = send(&router, through_tunnel("203.0.113.5", SECRET)).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "the failing client is blocked"
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "too_many_auth_failures");
        let (status, _, _) = send(&router, through_tunnel("203.0.113.6", SECRET)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "another client behind the same tunnel is not"
        );
        assert_eq!(sink.records().len(), 1);
    }
}

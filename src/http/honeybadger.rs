//! Honeybadger's endpoints, for the `honeybadger` SDKs pointed at inlet by their `endpoint`
//! setting (API.md v1.2, "Nothing answered as accepted is dropped"):
//!
//! - `POST /v1/notices`, `/v1/notices/js`: one notice, one occurrence; answered 201
//!   `{"id": U}`;
//! - `POST /v1/events` (Insights: NDJSON, one event a line, as honeybadger-python's
//!   `honeybadger.event()` and the Ruby gem send them): each line an `event` item; 201 `{}`
//!   (honeybadger-python sends the batch again on any other success, 202 included);
//! - `GET`, `HEAD` or `POST /v1/check_in/{key}/{slug}` and `/v1/check_in/{id}`: a `check_in`
//!   item; 200 `OK`;
//! - `POST /v1/deploys` (JSON, flat or in `deploy`; a form; multipart): a `deploy` item, the
//!   JSON object of its fields; 201 `{}`.
//!
//! Each with or without the trailing slash. The key is `X-API-Key`, else (events, deploys,
//! check-ins) the `api_key` parameter (or a deploy's field); a check-in by slug carries it in
//! its path. A check-in by id carries none (Honeybadger knows its ids; inlet does not): it needs
//! `X-API-Key` (as honeybadger-php sends) or `?api_key=`. Errors are `{"error": M, "code": C}`
//! with inlet's status, `Retry-After` on 429 and 503.

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;

use super::adapter::{Limits, Protocol, Translation};
use super::body::check_media_type;
use super::sdk::{self, header_value};
use crate::batch::Batch;
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::{honeybadger, Items};

/// Honeybadger's endpoints.
#[derive(Debug, Clone, Copy)]
pub enum Honeybadger {
    /// `POST /v1/notices`, `/v1/notices/js`: one notice, one occurrence.
    Notice,
    /// `POST /v1/events`: Insights events, each an `event` item.
    Events,
    /// `/v1/check_in/...`: a `check_in` item.
    CheckIn,
    /// `POST /v1/deploys`: a `deploy` item.
    Deploy,
}

/// What a translation keeps of the request's head.
pub struct Head {
    /// The whole `Content-Type` (a multipart deploy's boundary).
    media_type: String,
    /// A check-in's headers: its method, and its id or slug.
    check_in: String,
}

impl Protocol for Honeybadger {
    type Head = Head;
    /// The notice's id, answered.
    type Receipt = Option<Uuid>;

    fn lane(self) -> Lane {
        match self {
            Honeybadger::Notice => Lane::OCCURRENCE,
            Honeybadger::Events | Honeybadger::CheckIn | Honeybadger::Deploy => Lane::ITEM,
        }
    }

    fn key(self, parts: &Parts) -> Option<String> {
        let query = || {
            let query = parts.uri.query()?;
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "api_key")
                .map(|(_, value)| value.into_owned())
        };
        let header = || header_value(&parts.headers, "x-api-key");
        match self {
            Honeybadger::Notice => header(),
            Honeybadger::CheckIn => check_in_path(parts.uri.path())
                .and_then(|(key, _)| key.map(str::to_owned))
                .or_else(header)
                .or_else(query),
            Honeybadger::Events | Honeybadger::Deploy => header().or_else(query),
        }
    }

    /// A deploy's form carries its `api_key`.
    fn key_in_body(self) -> bool {
        matches!(self, Honeybadger::Deploy)
    }

    fn head(self, parts: &Parts) -> Result<Head, ApiError> {
        if matches!(self, Honeybadger::Notice | Honeybadger::Events) {
            check_media_type(&parts.headers)?;
        }
        let check_in = match check_in_path(parts.uri.path()) {
            Some((Some(_), slug)) => json!({"method": parts.method.as_str(), "slug": slug}),
            Some((None, id)) => json!({"method": parts.method.as_str(), "id": id}),
            None => json!({}),
        };
        Ok(Head {
            media_type: header_value(&parts.headers, "content-type").unwrap_or_default(),
            check_in: check_in.to_string(),
        })
    }

    fn translate(
        self,
        head: Head,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<Option<Uuid>>, ApiError> {
        let items = |events| Batch::translated(Lane::ITEM, Source::Honeybadger, events);
        match self {
            Honeybadger::Notice => {
                sdk::check_size(limits.lane.max_event, 0, body.len())?;
                let report = honeybadger::notice(&body);
                let id = report.id;
                let batch = sdk::reports(Source::Honeybadger, vec![report]);
                Ok(Translation::of(batch, Some(id)).with_items(Items::one("notice")))
            }
            Honeybadger::Events => {
                let mut counted = Items::default();
                let events = (honeybadger::event_lines(&body).enumerate())
                    .map(|(index, line)| {
                        sdk::check_size(limits.max_item, index, line.len())?;
                        counted.add("event");
                        Ok(honeybadger::event(line))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                Ok(Translation::of(items(events), None).with_items(counted))
            }
            Honeybadger::CheckIn => {
                sdk::check_size(limits.max_item, 0, body.len())?;
                let check_in = honeybadger::check_in(head.check_in, &body);
                Ok(Translation::of(items(vec![check_in]), None).with_items(Items::one("check_in")))
            }
            Honeybadger::Deploy => {
                sdk::check_size(limits.max_item, 0, body.len())?;
                let (deploy, key) = crate::sdk::deploy::item(&body, &head.media_type, "api_key")
                    .map_err(ApiError::MalformedBody)?;
                Ok(Translation::of(items(vec![Ok(deploy)]), None)
                    .with_key(key)
                    .with_items(Items::one("deploy")))
            }
        }
    }

    fn reply(self, outcome: Result<(Answer, Option<Uuid>), ApiError>) -> Response {
        match (outcome, self) {
            (Ok(_), Honeybadger::CheckIn) => (StatusCode::OK, "OK").into_response(),
            (Ok((_, id)), _) => {
                let body = match id {
                    Some(id) => json!({"id": id.hyphenated().to_string()}),
                    None => json!({}),
                };
                sdk::success(StatusCode::CREATED, body)
            }
            (Err(error), _) => sdk::error_answer(
                error,
                |_, code, message| json!({"error": message, "code": code}),
            ),
        }
    }
}

/// A check-in's path, `/v1/check_in/{key}/{slug}` (the key and the slug) or
/// `/v1/check_in/{id}` (no key, and the id).
fn check_in_path(path: &str) -> Option<(Option<&str>, &str)> {
    let rest = path.strip_prefix("/v1/check_in/")?.trim_end_matches('/');
    match rest.split_once('/') {
        Some((key, slug)) => Some((Some(key), slug)),
        None => Some((None, rest)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;

    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    const EXCEPTION: &str =
        include_str!("../../tests/sdk/payloads/honeybadger/python-exception.json");

    #[tokio::test]
    async fn every_notices_path_answers_201_with_the_notice_id() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        for path in [
            "/v1/notices",
            "/v1/notices/",
            "/v1/notices/js",
            "/v1/notices/js/",
        ] {
            let request = Request::post(path)
                .header("x-api-key", SECRET)
                .header("content-type", "application/json")
                .body(Body::from(EXCEPTION))
                .unwrap();
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::CREATED, "{path}");
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["id"], "875b4f02-1f8f-4ad6-821c-beef5b728bcc");
        }
        assert_eq!(sink.records().len(), 4);
        let request = Request::post("/v1/notices")
            .header("x-api-key", SECRET)
            .body(Body::from("[1]"))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "not_an_object");
        assert!(body["error"].as_str().unwrap().contains("JSON object"));
    }

    #[tokio::test]
    async fn a_notice_over_the_event_cap_is_a_413_before_it_is_parsed() {
        let sink = Arc::new(MemorySink::accepting());
        let state = state(Arc::clone(&sink), |s| {
            s.occurrences_max_event_bytes = Some(1000)
        });
        let request = Request::post("/v1/notices")
            .header("x-api-key", SECRET)
            .body(Body::from(EXCEPTION))
            .unwrap();
        let (status, _, body) = send(&public_router(state), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "event_too_large");
        assert!(sink.records().is_empty());
    }

    fn item(record: &crate::sink::Record) -> crate::proto::Item {
        crate::testing::item(record, "honeybadger")
    }

    #[tokio::test]
    async fn insights_events_are_items_one_a_line() {
        let sink = Arc::new(MemorySink::accepting());
        let state = state(Arc::clone(&sink), |_| {});
        let router = public_router(state.clone());
        // As honeybadger-python 1.3.0 sends them: no trailing newline, its own header case.
        let body = "{\"event_type\": \"user.signup\", \"ts\": \"2026-12-07T19:20:11.992053Z\"}\n\
                    {\"event_type\": \"order.completed\", \"total\": 49.99}";
        let request = Request::post("/v1/events/")
            .header("X-Api-Key", SECRET)
            .header("content-type", "application/x-ndjson")
            .body(Body::from(body))
            .unwrap();
        let (status, _, answer) = send(&router, request).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "201, never 202: python sends a 202 again"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&answer).unwrap(),
            serde_json::json!({})
        );
        let records = sink.records();
        let payloads: Vec<Vec<u8>> = records.iter().map(|r| item(r).payload).collect();
        assert_eq!(
            payloads,
            body.lines()
                .map(|l| l.as_bytes().to_vec())
                .collect::<Vec<_>>()
        );
        assert!(records
            .iter()
            .all(|r| item(r).r#type == "event" && r.key == "a"));
        // A line that is no object is refused, the others kept; none at all is a 400.
        let request = |body: &'static str| {
            Request::post("/v1/events")
                .header("x-api-key", SECRET)
                .body(Body::from(body))
                .unwrap()
        };
        let (status, _, _) = send(&router, request("{\"a\":1}\n\nnot json\n")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(sink.records().len(), 3);
        let (status, _, answer) = send(&router, request("[1]\n")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["code"], "not_an_object");
        assert_eq!(sink.records().len(), 3);
        // Each item counted under its own outcome (no other test sends Honeybadger events).
        let metrics = state.metrics.render();
        for (outcome, n) in [("accepted", 3), ("invalid", 2)] {
            let line = format!(
                "inlet_sdk_items_total{{source=\"honeybadger\",type=\"event\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
        }
    }

    #[tokio::test]
    async fn check_ins_by_slug_or_by_id_are_items() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let by_slug = Request::get(format!("/v1/check_in/{SECRET}/daily-backup"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&router, by_slug).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"OK"[..]));
        // By id, with the key beside it; and as `hb run` posts its outcome.
        let by_id = Request::builder()
            .method("HEAD")
            .uri("/v1/check_in/XyZZy/")
            .header("x-api-key", SECRET)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(&router, by_id).await;
        assert_eq!(status, StatusCode::OK);
        let outcome = r#"{"check_in":{"status":"success","duration":1234,"exit_code":0}}"#;
        let posted = Request::post(format!("/v1/check_in/XyZZy?api_key={SECRET}"))
            .body(Body::from(outcome))
            .unwrap();
        let (status, _, _) = send(&router, posted).await;
        assert_eq!(status, StatusCode::OK);
        let items: Vec<_> = sink.records().iter().map(item).collect();
        let headers: Vec<Value> = (items.iter())
            .map(|i| serde_json::from_str(&i.headers_json).unwrap())
            .collect();
        assert_eq!(
            headers,
            [
                serde_json::json!({"method": "GET", "slug": "daily-backup"}),
                serde_json::json!({"method": "HEAD", "id": "XyZZy"}),
                serde_json::json!({"method": "POST", "id": "XyZZy"}),
            ]
        );
        assert!(items.iter().all(|i| i.r#type == "check_in"));
        assert_eq!(items[2].payload, outcome.as_bytes());
        assert!(items[0].payload.is_empty());
        // By id with no key: inlet cannot know whose it is.
        let keyless = Request::get("/v1/check_in/XyZZy")
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(&router, keyless).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(sink.records().len(), 3);
    }

    #[tokio::test]
    async fn a_deploy_is_an_item_of_its_fields_without_the_key() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let form = format!(
            "deploy%5Benvironment%5D=production&deploy%5Brevision%5D=7cd4bac1&api_key={SECRET}"
        );
        let request = Request::post("/v1/deploys")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let records = sink.records();
        let deploy = item(&records[0]);
        assert_eq!(
            (deploy.r#type.as_str(), deploy.media_type.as_str()),
            ("deploy", "application/json")
        );
        let fields: Value = serde_json::from_slice(&deploy.payload).unwrap();
        assert_eq!(
            fields,
            serde_json::json!({"environment": "production", "revision": "7cd4bac1"})
        );
        // A body that is no deploy.
        let request = Request::post("/v1/deploys/")
            .header("x-api-key", SECRET)
            .header("content-type", "application/json")
            .body(Body::from("{nope"))
            .unwrap();
        let (status, _, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

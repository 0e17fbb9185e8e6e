//! Honeybadger's endpoints, `POST /v1/notices` and `/v1/notices/js` (with or without the
//! trailing slash), for the `honeybadger` SDKs pointed at inlet by their `endpoint` setting.
//!
//! The key is `X-API-Key`. Answers as Honeybadger does: 201 `{"id": U}`; errors
//! `{"error": M, "code": C}` with inlet's status, `Retry-After` on 429 and 503.

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;

use super::adapter::{Limits, Protocol, Translation};
use super::body::check_media_type;
use super::sdk::{self, header_value};
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::{honeybadger, Items};

/// `POST /v1/notices`, `/v1/notices/js`: one notice, one occurrence.
#[derive(Debug, Clone, Copy)]
pub struct Honeybadger;

impl Protocol for Honeybadger {
    type Head = ();
    /// The notice's id, answered.
    type Receipt = Uuid;

    fn lane(self) -> Lane {
        Lane::OCCURRENCE
    }

    fn key(self, parts: &Parts) -> Option<String> {
        header_value(&parts.headers, "x-api-key")
    }

    fn head(self, parts: &Parts) -> Result<(), ApiError> {
        check_media_type(&parts.headers)
    }

    fn translate(self, _: (), body: Bytes, limits: Limits) -> Result<Translation<Uuid>, ApiError> {
        sdk::check_size(limits.lane.max_event, 0, body.len())?;
        let report = honeybadger::notice(&body);
        let id = report.id;
        let batch = sdk::reports(Source::Honeybadger, vec![report]);
        Ok(Translation::of(batch, id).with_items(Items::one("notice")))
    }

    fn reply(self, outcome: Result<(Answer, Uuid), ApiError>) -> Response {
        match outcome {
            Ok((_, id)) => sdk::success(
                StatusCode::CREATED,
                json!({"id": id.hyphenated().to_string()}),
            ),
            Err(error) => sdk::error_answer(
                error,
                |_, code, message| json!({"error": message, "code": code}),
            ),
        }
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
}

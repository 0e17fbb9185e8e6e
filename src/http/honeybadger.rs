//! Honeybadger's endpoints, `POST /v1/notices` and `/v1/notices/js` (with or without the
//! trailing slash), for the `honeybadger` SDKs pointed at inlet by their `endpoint` setting.
//!
//! The key is `X-API-Key`. Answers as Honeybadger does: 201 `{"id": U}`; errors
//! `{"error": M, "code": C}` with inlet's status, `Retry-After` on 429 and 503.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::lane::Lane;

use super::body::check_media_type;
use super::sdk::{self, header_value};
use crate::error::ApiError;
use crate::event::Source;
use crate::sdk::honeybadger;
use crate::state::AppState;

/// `POST /v1/notices`, `/v1/notices/js`: one notice, one occurrence.
pub async fn notice(State(state): State<AppState>, request: Request) -> Response {
    match ingest(&state, request).await {
        Ok(id) => sdk::success(
            StatusCode::CREATED,
            json!({"id": id.hyphenated().to_string()}),
        ),
        Err(error) => sdk::error_answer(
            error,
            |_, code, message| json!({"error": message, "code": code}),
        ),
    }
}

async fn ingest(state: &AppState, request: Request) -> Result<uuid::Uuid, ApiError> {
    let (parts, body) = request.into_parts();
    let key = header_value(&parts.headers, "x-api-key");
    let auth = sdk::authorize(state, &parts, Lane::OCCURRENCE, key)?;
    check_media_type(&parts.headers)?;
    let body = sdk::read_body(state, Lane::OCCURRENCE, &parts, body).await?;
    sdk::count_items(Source::Honeybadger, "notice", 1);
    sdk::check_event_size(state, 0, body.len())?;
    let report = honeybadger::notice(&body);
    let id = report.id;
    sdk::ingest_reports(
        state,
        &auth,
        &parts.headers,
        Source::Honeybadger,
        vec![report],
    )
    .await?;
    Ok(id)
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

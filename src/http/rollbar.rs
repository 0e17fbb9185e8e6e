//! Rollbar's endpoint, `POST /api/1/item/`, for the `rollbar` SDKs (Python, Node, the browser
//! build) pointed at inlet by their `endpoint` setting (`http://inlet:8080/api/1/`).
//!
//! The key is `X-Rollbar-Access-Token`, else the body's `access_token` (then read after the
//! body). Answers as Rollbar does: 200 `{"err":0,"result":{"id":null,"uuid":U}}`; errors
//! `{"err":1,"message":M,"code":C}` with inlet's status; a rate limit as 429 with
//! `X-Rate-Limit-Remaining: 0` and `X-Rate-Limit-Remaining-Seconds` (which rollbar.js obeys)
//! and `Retry-After`.

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
use crate::sdk::{rollbar, Items};

/// `POST /api/1/item/`: one item, one occurrence.
#[derive(Debug, Clone, Copy)]
pub struct Rollbar;

impl Protocol for Rollbar {
    type Head = ();
    /// The item's uuid, answered.
    type Receipt = Uuid;

    fn lane(self) -> Lane {
        Lane::OCCURRENCE
    }

    /// With the key in a header, a stranger is turned away before the body is read.
    fn key(self, parts: &Parts) -> Option<String> {
        header_value(&parts.headers, "x-rollbar-access-token")
    }

    fn key_in_body(self) -> bool {
        true
    }

    fn head(self, parts: &Parts) -> Result<(), ApiError> {
        check_media_type(&parts.headers)
    }

    fn translate(self, _: (), body: Bytes, limits: Limits) -> Result<Translation<Uuid>, ApiError> {
        sdk::check_size(limits.lane.max_event, 0, body.len())?;
        let item = rollbar::item(&body).map_err(ApiError::MalformedBody)?;
        let uuid = item.report.id;
        let batch = sdk::reports(Source::Rollbar, vec![item.report]);
        Ok(Translation::of(batch, uuid)
            .with_key(item.access_token)
            .with_items(Items::one("item")))
    }

    fn reply(self, outcome: Result<(Answer, Uuid), ApiError>) -> Response {
        match outcome {
            Ok((_, uuid)) => sdk::success(
                StatusCode::OK,
                json!({"err": 0, "result": {"id": null, "uuid": uuid.hyphenated().to_string()}}),
            ),
            Err(error) => error_answer(error),
        }
    }
}

/// An error as Rollbar answers one, with the rate limit headers rollbar.js obeys on a 429.
fn error_answer(error: ApiError) -> Response {
    let limited = sdk::rate_limited_secs(&error);
    let mut response = sdk::error_answer(
        error,
        |_, code, message| json!({"err": 1, "message": message, "code": code}),
    );
    if let Some(secs) = limited {
        sdk::set_header(&mut response, "x-rate-limit-remaining", "0".into());
        sdk::set_header(
            &mut response,
            "x-rate-limit-remaining-seconds",
            secs.to_string(),
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

    use crate::auth::{Registry, Tokens};
    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::state::AppState;
    use crate::testing::{config, state, SECRET};

    const EXCEPTION: &str = include_str!("../../tests/sdk/payloads/rollbar/python-exception.json");

    #[tokio::test]
    async fn the_key_comes_from_the_header_or_the_body() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let in_header = Request::post("/api/1/item/")
            .header("x-rollbar-access-token", SECRET)
            .body(Body::from(EXCEPTION))
            .unwrap();
        let (status, _, body) = send(&router, in_header).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["err"], 0);
        assert_eq!(
            body["result"]["uuid"],
            "0b378c1f-ab50-426a-9e01-e0dc31088f64"
        );
        assert_eq!(body["result"]["id"], Value::Null);
        let in_body = EXCEPTION.replace("abc123", SECRET);
        let request = Request::post("/api/1/item")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(in_body))
            .unwrap();
        let (status, _, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.records().len(), 2);
        // The body's key is no good: 401, in Rollbar's shape.
        let request = Request::post("/api/1/item/")
            .body(Body::from(EXCEPTION))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["err"], 1);
        assert_eq!(body["code"], "unknown_token");
        assert_eq!(sink.records().len(), 2);
    }

    #[tokio::test]
    async fn a_rate_limit_says_so_in_rollbars_headers() {
        let registry = Registry::parse(
            &format!(
                "[[token]]\nid = \"slow\"\ntoken = \"{SECRET}\"\nproject_id = \"p\"\n\
                 account_id = \"a\"\nkinds = [\"occurrence\"]\nrate_per_sec = 1\nburst = 1\n"
            ),
            None,
        )
        .unwrap();
        let sink = Arc::new(MemorySink::accepting());
        let tokens = Arc::new(Tokens::fixed(registry));
        let router = public_router(AppState::new(config(|_| {}), tokens, sink.clone()));
        let request = || {
            Request::post("/api/1/item/")
                .header("x-rollbar-access-token", SECRET)
                .body(Body::from(EXCEPTION))
                .unwrap()
        };
        let (status, _, _) = send(&router, request()).await;
        assert_eq!(status, StatusCode::OK);
        let request = request();
        let (status, headers, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["x-rate-limit-remaining"], "0");
        assert_eq!(headers["x-rate-limit-remaining-seconds"], "1");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "rate_limited");
        assert_eq!(sink.records().len(), 1);
    }
}

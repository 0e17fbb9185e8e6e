//! Rollbar's endpoints, for the `rollbar` SDKs (Python, Node, the browser build) pointed at
//! inlet by their `endpoint` setting (`http://inlet:8080/api/1/`):
//!
//! - `POST /api/1/item/`: one item, one occurrence;
//! - `POST /api/1/item_batch/`: a JSON array of items (rollbar-php 0.x batches them so), each
//!   an occurrence;
//! - `POST /api/1/deploy/` (rollbar-cli, rollbar-gem, the GitHub Action, Ansible): a `deploy`
//!   item, the JSON object of its fields; answered `{"err":0,"data":{"deploy_id":N}}`, the id
//!   the senders read back.
//!
//! The key is `X-Rollbar-Access-Token`, else the body's `access_token` (then read after the
//! body). Answers as Rollbar does: 200 `{"err":0,"result":{"id":null,"uuid":U}}`; errors
//! `{"err":1,"message":M,"code":C}` with inlet's status; a rate limit as 429 with
//! `X-Rate-Limit-Remaining: 0` and `X-Rate-Limit-Remaining-Seconds` (which rollbar.js obeys)
//! and `Retry-After`. A batch or a deploy may come as any media type (rollbar-php and
//! rollbar-gem label their JSON a form).

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
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
use crate::sdk::{rollbar, Items};

/// Rollbar's endpoints.
#[derive(Debug, Clone, Copy)]
pub enum Rollbar {
    /// `POST /api/1/item/`: one item, one occurrence.
    Item,
    /// `POST /api/1/item_batch/`: items, each an occurrence.
    Batch,
    /// `POST /api/1/deploy/`: a `deploy` item.
    Deploy,
}

impl Protocol for Rollbar {
    /// The whole `Content-Type` (a multipart deploy's boundary).
    type Head = String;
    /// The (first) item's uuid, answered.
    type Receipt = Uuid;

    fn lane(self) -> Lane {
        match self {
            Rollbar::Item | Rollbar::Batch => Lane::OCCURRENCE,
            Rollbar::Deploy => Lane::ITEM,
        }
    }

    /// With the key in a header, a stranger is turned away before the body is read.
    fn key(self, parts: &Parts) -> Option<String> {
        header_value(&parts.headers, "x-rollbar-access-token")
    }

    fn key_in_body(self) -> bool {
        true
    }

    fn head(self, parts: &Parts) -> Result<String, ApiError> {
        if matches!(self, Rollbar::Item) {
            check_media_type(&parts.headers)?;
        }
        Ok(header_value(&parts.headers, "content-type").unwrap_or_default())
    }

    fn translate(
        self,
        media_type: String,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<Uuid>, ApiError> {
        match self {
            Rollbar::Item => {
                sdk::check_size(limits.lane.max_event, 0, body.len())?;
                let item = rollbar::item(&body).map_err(ApiError::MalformedBody)?;
                let uuid = item.report.id;
                let batch = sdk::reports(Source::Rollbar, vec![item.report]);
                Ok(Translation::of(batch, uuid)
                    .with_key(item.access_token)
                    .with_items(Items::one("item")))
            }
            Rollbar::Batch => {
                let (raws, key) =
                    rollbar::batch(&body, limits.max_events).map_err(ApiError::MalformedBody)?;
                let mut items = Items::default();
                let reports = (raws.iter().enumerate())
                    .map(|(index, raw)| {
                        sdk::check_size(limits.lane.max_event, index, raw.get().len())?;
                        items.add("item");
                        Ok(rollbar::batched(raw, key.as_deref()))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()?;
                let uuid = reports.first().map_or_else(crate::id::uuid_v7, |r| r.id);
                Ok(
                    Translation::of(sdk::reports(Source::Rollbar, reports), uuid)
                        .with_key(key)
                        .with_items(items),
                )
            }
            Rollbar::Deploy => {
                sdk::check_size(limits.max_item, 0, body.len())?;
                let (deploy, key) = crate::sdk::deploy::item(&body, &media_type, "access_token")
                    .map_err(ApiError::MalformedBody)?;
                let uuid = crate::id::uuid_v7();
                let batch = Batch::translated(Lane::ITEM, Source::Rollbar, vec![Ok(deploy)]);
                Ok(Translation::of(batch, uuid)
                    .with_key(key)
                    .with_items(Items::one("deploy")))
            }
        }
    }

    fn reply(self, outcome: Result<(Answer, Uuid), ApiError>) -> Response {
        match (outcome, self) {
            // A number the senders read back (as `data.deploy_id`): the id's first 53 bits,
            // its time then randomness, exact in a JavaScript number.
            (Ok((_, uuid)), Rollbar::Deploy) => sdk::success(
                StatusCode::OK,
                json!({"err": 0, "data": {"deploy_id": uuid.as_u64_pair().0 >> 11}}),
            ),
            (Ok((_, uuid)), _) => sdk::success(
                StatusCode::OK,
                json!({"err": 0, "result": {"id": null, "uuid": uuid.hyphenated().to_string()}}),
            ),
            (Err(error), _) => error_answer(error),
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

    #[tokio::test]
    async fn an_item_batch_is_an_occurrence_an_item() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let item = |token: &str, message: &str| {
            serde_json::json!({"access_token": token, "data": {"environment": "production",
                "level": "error", "body": {"message": {"body": message}}}})
        };
        let batch = serde_json::json!([
            item(SECRET, "first"),
            item(SECRET, "second"),
            item("other", "x")
        ]);
        // rollbar-php 0.x: the key in a header, its JSON labelled a form.
        let request = Request::post("/api/1/item_batch/")
            .header("x-rollbar-access-token", SECRET)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(batch.to_string()))
            .unwrap();
        let (status, _, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["err"], 0);
        let messages: Vec<String> = (sink.records().iter())
            .map(|r| crate::testing::occurrence(r).message)
            .collect();
        assert_eq!(
            messages,
            ["first", "second"],
            "another project's item is refused"
        );
        // The key of the first item, when no header gives it.
        let request = Request::post("/api/1/item_batch")
            .body(Body::from(
                serde_json::json!([item(SECRET, "third")]).to_string(),
            ))
            .unwrap();
        let (status, _, _) = send(&router, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.records().len(), 3);
    }

    #[tokio::test]
    async fn a_deploy_is_answered_with_a_deploy_id() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        // rollbar-cli: the key in the header, JSON; rollbar-gem: the key in JSON sent as a form.
        let requests = [
            Request::post("/api/1/deploy")
                .header("x-rollbar-access-token", SECRET)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"revision":"dc1f74dee5","environment":"production","status":"succeeded"}"#))
                .unwrap(),
            Request::post("/api/1/deploy/")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    r#"{{"access_token":"{SECRET}","environment":"production","revision":"dc1f74dee5","status":"started"}}"#
                )))
                .unwrap(),
        ];
        for request in requests {
            let (status, _, body) = send(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["err"], 0);
            let id = body["data"]["deploy_id"].as_u64().unwrap();
            assert!(id > 0 && id < 1 << 53, "{id}");
        }
        let deploys: Vec<Value> = (sink.records().iter())
            .map(|r| serde_json::from_slice(&crate::testing::item(r, "rollbar").payload).unwrap())
            .collect();
        assert_eq!(deploys[0]["status"], "succeeded");
        assert_eq!(deploys[1]["status"], "started");
        assert!(deploys
            .iter()
            .all(|d| d["revision"] == "dc1f74dee5" && d.get("access_token").is_none()));
    }
}

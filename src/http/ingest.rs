//! `POST /v1/beacons` and `POST /v1/occurrences`: read and decode the body, split it into
//! events, and hand them to the [pipeline](crate::pipeline); the answer says exactly which
//! events were accepted.

use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::authenticate::{request_origin, Authenticated};
use super::body::{check_media_type, read_decoded};
use crate::error::ApiError;
use crate::lane::Lane;
use crate::pipeline::Batch;
use crate::state::AppState;

/// `POST /v1/beacons`.
pub async fn beacons(
    State(state): State<AppState>,
    auth: Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    ingest(Lane::BEACON, state, auth, request).await
}

/// `POST /v1/occurrences`.
pub async fn occurrences(
    State(state): State<AppState>,
    auth: Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    ingest(Lane::OCCURRENCE, state, auth, request).await
}

async fn ingest(
    kind: Lane,
    state: AppState,
    auth: Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    // The request's own headers, moved out of it (axum's `HeaderMap` extractor clones them).
    let (
        Parts {
            headers,
            extensions,
            ..
        },
        body,
    ) = request.into_parts();
    let origin = request_origin(&headers);
    state.pipeline.admit(&auth.token, kind, origin.as_deref())?;
    check_media_type(&headers)?;
    let config = &state.config;
    let limits = config.limits(kind);
    let sent_bytes = super::edge::body_bytes(extensions.get::<MatchedPath>());
    let decoded = read_decoded(&headers, body, limits, config, sent_bytes).await?;
    let batch = Batch::split(
        kind,
        decoded,
        config.max_events_per_request,
        limits.max_event,
    )
    .await?;
    let client = auth.client(&headers);
    let answer = state.pipeline.ingest(&auth.token, client, batch).await?;
    Ok(answer.into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{header, Request, StatusCode};
    use serde_json::{json, Value};

    use crate::http::public_router;
    use crate::sink::memory::MemorySink;
    use crate::sink::Failure;
    use crate::testing::{state, SECRET};

    use axum::body::Body;

    /// Posts `events` as a JSON array to a router whose sink refuses, as too large for the
    /// broker, every event of session `big`.
    async fn post_to_picky_broker(events: Value) -> (StatusCode, Value) {
        let sink = Arc::new(MemorySink::answering(|record| {
            if record.key == "big" {
                Err(Failure::TooLarge)
            } else {
                Ok(())
            }
        }));
        let router = public_router(state(sink, |_| {}));
        let request = Request::post("/v1/beacons")
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .body(Body::from(events.to_string()))
            .unwrap();
        let (status, _, body) = crate::http::testing::send(&router, request).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// The pipeline's answers as HTTP: every status of a request whose events were not all
    /// accepted (the pipeline's own tests cover which answer each case gets).
    #[tokio::test]
    async fn answers_about_events_become_their_statuses_and_bodies() {
        let big = json!({"session_id": "big", "event": "e"});
        let small = json!({"session_id": "small", "event": "e"});
        let invalid = json!({"session_id": "small"});
        let (status, body) = post_to_picky_broker(json!([invalid, big])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["accepted"], 0);
        assert_eq!(body["rejected"][0]["code"], "missing_field");
        assert_eq!(body["rejected"][1]["code"], "event_too_large");
        assert_eq!(body["rejected"][1]["index"], 1);
        let (status, body) = post_to_picky_broker(json!([big, big])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["error"]["code"], "event_too_large");
        let (status, body) = post_to_picky_broker(json!([invalid, big, small])).await;
        assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
        assert_eq!(body["accepted"], 1);
        assert_eq!(body["rejected"].as_array().unwrap().len(), 2);
        let (status, body) = post_to_picky_broker(json!([small])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"accepted": 1}));
    }
}

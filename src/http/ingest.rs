//! `POST /v1/beacons` and `POST /v1/occurrences`, inlet's own protocol: the token from
//! `Authorization: Bearer`, `X-Inlet-Token` or `?token=`; the body one JSON object, an array or
//! NDJSON, split into events the [pipeline](crate::pipeline) validates; the answer says exactly
//! which events were accepted (200/202, or 207 naming the others).

use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::adapter::{Limits, Protocol, Translation};
use super::authenticate::presented_secret;
use super::body::check_media_type;
use crate::batch::Batch;
use crate::error::ApiError;
use crate::lane::Lane;
use crate::pipeline::Answer;

/// inlet's JSON endpoint of one lane.
#[derive(Debug, Clone, Copy)]
pub struct Native(pub Lane);

impl Protocol for Native {
    type Head = ();
    type Receipt = ();

    fn lane(self) -> Lane {
        self.0
    }

    fn key(self, parts: &Parts) -> Option<String> {
        presented_secret(parts)
    }

    fn head(self, parts: &Parts) -> Result<(), ApiError> {
        check_media_type(&parts.headers)
    }

    fn translate(self, _: (), body: Bytes, limits: Limits) -> Result<Translation<()>, ApiError> {
        let batch = Batch::split(self.0, body, limits.max_events, limits.lane.max_event)?;
        Ok(Translation::of(batch, ()))
    }

    fn partial_answers(self) -> bool {
        true
    }

    fn reply(self, outcome: Result<(Answer, ()), ApiError>) -> Response {
        match outcome {
            Ok((answer, ())) => answer.into_response(),
            Err(error) => error.into_response(),
        }
    }
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

    #[tokio::test]
    async fn a_byte_quota_holds_beside_the_events_for_batches_and_recordings() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let post = |path: &str, body: Vec<u8>| {
            Request::post(path)
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", crate::testing::BYTES),
                )
                .body(Body::from(body))
                .unwrap()
        };
        // 30 beacons of about 50 bytes: some 1,500 bytes of the 2,000 at once.
        let batch = |n: usize| {
            let events: Vec<Value> = (0..n)
                .map(|i| json!({"session_id": "s", "event": format!("e{i:04}")}))
                .collect();
            serde_json::to_vec(&events).unwrap()
        };
        let (status, _, _) =
            crate::http::testing::send(&router, post("/v1/beacons", batch(30))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, body) =
            crate::http::testing::send(&router, post("/v1/beacons", batch(30))).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        // Over the burst: never, whatever the wait.
        let (status, _, body) =
            crate::http::testing::send(&router, post("/v1/beacons", batch(60))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "bytes_exceed_burst");
        // A recording is charged its bytes as they arrive, in steps of the burst at most.
        let (status, _, body) =
            crate::http::testing::send(&router, post("/v1/recordings/s", vec![b'r'; 5_000])).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            sink.records().len(),
            30,
            "only the first batch was produced"
        );
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

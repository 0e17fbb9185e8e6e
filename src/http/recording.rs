//! `POST /v1/recordings/{session_id}`: a session recording streamed into the `recording` lane.
//!
//! The body is opaque: any media type, kept as sent (compressed or not, its `Content-Encoding`
//! recorded for the consumer, never decoded here). It is never held whole: it is cut into
//! chunks as it arrives and handed to the producer (or the spool) while the rest is still
//! being read ([`crate::recording::Upload`]). While the sink has not taken the chunks cut so
//! far, the body is not read, so TCP slows the client instead of inlet buffering; that time
//! is not held against the client's minimum rate. The answer comes once every chunk is
//! acknowledged (`ack`, 200), on disk (`spool`, 202) or queued (`enqueue`, 202).
//!
//! A request that fails half-way (its body over `recordings_max_bytes`, too slow, cut off; a
//! chunk the sink refused) is answered with its error after the rest of the body is read and
//! thrown away, within the bounds of an over-cap body (`http::body`), so the client reads it.
//! The chunks produced before stay an incomplete recording, which consumers discard.

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::time::Instant;

use super::adapter::authorize;
use super::authenticate::presented_secret;
use super::body::{content_encoding, Incoming, MinRate};
use crate::auth::Token;
use crate::config::Delivery;
use crate::decode::Encoding;
use crate::error::{ApiError, Refusal, Rejection};
use crate::event::Source;
use crate::lane::Lane;
use crate::metrics::count_events;
use crate::proto::Recording;
use crate::recording::{Receipt, Upload};
use crate::state::AppState;

/// Bytes of a recording charged to a byte quota at once, at most.
const BYTES_STEP: usize = 256 << 10;

/// The native route's handler.
pub async fn upload(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
    request: Request,
) -> Response {
    let delivery = state.delivery;
    match record(state, session_id, request).await {
        Ok(receipt) => answer(receipt, delivery),
        Err(error) => error.into_response(),
    }
}

async fn record(
    state: AppState,
    session_id: String,
    request: Request,
) -> Result<Receipt, ApiError> {
    let (parts, body) = request.into_parts();
    let auth = authorize(&state, &parts, Lane::RECORDING, presented_secret(&parts))?;
    crate::event::session_id(&session_id)
        .map_err(|invalid| {
            ApiError::AllInvalid(vec![Rejection {
                index: 0,
                refusal: Refusal::Invalid(invalid),
            }])
        })
        .map_err(failed)?;
    let recording = Recording {
        session_id,
        r#type: "recording".into(),
        media_type: media_type(&parts.headers),
        content_encoding: match content_encoding(&parts.headers)? {
            Encoding::Identity => String::new(),
            encoding => encoding.name().to_owned(),
        },
        ..Default::default()
    };
    let limit = state.limits(Lane::RECORDING).max_body;
    let rate = MinRate::of(&state.edge);
    let mut incoming = Incoming::open(body, &parts.headers, limit, rate)
        .await
        .map_err(failed)?;
    let client = auth.client(&parts.headers);
    let upload = (state.pipeline).upload(&auth.token, client, Source::Inlet, recording);
    let outcome = match upload.await {
        Ok(upload) => stream(&mut incoming, upload, &state, &auth.token).await,
        Err(error) => Err(error),
    };
    record_size(&parts, incoming.received());
    match outcome {
        Ok(receipt) => {
            count_events(Lane::RECORDING, "accepted", 1);
            Ok(receipt)
        }
        Err(error) => {
            incoming.discard().await;
            Err(failed(error))
        }
    }
}

/// Reads the body into `upload` as it arrives, and closes the recording at its end. A token
/// with a byte quota is charged as the body arrives, in steps of at most 256 KiB (and of its
/// `bytes_burst`), before the bytes are produced.
async fn stream(
    incoming: &mut Incoming,
    mut upload: Upload,
    state: &AppState,
    token: &Token,
) -> Result<Receipt, ApiError> {
    let step =
        (token.byte_limiter.as_ref()).map(|limiter| (limiter.burst as usize).min(BYTES_STEP));
    let mut uncharged = 0;
    loop {
        if let Some(failure) = upload.failed() {
            return Err(ApiError::Unavailable(failure));
        }
        if upload.full() {
            // The sink has not taken what was cut: stop reading until it has.
            let paused = Instant::now();
            upload.landed().await;
            incoming.excuse(paused.elapsed());
            continue;
        }
        let data = tokio::select! {
            biased;
            () = upload.landed(), if upload.in_flight() => continue,
            data = incoming.next() => data?,
        };
        if let Some(step) = step {
            uncharged += data.as_ref().map_or(0, |data| data.len());
            while uncharged >= step || (data.is_none() && uncharged > 0) {
                let bytes = uncharged.min(step);
                (state.pipeline)
                    .charge_bytes(Lane::RECORDING, token, 0, bytes)
                    .await?;
                uncharged -= bytes;
            }
        }
        match data {
            Some(data) => upload.write(&data),
            None => break,
        }
    }
    upload.finish().await.map_err(ApiError::Unavailable)
}

/// The error that failed a recording, which is counted (one event) by its outcome.
fn failed(error: ApiError) -> ApiError {
    count_events(Lane::RECORDING, error.outcome(), 1);
    error
}

/// Records the body's size as sent in the route's histogram.
fn record_size(parts: &Parts, received: u64) {
    super::edge::body_bytes(parts.extensions.get::<MatchedPath>()).record(received as f64);
}

/// The media type as sent, parameters and all (a consumer needs a `charset` or a `codecs`), or
/// `application/octet-stream`.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .unwrap_or("application/octet-stream")
        .chars()
        .take(256)
        .collect()
}

/// 200 once acknowledged, 202 once durable or queued: the recording's id, its chunks, its
/// size and its SHA-256, as its last chunk says.
fn answer(receipt: Receipt, delivery: Delivery) -> Response {
    let status = match delivery {
        Delivery::Ack => StatusCode::OK,
        Delivery::Enqueue | Delivery::Spool => StatusCode::ACCEPTED,
    };
    let body = json!({
        "accepted": 1,
        "recording": {
            "recording_id": receipt.recording_id,
            "chunks": receipt.chunks,
            "bytes": receipt.bytes,
            "sha256": receipt.sha256,
        }
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use bytes::Bytes;
    use serde_json::Value;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::http::testing::send;
    use crate::proto::envelope::Event;
    use crate::sink::memory::MemorySink;
    use crate::sink::Failure;
    use crate::testing::{envelope, state, RECORDER, SECRET};

    const CHUNK: usize = 1024;

    fn router(sink: &Arc<MemorySink>) -> axum::Router {
        crate::http::public_router(state(Arc::clone(sink), |s| {
            s.recordings_chunk_bytes = Some(CHUNK);
            s.recordings_max_bytes = Some(10 * CHUNK);
        }))
    }

    /// A streamed body (no `Content-Length`) of `body` in pieces of 100 bytes.
    fn streamed(body: &[u8]) -> Body {
        let pieces = body.chunks(100).map(Bytes::copy_from_slice).collect();
        Body::new(Pieces {
            pieces,
            stall: false,
        })
    }

    /// A body of `pieces`, then its end, or (`stall`) nothing more, ever.
    struct Pieces {
        pieces: std::collections::VecDeque<Bytes>,
        stall: bool,
    }

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            match self.pieces.pop_front() {
                Some(piece) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece)))),
                None if self.stall => std::task::Poll::Pending,
                None => std::task::Poll::Ready(None),
            }
        }
    }

    fn post(secret: &str, body: Body) -> Request<Body> {
        Request::post("/v1/recordings/sess-1")
            .header("x-inlet-token", secret)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .unwrap()
    }

    fn recordings(sink: &MemorySink) -> Vec<crate::proto::Recording> {
        (sink.records().iter())
            .map(|record| {
                assert_eq!(
                    (record.kind, record.key.as_str()),
                    (Lane::RECORDING, "sess-1")
                );
                match envelope(record).event {
                    Some(Event::Recording(recording)) => recording,
                    other => panic!("not a recording: {other:?}"),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_body_lands_in_ordered_chunks_closed_by_its_size_and_digest() {
        for size in [0, 1, CHUNK, 3 * CHUNK + 500] {
            let sink = Arc::new(MemorySink::accepting());
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let (status, _, answer) = send(&router(&sink), post(RECORDER, streamed(&body))).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&answer)
            );
            let chunks = recordings(&sink);
            // Whole chunks as they fill, then the last with the rest (none, for whole chunks).
            let expected = size / CHUNK + 1;
            assert_eq!(chunks.len(), expected, "{size} bytes");
            let data: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
            assert_eq!(data, body);
            let sha256 = hex::encode(Sha256::digest(&body));
            for (index, chunk) in chunks.iter().enumerate() {
                assert_eq!(chunk.index as usize, index);
                assert_eq!(chunk.recording_id, chunks[0].recording_id);
                assert_eq!(chunk.last, index + 1 == expected);
                assert_eq!(
                    (chunk.media_type.as_str(), chunk.content_encoding.as_str()),
                    ("application/json", "gzip")
                );
                assert_eq!(chunk.data.len(), CHUNK.min(size - index * CHUNK));
            }
            let last = chunks.last().unwrap();
            assert_eq!((last.count as usize, last.size), (expected, size as u64));
            assert_eq!(last.sha256, sha256);
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(answer["recording"]["sha256"], sha256);
            assert_eq!(answer["recording"]["recording_id"], last.recording_id);
        }
    }

    #[tokio::test]
    async fn refusals_come_before_anything_is_produced() {
        let sink = Arc::new(MemorySink::accepting());
        let (status, _, _) = send(&router(&sink), post(SECRET, Body::from("x"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a token without `recording`");
        let anonymous = Request::post("/v1/recordings/s")
            .body(Body::from("x"))
            .unwrap();
        let (status, _, _) = send(&router(&sink), anonymous).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let long = format!("/v1/recordings/{}", "s".repeat(129));
        let request = Request::post(long)
            .header("x-inlet-token", RECORDER)
            .body(Body::from("x"))
            .unwrap();
        let (status, _, body) = send(&router(&sink), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("session_id"));
        // Declared over the cap: 413 before a chunk is cut.
        let request = Request::post("/v1/recordings/s")
            .header("x-inlet-token", RECORDER)
            .header("content-length", 10 * CHUNK + 1)
            .body(Body::from(vec![b'x'; 10 * CHUNK + 1]))
            .unwrap();
        let (status, _, body) = send(&router(&sink), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(String::from_utf8_lossy(&body).contains("body_too_large"));
        assert!(sink.records().is_empty());
    }

    #[tokio::test]
    async fn a_stalled_upload_is_cut_off_like_any_slow_body() {
        let sink = Arc::new(MemorySink::accepting());
        let router = crate::http::public_router(state(Arc::clone(&sink), |s| {
            s.recordings_chunk_bytes = Some(CHUNK);
            s.body_timeout_ms = Some(200);
        }));
        let pieces = [Bytes::from(vec![b'x'; 3 * CHUNK])].into();
        let stalls = Body::new(Pieces {
            pieces,
            stall: true,
        });
        let (status, _, answer) = send(&router, post(RECORDER, stalls)).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert!(String::from_utf8_lossy(&answer).contains("body_timeout"));
        let chunks = recordings(&sink);
        assert_eq!(chunks.len(), 3, "the chunks before the stall");
        assert!(chunks.iter().all(|c| !c.last));
    }

    #[tokio::test]
    async fn a_body_that_fails_half_way_leaves_an_incomplete_recording() {
        // Streamed past the cap: the chunks before it are produced, and none is the last.
        let sink = Arc::new(MemorySink::accepting());
        let body = streamed(&vec![b'x'; 12 * CHUNK]);
        let (status, _, answer) = send(&router(&sink), post(RECORDER, body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(String::from_utf8_lossy(&answer).contains("body_too_large"));
        let chunks = recordings(&sink);
        assert!(!chunks.is_empty() && chunks.iter().all(|c| !c.last));
        // A chunk the broker refuses: 503 with Retry-After, and nothing more is produced.
        let sink = Arc::new(MemorySink::answering(|record| {
            match envelope(record).event {
                Some(Event::Recording(r)) if r.index == 2 => Err(Failure::QueueFull),
                _ => Ok(()),
            }
        }));
        let body = streamed(&vec![b'x'; 9 * CHUNK]);
        let (status, headers, answer) = send(&router(&sink), post(RECORDER, body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(String::from_utf8_lossy(&answer).contains("queue_full"));
        assert!(recordings(&sink).iter().all(|c| !c.last));
    }
}

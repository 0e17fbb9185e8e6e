//! The one handler of every ingest endpoint, native or an SDK's.
//!
//! A protocol (inlet's own JSON, the pixel, each SDK) is a [`Protocol`]: where the request
//! carries its key, what it checks of the request's head, how a body becomes a lane's [`Batch`],
//! and the shape of its replies. [`handle`] runs the same steps in the same order for all of
//! them, so none can drift:
//!
//! 1. the key from the head, when the protocol carries it there: authenticated and admitted
//!    (shutdown, the lane's permission, the origin) before the body is read; a protocol whose
//!    key may only be in the head is refused 401 here when it is missing;
//! 2. the head checked (media type, query), then the body read within the lane's caps
//!    (`http::body`: as sent, at a minimum rate, decoded);
//! 3. the translation into a batch, on the blocking pool when the body is large;
//! 4. a key read from the body, when the head had none: authenticated and admitted;
//! 5. the count of events capped, the batch handed to the [pipeline](crate::pipeline) with the
//!    body's batches of other lanes (an SDK's other items, for the `item` lane), each admitted
//!    for its lane, answered as one;
//! 6. the items counted by outcome (`inlet_sdk_items_total`), and the answer (or the error) in
//!    the protocol's shape.
//!
//! A panic anywhere in these steps (a translation bug) is caught: the request is answered 500
//! `internal_error` in the protocol's shape, logged with its route and counted
//! (`inlet_http_panics_total`), instead of dropping the connection.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;

use super::authenticate::{request_origin, Authenticated};
use super::body::{read_decoded, MinRate};
use crate::batch::{off_the_runtime_if, Batch, BLOCKING_PARSE_BYTES};
use crate::error::{ApiError, Refusal};
use crate::lane::{BodyLimits, Lane};
use crate::metrics;
use crate::pipeline::Answer;
use crate::sdk::Items;
use crate::state::AppState;

/// One protocol's side of an endpoint; [`handle`] does the rest. Implementations are small
/// values (a unit struct, a lane), copied into each request.
pub trait Protocol: Copy + Send + Sync + 'static {
    /// What the translation keeps of the request's head (a media type, a query parameter).
    type Head: Send + 'static;
    /// What the reply needs besides the pipeline's answer (an SDK's event id).
    type Receipt: Send + 'static;

    /// The lane its events travel in.
    fn lane(self) -> Lane;

    /// The key, where the request's head carries it (a header, the query string).
    fn key(self, parts: &Parts) -> Option<String>;

    /// Whether the key may come in the body instead, read after it. When it may not, a request
    /// whose head has no key is refused before its body is read.
    fn key_in_body(self) -> bool {
        false
    }

    /// Checks the request's head (415 for a media type the protocol does not send) and keeps
    /// what the translation needs of it.
    fn head(self, parts: &Parts) -> Result<Self::Head, ApiError>;

    /// The caps of a request's body: its lane's, unless the protocol's SDKs send larger bodies
    /// (one event's cap stays the lane's).
    fn body_limits(self, lane: BodyLimits) -> BodyLimits {
        lane
    }

    /// Whether the request has a body to read (a `GET` has none).
    fn has_body(self) -> bool {
        true
    }

    /// Whether translating `body` is work for the blocking pool rather than a runtime worker.
    fn off_the_runtime(self, _head: &Self::Head, body: &Bytes) -> bool {
        body.len() >= BLOCKING_PARSE_BYTES
    }

    /// The body (decoded) as a batch of the lane's events, with a key found in it, the items it
    /// held and the receipt. Pure, and run on the blocking pool when the body is large.
    fn translate(
        self,
        head: Self::Head,
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<Self::Receipt>, ApiError>;

    /// Whether the answer may say "some accepted" (207). An SDK has no such answer: an event
    /// that was valid but not delivered makes its whole request a 503 (with `Retry-After`) so
    /// the SDK resends it, and the events accepted the first time are deduplicated downstream
    /// by their ids.
    fn partial_answers(self) -> bool {
        false
    }

    /// The reply: the pipeline's answer with the receipt, or the error, in the protocol's shape.
    fn reply(self, outcome: Result<(Answer, Self::Receipt), ApiError>) -> Response;
}

/// What a translation may use: the lane's caps, the most events a request may carry, and the
/// largest item the `item` lane takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub lane: BodyLimits,
    pub max_events: usize,
    pub max_item: usize,
}

/// What a translation makes of a body.
pub struct Translation<R> {
    /// The events of the protocol's lane.
    pub batch: Batch,
    /// The body's events of other lanes (an SDK's other items), produced with `batch` (see
    /// [`Pipeline::ingest_lanes`](crate::pipeline::Pipeline::ingest_lanes)).
    pub also: Vec<Batch>,
    /// For a token that may not send the lane named, that lane's batch of `also` is replaced
    /// by this one, of the protocol's own lane (PostHog's `$exception` events stay beacons for
    /// a token without `occurrence`), so the request is not refused for it.
    pub instead: Option<(Lane, Batch)>,
    /// The key, when the body carries it (the protocol's [`Protocol::key_in_body`]).
    pub key: Option<String>,
    /// The items the body held, counted once the request is authenticated.
    pub items: Items,
    pub receipt: R,
}

impl<R> Translation<R> {
    /// The same translation, its body having held `items`.
    pub fn with_items(self, items: Items) -> Translation<R> {
        Translation { items, ..self }
    }

    /// The same translation, with the key its body carried (if any).
    pub fn with_key(self, key: Option<String>) -> Translation<R> {
        Translation { key, ..self }
    }

    /// A translation of `batch` with no key, no item counted and `receipt`.
    pub fn of(batch: Batch, receipt: R) -> Translation<R> {
        Translation {
            batch,
            also: Vec::new(),
            instead: None,
            key: None,
            items: Items::default(),
            receipt,
        }
    }
}

/// Serves one request of `protocol`: the steps of the module's doc, in their order.
pub async fn handle<P: Protocol>(protocol: P, state: AppState, request: Request) -> Response {
    // Kept for the log should the request panic (a reference count, not a copy).
    let route = request.extensions().get::<MatchedPath>().cloned();
    let outcome = match CatchUnwind(run(protocol, state, request)).await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            Err(panicked(route, &*panic))
        }
    };
    protocol.reply(outcome)
}

async fn run<P: Protocol>(
    protocol: P,
    state: AppState,
    request: Request,
) -> Result<(Answer, P::Receipt), ApiError> {
    let (parts, body) = request.into_parts();
    let lane = protocol.lane();
    // A key the head lacks is looked for in the body only where the protocol may put it there.
    let early = match (protocol.key(&parts), protocol.key_in_body()) {
        (None, true) => None,
        (key, _) => Some(authorize(&state, &parts, lane, key)?),
    };
    let head = protocol.head(&parts)?;
    let caps = protocol.body_limits(state.limits(lane));
    let body = match protocol.has_body() {
        true => read_body(&state, caps, &parts, body).await?,
        false => Bytes::new(),
    };
    let limits = Limits {
        lane: caps,
        max_events: state.edge.max_events_per_request,
        max_item: state.limits(Lane::ITEM).max_event,
    };
    let translation = translate(protocol, head, body, limits).await?;
    let auth = match early {
        Some(auth) => auth,
        None => authorize(&state, &parts, lane, translation.key)?,
    };
    let (source, items) = (translation.batch.source, translation.items);
    let mut also = translation.also;
    if let Some((other, instead)) = translation.instead {
        if !auth.token.allows(other) {
            also.retain(|batch| batch.kind != other);
            also.push(instead);
        }
    }
    let batches: Vec<Batch> = std::iter::once(translation.batch)
        .chain(also)
        .filter(|batch| !batch.is_empty())
        .collect();
    let answer = ingest(protocol, &state, &parts, &auth, batches, limits.max_events).await;
    items.count(source, answer.as_ref());
    Ok((answer?, translation.receipt))
}

/// The batches of a request, each admitted for its lane, handed to the pipeline (steps 5 and
/// 6 of the module's doc): the answer, or the error that refused them all.
async fn ingest<P: Protocol>(
    protocol: P,
    state: &AppState,
    parts: &Parts,
    auth: &Authenticated,
    batches: Vec<Batch>,
    max_events: usize,
) -> Result<Answer, ApiError> {
    let events: usize = batches.iter().map(Batch::len).sum();
    if events > max_events {
        return Err(ApiError::TooManyEvents { limit: max_events });
    }
    // The protocol's own lane was admitted with the key; the body's other lanes are now.
    for batch in batches.iter().filter(|batch| batch.kind != protocol.lane()) {
        let origin = request_origin(&parts.headers);
        (state.pipeline).admit(&auth.token, batch.kind, origin.as_deref())?;
    }
    let answer = match batches.is_empty() {
        true => Answer::nothing(state.delivery),
        false => {
            let client = auth.client(&parts.headers);
            (state.pipeline)
                .ingest_lanes(&auth.token, client, batches)
                .await?
        }
    };
    if !protocol.partial_answers() {
        let undelivered = answer.rejected.iter().find_map(|r| match r.refusal {
            Refusal::Undelivered(failure) if r.refusal.is_retriable() => Some(failure),
            _ => None,
        });
        if let Some(failure) = undelivered {
            return Err(ApiError::Unavailable(failure));
        }
    }
    Ok(answer)
}

/// The translation step: in place, or on the blocking pool when the protocol says the body is
/// large, so one huge body cannot hold up a runtime worker (and every request queued behind it).
async fn translate<P: Protocol>(
    protocol: P,
    head: P::Head,
    body: Bytes,
    limits: Limits,
) -> Result<Translation<P::Receipt>, ApiError> {
    let large = protocol.off_the_runtime(&head, &body);
    off_the_runtime_if(large, "translated", move || {
        protocol.translate(head, body, limits)
    })
    .await?
}

/// Resolves a key to a token (wherever the protocol carried it) and admits the request for
/// events of `lane` from its page: the checks every endpoint makes before it ingests.
pub fn authorize(
    state: &AppState,
    parts: &Parts,
    lane: Lane,
    key: Option<String>,
) -> Result<Authenticated, ApiError> {
    let auth = Authenticated::resolve(state, parts, key)?;
    let origin = request_origin(&parts.headers);
    state.pipeline.admit(&auth.token, lane, origin.as_deref())?;
    Ok(auth)
}

/// Reads and decodes a request's body within `caps`, its size recorded by the request's
/// matched route.
pub async fn read_body(
    state: &AppState,
    caps: BodyLimits,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<Bytes, ApiError> {
    let sent_bytes = super::edge::body_bytes(parts.extensions.get::<MatchedPath>());
    let rate = MinRate::of(&state.edge);
    read_decoded(&parts.headers, body, caps, rate, sent_bytes).await
}

/// The error for a request whose handling panicked, logged and counted.
pub(crate) fn panicked(route: &str, panic: &(dyn std::any::Any + Send)) -> ApiError {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    tracing::error!(route, panic = what, "request handler panicked");
    ::metrics::counter!(metrics::HTTP_PANICS, "route" => route.to_owned()).increment(1);
    ApiError::Internal
}

/// A future whose panic is caught and returned, as `std::panic::catch_unwind` does for a
/// closure: the request's state is dropped with it, and nothing else shares it.
pub(crate) struct CatchUnwind<F>(pub F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the inner future is structurally pinned: never moved out of `self`.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::Router;
    use serde_json::Value;

    use super::*;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    /// A protocol whose translation panics: a bug, as a lone surrogate once was in the adapters.
    #[derive(Clone, Copy)]
    struct Boom;

    impl Protocol for Boom {
        type Head = ();
        type Receipt = ();
        fn lane(self) -> Lane {
            Lane::BEACON
        }
        fn key(self, parts: &Parts) -> Option<String> {
            super::super::authenticate::presented_secret(parts)
        }
        fn head(self, _: &Parts) -> Result<(), ApiError> {
            Ok(())
        }
        fn translate(self, _: (), body: Bytes, _: Limits) -> Result<Translation<()>, ApiError> {
            match &body[..] {
                b"fine" => Ok(Translation::of(Batch::query("session_id=s&event=e"), ())),
                _ => panic!("a translation bug"),
            }
        }
        fn reply(self, outcome: Result<(Answer, ()), ApiError>) -> Response {
            match outcome {
                Ok(_) => StatusCode::OK.into_response(),
                Err(error) => error.into_response(),
            }
        }
    }

    #[tokio::test]
    async fn a_panic_while_serving_is_a_500_with_its_code_and_the_server_serves_on() {
        let sink = Arc::new(MemorySink::accepting());
        let router = Router::new()
            .route(
                "/boom",
                post(|State(state), request| handle(Boom, state, request)),
            )
            .with_state(state(Arc::clone(&sink), |_| {}));
        let request = |body: Vec<u8>| {
            Request::post("/boom")
                .header("x-inlet-token", SECRET)
                .body(Body::from(body))
                .unwrap()
        };
        // In place, and on the blocking pool (a body past the threshold).
        for body in [b"boom".to_vec(), vec![b' '; BLOCKING_PARSE_BYTES]] {
            let (status, _, body) = send(&router, request(body)).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "internal_error");
        }
        let (status, _, _) = send(&router, request(b"fine".to_vec())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sink.records().len(), 1);
    }

    /// Whether translating `body` as inlet's beacons let another task of a single-threaded
    /// runtime run, which it can only when the translation went to the blocking pool.
    async fn yields_while_translating(body: Bytes) -> (bool, usize) {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = Arc::clone(&ran);
            async move { ran.store(true, std::sync::atomic::Ordering::SeqCst) }
        });
        let limits = Limits {
            lane: crate::testing::config(|_| {}).limits(Lane::BEACON),
            max_events: 100_000,
            max_item: 1 << 20,
        };
        let native = crate::http::ingest::Native(Lane::BEACON);
        let translation = translate(native, (), body, limits).await.unwrap();
        let yielded = ran.load(std::sync::atomic::Ordering::SeqCst);
        other.await.unwrap();
        (yielded, translation.batch.len())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn large_bodies_are_split_off_the_runtime_and_small_ones_in_place() {
        let event = serde_json::json!({"session_id": "s", "event": "e"}).to_string();
        let small = Bytes::from(format!("[{}]", [event.as_str(); 10].join(",")));
        assert_eq!(yields_while_translating(small).await, (false, 10));
        let n = BLOCKING_PARSE_BYTES / event.len() + 1;
        let large = Bytes::from(format!("[{}]", vec![event.as_str(); n].join(",")));
        assert!(large.len() >= BLOCKING_PARSE_BYTES);
        assert_eq!(yields_while_translating(large).await, (true, n));
    }
}

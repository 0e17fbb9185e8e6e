//! What every request on the public listener goes through before its route and after it, as
//! one layer: a request id and the request's metrics, then the CORS headers, then load
//! shedding.
//!
//! One layer of plain functions rather than three `from_fn` layers: each of those clones the
//! service below it and boxes a future per request, and the metric macros copy their labels into
//! a new allocation at every call; at 1,024 connections both were a measurable part of a
//! request's CPU (loadtest/RESULTS.md, 2026-11-29). So the route's metric handles are kept.

use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram};
use tracing::Instrument;

use super::cors;
use crate::error::ApiError;
use crate::metrics as names;
use crate::state::AppState;

/// The header carrying a request's id, in both directions.
pub const REQUEST_ID: &str = "x-request-id";

/// The layer: [`track`] around [`cors::allow_origin`] around [`shed`] around the route.
pub async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    track(request, |request| async move {
        cors::allow_origin(request, |request| shed(&state, request, next)).await
    })
    .await
}

/// Answers 503 `overloaded` at once when `max_concurrent_requests` are already in flight, so
/// overload shows as fast refusals a load balancer can route around, not as slow answers.
async fn shed(state: &AppState, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.try_acquire() else {
        ::metrics::counter!(names::REQUESTS_SHED).increment(1);
        return ApiError::Overloaded.into_response();
    };
    let _counted = InFlight::enter();
    next.run(request).await
}

/// One request counted in `inlet_http_requests_in_flight` while it lives: dropped when the
/// request is answered, or when its client hangs up and the request is dropped unanswered.
struct InFlight(&'static Gauge);

impl InFlight {
    fn enter() -> InFlight {
        static IN_FLIGHT: OnceLock<Gauge> = OnceLock::new();
        let gauge = IN_FLIGHT.get_or_init(|| ::metrics::gauge!(names::REQUESTS_IN_FLIGHT));
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Gives every request an id (the client's `X-Request-Id` when it is a sane token, else a new
/// UUIDv7), logs within a span that carries it, returns it in `X-Request-Id`, and counts the
/// request by route and status and times it.
async fn track<F: std::future::Future<Output = Response>>(
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let route = RouteMetrics::of(request.extensions().get::<MatchedPath>());
    let id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(|| {
            let mut hex = [0u8; uuid::fmt::Simple::LENGTH];
            let hex = crate::id::uuid_v7().simple().encode_lower(&mut hex);
            HeaderValue::from_str(hex).expect("hex is a valid header value")
        });
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        route = %route.name
    );
    let started = Instant::now();
    let mut response = inner(request).instrument(span).await;
    response.headers_mut().insert(REQUEST_ID, id);
    route.record(response.status(), started.elapsed());
    response
}

/// One route's handles of `inlet_http_request_duration_seconds` and
/// `inlet_http_requests_total`, registered on first use and kept: counting a request is then
/// two atomic operations.
struct RouteMetrics {
    /// The route's path template as matched (`unmatched` for requests that match none).
    name: &'static str,
    duration: Histogram,
    /// By status code, from 100 to 599.
    requests: [OnceLock<Counter>; 500],
    /// Sizes of the bodies read on the route, as sent (made on the first one).
    body_bytes: OnceLock<Histogram>,
}

/// The `inlet_http_request_body_bytes` histogram of a request's matched route, its handle kept
/// with the route's others.
pub fn body_bytes(matched: Option<&MatchedPath>) -> &'static Histogram {
    let route = RouteMetrics::of(matched);
    route
        .body_bytes
        .get_or_init(|| ::metrics::histogram!(names::HTTP_BODY_BYTES, "route" => route.name))
}

/// Every route seen so far: as many as the route table has, plus `unmatched`.
static ROUTES: RwLock<Vec<&'static RouteMetrics>> = RwLock::new(Vec::new());

impl RouteMetrics {
    /// The handles of a request's matched route.
    fn of(matched: Option<&MatchedPath>) -> &'static RouteMetrics {
        let name = matched.map_or("unmatched", MatchedPath::as_str);
        let known =
            |routes: &[&'static RouteMetrics]| routes.iter().copied().find(|r| r.name == name);
        if let Some(route) = known(&ROUTES.read().unwrap_or_else(|e| e.into_inner())) {
            return route;
        }
        let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = known(&routes) {
            return route;
        }
        // Leaked once per route of the route table: a fixed, small set.
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let route: &'static RouteMetrics = Box::leak(Box::new(RouteMetrics {
            name,
            duration: ::metrics::histogram!(names::HTTP_DURATION, "route" => name),
            requests: [const { OnceLock::new() }; 500],
            body_bytes: OnceLock::new(),
        }));
        routes.push(route);
        route
    }

    /// Counts one answer with `status` and records how long it took.
    fn record(&self, status: StatusCode, took: Duration) {
        self.duration.record(took);
        let name = self.name;
        let counter = |status: u16| {
            let status = status.to_string();
            ::metrics::counter!(names::HTTP_REQUESTS, "route" => name, "status" => status)
        };
        let status = status.as_u16();
        match self.requests.get(usize::from(status).wrapping_sub(100)) {
            Some(cell) => cell.get_or_init(|| counter(status)).increment(1),
            None => counter(status).increment(1),
        }
    }
}

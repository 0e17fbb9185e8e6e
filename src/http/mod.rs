//! HTTP: the one route table of each listener, the layers around it, and one module per
//! endpoint. Handlers only extract what a request carries and shape the reply; what happens to
//! the events is the [pipeline](crate::pipeline)'s.

pub mod adapter;
pub mod authenticate;
pub mod body;
pub mod cors;
pub mod edge;
pub mod honeybadger;
pub mod ingest;
pub mod listen;
pub mod ops;
pub mod otlp;
pub mod pixel;
pub mod posthog;
pub mod recording;
pub mod reply;
pub mod rollbar;
pub mod sdk;
pub mod segment;
pub mod sentry;

use axum::extract::State;
use axum::handler::Handler;
use axum::middleware;
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use adapter::Protocol;
use honeybadger::Honeybadger;
use ingest::Native;
use pixel::Pixel;
use posthog::Capture;
use rollbar::Rollbar;
use segment::Segment;
use sentry::Sentry;

use crate::lane::Lane;
use crate::otlp::Signal;
use crate::state::AppState;
pub use edge::REQUEST_ID;

/// The public listener: the ingest API and health endpoints.
///
/// One layer around every route, [`edge::edge`]: request id and metrics, then CORS headers
/// (both see every answer, so a browser can read even a 503 `overloaded`), then load shedding
/// (503 past `max_concurrent_requests`). Every ingest route is one protocol's [`adapter`]
/// handler; body limits are its lane's, read where the handler reads the body.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/beacons", posted(Native(Lane::BEACON)))
        .route("/v1/occurrences", posted(Native(Lane::OCCURRENCE)))
        .route(
            "/v1/pixel.gif",
            get(|State(state), request| adapter::handle(Pixel, state, request))
                .head(pixel::head)
                .options(cors::preflight),
        )
        .route(
            "/v1/recordings/{session_id}",
            post(recording::upload).options(cors::preflight),
        )
        .route("/v1/traces", exported(Signal::Traces))
        .route("/v1/logs", exported(Signal::Logs))
        .route("/v1/metrics", exported(Signal::Metrics))
        .merge(analytics_routes())
        .merge(error_trackers())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state)
}

/// `handler` for `GET` (and `HEAD`), with the CORS preflight.
fn fetched<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    get(handler).options(cors::preflight)
}

/// `protocol`'s handler for `POST`, with the CORS preflight.
fn posted<P: Protocol>(protocol: P) -> MethodRouter<AppState> {
    post(move |State(state), request| adapter::handle(protocol, state, request))
        .options(cors::preflight)
}

/// OTLP's route of `signal`, with the CORS preflight.
fn exported(signal: Signal) -> MethodRouter<AppState> {
    post(move |State(state), request| otlp::export(signal, state, request)).options(cors::preflight)
}

/// The drop-in endpoints of the analytics SDKs (Segment, PostHog), each path with and without
/// its trailing slash, as the SDKs and their users write them either way.
fn analytics_routes() -> Router<AppState> {
    let flags = || {
        get(posthog::flags)
            .post(posthog::flags)
            .options(cors::preflight)
    };
    let mut router = Router::new();
    for path in ["/v1/batch", "/v1/b", "/v1/import"] {
        router = slashed(router, path, posted(Segment::Batch));
    }
    for (call, short) in segment::CALLS {
        router = slashed(router, &format!("/v1/{call}"), posted(Segment::Call(call)));
        router = slashed(router, &format!("/v1/{short}"), posted(Segment::Call(call)));
    }
    for path in ["/e", "/i/v0/e", "/capture", "/batch", "/track", "/engage"] {
        router = slashed(router, path, posted(Capture::Events));
    }
    router = slashed(router, "/s", posted(Capture::Snapshots));
    router = slashed(
        router,
        "/v1/projects/{write_key}/settings",
        fetched(segment::settings),
    );
    router = slashed(router, "/flags", flags());
    router = slashed(router, "/decide", flags());
    for path in ["/flags/definitions", "/api/feature_flag/local_evaluation"] {
        router = slashed(router, path, fetched(posthog::flag_definitions));
    }
    router
        .route("/static/{file}", fetched(posthog::script))
        .route("/static/{version}/{file}", fetched(posthog::script))
        .route("/array/{token}/config", fetched(posthog::config))
        .route("/array/{token}/config.js", fetched(posthog::config_js))
}

/// The drop-in endpoints of the error trackers' SDKs (Rollbar, Sentry, Honeybadger), each path
/// with and without its trailing slash, as the SDKs and the contract write them.
fn error_trackers() -> Router<AppState> {
    let check_in = || {
        let handler = |State(state), request| adapter::handle(Honeybadger::CheckIn, state, request);
        get(handler).post(handler).options(cors::preflight)
    };
    let routes: [(&str, MethodRouter<AppState>); 12] = [
        ("/api/1/item/", posted(Rollbar::Item)),
        ("/api/1/item_batch/", posted(Rollbar::Batch)),
        ("/api/1/deploy/", posted(Rollbar::Deploy)),
        ("/api/{project}/envelope/", posted(Sentry::Envelope)),
        ("/api/{project}/store/", posted(Sentry::Store)),
        ("/api/{project}/security/", posted(Sentry::Security)),
        ("/v1/notices/", posted(Honeybadger::Notice)),
        ("/v1/notices/js/", posted(Honeybadger::Notice)),
        ("/v1/events/", posted(Honeybadger::Events)),
        ("/v1/deploys/", posted(Honeybadger::Deploy)),
        ("/v1/check_in/{id}/", check_in()),
        ("/v1/check_in/{key}/{slug}/", check_in()),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            slashed(router, path, handler)
        })
}

/// `router` with `handler` at `path`, with and without its trailing slash.
fn slashed(
    router: Router<AppState>,
    path: &str,
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    let bare = path.trim_end_matches('/');
    router
        .route(&format!("{bare}/"), handler.clone())
        .route(bare, handler)
}

/// The admin listener: metrics and health endpoints.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .fallback(ops::not_found)
        .with_state(state)
}

/// Shared by the unit tests of the HTTP modules: sending a request through a router.
#[cfg(test)]
pub(crate) mod testing {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use tower::ServiceExt;

    /// Sends `request` through `router`; returns the status, the headers and the body.
    pub async fn send(
        router: &Router,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};

    use super::testing::send;
    use super::*;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    const ORIGIN: &str = "https://www.acme.example";

    #[tokio::test]
    async fn an_overloaded_answer_carries_the_cors_headers() {
        let state = state(Arc::new(MemorySink::accepting()), |s| {
            s.max_concurrent_requests = Some(1)
        });
        let router = public_router(state.clone());
        let _busy = state.in_flight.try_acquire().unwrap();
        let request = Request::post("/v1/beacons")
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .header(header::ORIGIN, ORIGIN)
            .body(Body::from(r#"{"session_id":"s","event":"e"}"#))
            .unwrap();
        let (status, headers, body) = send(&router, request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(&body).contains("overloaded"));
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert!(headers.contains_key(REQUEST_ID));
    }

    #[tokio::test]
    async fn head_on_the_pixel_ingests_nothing() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let uri = format!("/v1/pixel.gif?token={SECRET}&session_id=s&event=view");
        let head = Request::builder()
            .method(Method::HEAD)
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&router, head).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, OPTIONS");
        assert!(body.is_empty(), "a HEAD answer has no body");
        assert!(sink.records().is_empty(), "HEAD produced an event");
        // The same URL with GET is a beacon.
        let get = Request::get(&uri).body(Body::empty()).unwrap();
        let (status, headers, _) = send(&router, get).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "image/gif");
        assert_eq!(sink.records().len(), 1);
    }

    #[tokio::test]
    async fn a_repeated_pixel_field_is_a_400_naming_it() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let get = Request::get(format!(
            "/v1/pixel.gif?token={SECRET}&session_id=a&event=view&session_id=b"
        ))
        .body(Body::empty())
        .unwrap();
        let (status, _, body) = send(&router, get).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["accepted"], 0);
        assert_eq!(body["rejected"][0]["code"], "duplicate_field");
        assert!(body["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`session_id`"));
        assert!(sink.records().is_empty());
    }
}

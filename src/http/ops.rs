//! Operational endpoints: liveness, readiness, metrics, and the JSON 404/405.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::Delivery;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 while the sink can take events (a broker is reachable; under `spool`, the
/// spool is writable and under 90 % full) and inlet is not draining, else 503, so a load
/// balancer sends traffic only where it can be accepted.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if !state.shutdown.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !state.sink.ready() {
        let why = match state.delivery {
            Delivery::Spool => "spool not writable or over 90% full\n",
            Delivery::Ack | Delivery::Enqueue => "no Kafka broker reachable\n",
        };
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    } else {
        // Still ready: only the tokens that name these topics are refused.
        let missing = state.sink.missing_topics();
        let details: String = (missing.iter())
            .map(|topic| format!("topic `{topic}` named in the token registry does not exist\n"))
            .collect();
        (StatusCode::OK, format!("ready\n{details}")).into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

//! What every request shares: configuration, the token registry, the pipeline, the shutdown
//! phase and the HTTP edge's own bookkeeping. Built once, when inlet starts.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::client::AuthFailures;
use crate::config::{BodyLimits, Config, Delivery, EdgeConfig, LaneConfig};
use crate::fleet::Fleet;
use crate::lane::{Lane, PerLane};
use crate::pipeline::Pipeline;
use crate::shutdown::Shutdown;
use crate::sink::Sink;

/// Everything a handler may need, shared by all requests: one `Arc`, so handing it to a
/// request (axum clones the state for every extractor and middleware) is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    /// The HTTP edge's settings.
    pub edge: EdgeConfig,
    /// Each lane's topic and caps.
    pub lanes: PerLane<LaneConfig>,
    /// When requests are answered.
    pub delivery: Delivery,
    pub tokens: Arc<Tokens>,
    pub pipeline: Pipeline,
    pub sink: Arc<dyn Sink>,
    pub shutdown: Arc<Shutdown>,
    pub metrics: PrometheusHandle,
    /// Permits for requests in flight on the public listener (`max_concurrent_requests`).
    pub in_flight: Semaphore,
    /// Failed authentications per client address.
    pub auth_failures: AuthFailures,
}

impl Shared {
    /// Size caps of `lane`'s requests.
    pub fn limits(&self, lane: Lane) -> BodyLimits {
        self.lanes[lane].limits
    }
}

impl AppState {
    /// State for `config` with the given registry and sink, serving: each part gets its own
    /// settings.
    pub fn new(config: Config, tokens: Arc<Tokens>, sink: Arc<dyn Sink>) -> AppState {
        let shutdown = Arc::new(Shutdown::new());
        let edge = config.edge;
        let letters = config.lanes[Lane::DEAD_LETTER].on;
        AppState(Arc::new(Shared {
            in_flight: Semaphore::new(edge.max_concurrent_requests),
            auth_failures: AuthFailures::new(
                edge.auth_failures_per_minute,
                Duration::from_secs(60),
            ),
            pipeline: Pipeline::new(
                config.ingest,
                Fleet::new(&config.fleet, letters.then(|| Arc::clone(&sink))),
                Arc::clone(&sink),
                Arc::clone(&shutdown),
            ),
            edge,
            lanes: config.lanes,
            delivery: config.ingest.delivery,
            tokens,
            sink,
            shutdown,
            metrics: crate::metrics::install(),
        }))
    }
}

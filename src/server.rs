//! The server: builds the shared state, serves both listeners, and shuts down in order. The
//! binary and the tests both start inlet through [`run`].
//!
//! Shutdown, once the `shutdown` future resolves, goes through the [`Phase`]s within the grace
//! period: not ready (still serving for `shutdown_delay`, 0 by default, while load balancers
//! notice); draining (the public listener stops accepting, new ingest requests get 503, and
//! in-flight requests finish); flushing (the producer delivers what is queued; under `spool`,
//! the spool delivers for the rest of the grace and keeps the rest on disk). Past the grace,
//! inlet logs what it could not deliver and returns an error (exit status 1). A second signal
//! (`force`) ends the wait at once, with the same count.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{Registry, Tokens};
use crate::config::{Config, EdgeConfig};
use crate::http::{self, listen};
use crate::shutdown::Phase;
use crate::sink::Sink;
use crate::state::AppState;

/// Open connections on the admin listener at most (scrapers and probes).
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// How often the token registry file is checked for changes.
const TOKENS_POLL: Duration = Duration::from_secs(1);

/// How often the metrics recorder does its upkeep (histogram buckets).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The token registry `config` names (its file, or the development token under `--dev`); a
/// file that cannot be read, does not parse or holds no token is an error naming the file.
pub fn tokens(config: &Config) -> anyhow::Result<Tokens> {
    match &config.tokens_file {
        Some(path) => Tokens::load(path),
        None => Ok(Tokens::fixed(Registry::dev())),
    }
}

/// The two bound listeners inlet serves.
pub struct Listeners {
    /// The ingest API.
    pub public: TcpListener,
    /// Metrics and probes.
    pub admin: TcpListener,
}

/// Runs inlet on bound listeners, producing to `sink`, until `shutdown` resolves; then drains
/// and flushes. If `force` resolves during the drain (a second signal), returns at once with an
/// error that counts the events not yet delivered.
pub async fn run(
    config: Config,
    tokens: Tokens,
    sink: Arc<dyn Sink>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(config, Arc::new(tokens), sink);
    tracing::info!(
        public = %listeners.public.local_addr()?,
        admin = %listeners.admin.local_addr()?,
        delivery = ?state.delivery,
        "inlet is serving"
    );
    let chores = [
        tokio::spawn(Arc::clone(&state.tokens).watch(TOKENS_POLL)),
        tokio::spawn(metrics_upkeep(state.clone())),
    ];
    let (public, admin) = (
        Server::public(&state, listeners.public),
        Server::admin(&state, listeners.admin),
    );

    shutdown.await;
    let (undelivered, forced) = tokio::select! {
        n = drain(&state, public) => (n, false),
        () = force => (state.sink.in_flight(), true),
    };
    admin.stop(Duration::from_secs(1)).await;
    chores.iter().for_each(JoinHandle::abort);
    if forced {
        tracing::error!(
            undelivered,
            "second signal: exiting without finishing the drain"
        );
        anyhow::bail!("forced exit with {undelivered} events not delivered");
    }
    if undelivered > 0 {
        anyhow::bail!("shutdown grace period over with {undelivered} events not delivered");
    }
    Ok(())
}

/// One listener being served, and the switch that stops it.
struct Server {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves the ingest API on `listener`, with the public listener's connection limits.
    fn public(state: &AppState, listener: TcpListener) -> Server {
        let limits = conn_limits(&state.edge, state.edge.max_connections);
        Server::start(
            listener,
            http::public_router(state.clone()),
            limits,
            "public",
        )
    }

    /// Serves metrics and probes on `listener`.
    fn admin(state: &AppState, listener: TcpListener) -> Server {
        let limits = conn_limits(&state.edge, ADMIN_MAX_CONNECTIONS);
        Server::start(listener, http::admin_router(state.clone()), limits, "admin")
    }

    fn start(
        listener: TcpListener,
        router: axum::Router,
        limits: listen::ConnLimits,
        name: &'static str,
    ) -> Server {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(listen::serve(listener, router, limits, name, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        Server { stop, task }
    }

    /// Stops accepting and waits up to `within` for the requests in flight; whether they all
    /// finished.
    async fn stop(self, within: Duration) -> bool {
        let _ = self.stop.send(true);
        match tokio::time::timeout(within, self.task).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::error!(%error, "listener task failed");
                false
            }
            Err(_) => false,
        }
    }
}

/// The connection limits `config` sets, with at most `max_connections` open.
fn conn_limits(edge: &EdgeConfig, max_connections: usize) -> listen::ConnLimits {
    listen::ConnLimits {
        max_connections,
        header_read_timeout: edge.header_read_timeout,
        max_headers: edge.max_headers,
        max_header_bytes: edge.max_header_bytes,
    }
}

/// The graceful shutdown, phase by phase, within `shutdown_grace`; returns how many accepted
/// events were not delivered.
async fn drain(state: &AppState, public: Server) -> usize {
    let grace = state.edge.shutdown_grace;
    let started = Instant::now();
    let left = || grace.saturating_sub(started.elapsed());

    state.shutdown.enter(Phase::NotReady);
    let delay = state.edge.shutdown_delay.min(grace);
    if !delay.is_zero() {
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "shutting down: not ready, still serving while load balancers notice"
        );
        tokio::time::sleep(delay).await;
    }

    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining requests"
    );
    state.shutdown.enter(Phase::Draining);
    if public.stop(left()).await {
        tracing::info!("in-flight requests finished");
    } else {
        tracing::warn!("grace period over with requests still in flight");
    }

    state.shutdown.enter(Phase::Flushing);
    let within = left().max(Duration::from_millis(100));
    let sink = Arc::clone(&state.sink);
    let undelivered = tokio::task::spawn_blocking(move || sink.close(within))
        .await
        .unwrap_or(usize::MAX);
    if state.delivery == crate::config::Delivery::Spool {
        // The spool's close logs what it delivered and what stays on disk; none is at risk.
    } else if undelivered == 0 {
        tracing::info!("producer flushed: every accepted event was delivered");
    } else {
        tracing::error!(undelivered, "grace period over: events were not delivered");
    }
    undelivered
}

/// Keeps the metrics recorder's histograms fresh, for as long as inlet runs.
async fn metrics_upkeep(state: AppState) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tick.tick().await;
        state.metrics.run_upkeep();
    }
}

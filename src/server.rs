//! The server: builds the shared state, serves both listeners, and shuts down in order.
//!
//! Shutdown, once the `shutdown` future resolves: readiness turns false; after `shutdown_delay`
//! (time for load balancers to notice, 0 by default) new ingest requests get 503, the public
//! listener stops accepting and in-flight requests finish; then the producer
//! delivers what is queued; all within the grace period, after which inlet logs what it could
//! not deliver and returns an error (exit status 1). A second signal (`force`) ends the wait at
//! once, with the same count.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::{Registry, Tokens};
use crate::config::Config;
use crate::http::listen::{self, ConnLimits};
use crate::http::{self, AppState};
use crate::sink::kafka::KafkaSink;
use crate::sink::Sink;

/// Open connections on the admin listener at most (scrapers and probes).
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// How often the token registry file is checked for changes.
const TOKENS_POLL: Duration = Duration::from_secs(1);

/// The token registry `config` names (its file, or the development token under `--dev`); a
/// file that cannot be read, does not parse or holds no token is an error naming the file.
pub fn tokens(config: &Config) -> anyhow::Result<Tokens> {
    match &config.tokens_file {
        Some(path) => Tokens::load(path),
        None => Ok(Tokens::fixed(Registry::dev())),
    }
}

/// Runs inlet on bound listeners until `shutdown` resolves, then drains and flushes. If `force`
/// resolves during the drain (a second signal), returns at once with an error that counts the
/// events not yet delivered.
pub async fn run(
    config: Config,
    tokens: Tokens,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tokens = Arc::new(tokens);
    let sink: Arc<dyn Sink> = Arc::new(KafkaSink::new(&config).context("kafka")?);
    serve(
        AppState::new(config, tokens, sink),
        public,
        admin,
        shutdown,
        force,
    )
    .await
}

/// Serves `state` on both listeners; see the module documentation for the shutdown order.
pub async fn serve(
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.config.shutdown_grace;
    tracing::info!(
        public = %public.local_addr()?,
        admin = %admin.local_addr()?,
        delivery = ?state.config.delivery,
        "inlet is serving"
    );
    let watcher = tokio::spawn(Arc::clone(&state.tokens).watch(TOKENS_POLL));
    let upkeep = {
        let handle = state.metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };

    let (stop_public, public_stopped) = tokio::sync::watch::channel(false);
    let (stop_admin, admin_stopped) = tokio::sync::watch::channel(false);
    let config = &state.config;
    let public_limits = ConnLimits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        max_headers: config.max_headers,
        max_header_bytes: config.max_header_bytes,
    };
    let admin_limits = ConnLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        ..public_limits
    };
    let public_server = tokio::spawn(listen::serve(
        public,
        http::public_router(state.clone()),
        public_limits,
        "public",
        changed(public_stopped),
    ));
    let admin_server = tokio::spawn(listen::serve(
        admin,
        http::admin_router(state.clone()),
        admin_limits,
        "admin",
        changed(admin_stopped),
    ));

    shutdown.await;
    let drain = async {
        let started = Instant::now();
        state.stopping.store(true, Ordering::Relaxed);
        let delay = state.config.shutdown_delay.min(grace);
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
        state.draining.store(true, Ordering::Relaxed);
        let _ = stop_public.send(true);
        let remaining = grace.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, public_server).await {
            Ok(Ok(())) => tracing::info!("in-flight requests finished"),
            Ok(Err(error)) => tracing::error!(%error, "public listener task failed"),
            Err(_) => tracing::warn!("grace period over with requests still in flight"),
        }
        let remaining = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let sink = Arc::clone(&state.sink);
        let undelivered = tokio::task::spawn_blocking(move || sink.close(remaining))
            .await
            .unwrap_or(usize::MAX);
        if undelivered == 0 {
            tracing::info!("producer flushed: every accepted event was delivered");
        } else {
            tracing::error!(undelivered, "grace period over: events were not delivered");
        }
        undelivered
    };
    let (undelivered, forced) = tokio::select! {
        n = drain => (n, false),
        () = force => (state.sink.in_flight(), true),
    };
    let _ = stop_admin.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_server).await;
    watcher.abort();
    upkeep.abort();
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

async fn changed(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

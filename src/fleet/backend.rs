//! The Redis every replica shares, and whether it answers. Requests ask it only while it is
//! up, each within a tight timeout; a failure marks it down, and from then on requests fall
//! back at once (no request waits on a dead Redis) while a background task pings it until it
//! answers again.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::metrics;

/// How often a Redis marked down is pinged.
const PING_EVERY: Duration = Duration::from_millis(500);
/// How long a ping (and a connection attempt) may take.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis shared by the replicas, with its health.
pub struct Backend {
    connection: ConnectionManager,
    /// Longest wait for one round trip of a request.
    timeout: Duration,
    up: AtomicBool,
}

impl Backend {
    /// Connects to `url` lazily (the first command connects; a lost connection is made again)
    /// and starts the task that watches it. Call within the Tokio runtime.
    pub fn connect(url: &str, timeout: Duration) -> RedisResult<Backend> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PING_TIMEOUT))
            .set_response_timeout(Some(PING_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(PING_EVERY);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let backend = Backend {
            connection,
            timeout,
            // Down until the first ping answers: requests do not wait for the first connection.
            up: AtomicBool::new(false),
        };
        Ok(backend)
    }

    /// Starts the task that pings Redis while it is down (and once now), marks it up when it
    /// answers, and publishes `inlet_quota_backend_up`. It ends when the backend is dropped.
    pub fn watch(self: &Arc<Backend>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(backend) = weak.upgrade() {
                if !backend.is_up() {
                    let mut connection = backend.connection.clone();
                    let ping = redis::cmd("PING");
                    let answer = ping.query_async::<String>(&mut connection);
                    if matches!(tokio::time::timeout(PING_TIMEOUT, answer).await, Ok(Ok(_))) {
                        backend.mark(true);
                    }
                }
                // Published at every turn, not only on a change: the first change may come
                // before the metrics recorder is installed.
                let up = if backend.is_up() { 1.0 } else { 0.0 };
                ::metrics::gauge!(metrics::QUOTA_BACKEND_UP).set(up);
                drop(backend);
                tokio::time::sleep(PING_EVERY).await;
            }
        });
    }

    /// Whether the last round trip (or ping) succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs one round trip built by `call` on a connection, within the timeout; `None` (and
    /// Redis marked down) on an error or timeout, or at once while Redis is down.
    pub async fn call<T, F>(&self, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(self.timeout, call(self.connection.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Redis failed: falling back to local state");
                self.mark(false);
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "Redis too slow: falling back to local state");
                self.mark(false);
                None
            }
        }
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            ::metrics::gauge!(metrics::QUOTA_BACKEND_UP).set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("Redis answers again: quotas and deduplication are shared");
            }
        }
    }
}

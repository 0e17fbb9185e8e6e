//! Fleet mode: what lets many replicas behind one load balancer act as one gateway. Per-token
//! quotas shared through Redis ([`quota`]), client-chosen event ids deduplicated at the edge
//! ([`dedupe`]), and events refused as invalid kept for the operator ([`dead_letters`]). Each
//! piece works without Redis too (a replica's own limiter and cache), and Redis is never a
//! reason to refuse an event: when it is unreachable the replica falls back and says so in its
//! metrics ([`backend`]).

pub mod backend;
pub mod dead_letters;
pub mod dedupe;
pub mod quota;

use std::sync::Arc;

use crate::config::FleetConfig;
use crate::sink::Sink;
use backend::Backend;
use dead_letters::DeadLetters;
use dedupe::Dedupe;
use quota::Quota;

/// The fleet pieces one pipeline uses.
pub struct Fleet {
    /// Per-token quotas: through Redis when configured, else the token's own limiter.
    pub quota: Quota,
    /// Deduplication of client-chosen ids, when `dedupe_window` is above zero.
    pub dedupe: Option<Dedupe>,
    /// Where events refused as invalid go, unless dead letters are off.
    pub dead_letters: Option<DeadLetters>,
}

impl Fleet {
    /// The pieces `fleet` asks for, with dead letters posted through `dead_letters` when
    /// their lane is on. Connects to Redis lazily (and in the background), so a Redis down at
    /// start only means starting in fallback.
    pub fn new(fleet: &FleetConfig, dead_letters: Option<Arc<dyn Sink>>) -> Fleet {
        let backend = fleet.redis_url.as_deref().and_then(|url| {
            match Backend::connect(url, fleet.redis_timeout) {
                Ok(backend) => {
                    let backend = Arc::new(backend);
                    backend.watch();
                    Some(backend)
                }
                Err(error) => {
                    tracing::error!(%error, "cannot use Redis: quotas stay local");
                    None
                }
            }
        });
        let dead_letters = dead_letters.map(DeadLetters::new);
        Fleet {
            quota: Quota::new(backend.clone(), fleet.redis_fallback_share),
            dedupe: (!fleet.dedupe_window.is_zero())
                .then(|| Dedupe::new(backend, fleet.dedupe_window)),
            dead_letters,
        }
    }

    /// No Redis, no deduplication, no dead letters: each token's own limiter only.
    pub fn local() -> Fleet {
        Fleet {
            quota: Quota::new(None, 1.0),
            dedupe: None,
            dead_letters: None,
        }
    }
}

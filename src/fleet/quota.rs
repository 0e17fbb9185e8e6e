//! Per-token quotas for the whole fleet: the same GCRA as the local limiter ([`crate::limit`]),
//! computed inside Redis by one atomic script per request, so every replica sharing the Redis
//! charges the same account. While Redis is unreachable each replica charges a local limiter
//! holding its share of the quota instead.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;

use super::backend::Backend;
use crate::auth::Token;
use crate::limit::{Decision, Limiter};
use crate::metrics;

/// GCRA in Redis, as governor computes it (`limit.rs`), in microseconds of Redis's own clock
/// (one clock for every replica). KEYS[1]: the token's theoretical arrival time (TAT).
/// ARGV: the emission interval (1 s / rate), the burst, the events charged. Returns 0 when
/// charged, else how long until the same charge could pass.
const GCRA: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local extra = interval * (tonumber(ARGV[3]) - 1)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local earliest = tat + extra - tolerance
if now < earliest then return math.ceil(earliest - now) end
local next = tat + interval + extra
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1)
return 0
"#;

/// Charges tokens' quotas, through Redis when there is one.
pub struct Quota {
    shared: Option<(Arc<Backend>, Script)>,
    /// The share of a token's rate a replica allows alone while Redis is unreachable.
    share: f64,
    /// Each token's fallback limiter (when `share` < 1), by token id.
    fallback: Mutex<HashMap<String, Arc<Limiter>>>,
}

impl Quota {
    /// Quotas through `backend` (falling back to `share` of each token's rate), or the tokens'
    /// own limiters without one.
    pub fn new(backend: Option<Arc<Backend>>, share: f64) -> Quota {
        Quota {
            shared: backend.map(|b| (b, Script::new(GCRA))),
            share,
            fallback: Mutex::new(HashMap::new()),
        }
    }

    /// Charges `events` events to `token`, all or nothing: one Redis round trip when Redis is
    /// up, else the local limiter.
    pub async fn charge(&self, token: &Token, events: usize) -> Decision {
        let key = format!("inlet:quota:{}", token.id);
        self.charge_to(&key, &token.limiter, events).await
    }

    /// Charges `bytes` to `token`'s byte quota, all or nothing, as [`Quota::charge`] does its
    /// events; a token without one is allowed anything.
    pub async fn charge_bytes(&self, token: &Token, bytes: usize) -> Decision {
        match &token.byte_limiter {
            Some(limiter) => {
                let key = format!("inlet:bytes:{}", token.id);
                self.charge_to(&key, limiter, bytes).await
            }
            None => Decision::Allowed,
        }
    }

    /// Charges `cells` to the quota `limiter` holds, kept under `key` in Redis.
    async fn charge_to(&self, key: &str, limiter: &Arc<Limiter>, cells: usize) -> Decision {
        if cells == 0 || cells > limiter.burst as usize {
            // Decided without state: the local limiter answers the same as Redis would.
            return limiter.check(cells);
        }
        let Some((backend, script)) = &self.shared else {
            return limiter.check(cells);
        };
        let interval_us = 1_000_000.0 / f64::from(limiter.rate_per_sec);
        let redis_key = key.to_owned();
        let charged = backend
            .call(|mut connection| async move {
                script
                    .key(redis_key)
                    .arg(interval_us)
                    .arg(limiter.burst)
                    .arg(cells)
                    .invoke_async::<u64>(&mut connection)
                    .await
            })
            .await;
        match charged {
            Some(0) => Decision::Allowed,
            Some(wait_us) => Decision::Wait(Duration::from_micros(wait_us)),
            None => {
                ::metrics::counter!(metrics::QUOTA_FALLBACKS).increment(1);
                self.fallback_limiter(key, limiter).check(cells)
            }
        }
    }

    /// The limiter a replica charges alone for the quota under `key` (`limiter`'s) while Redis
    /// is unreachable: its rate times the share (at least one a second), with its whole burst,
    /// so a batch the fleet would take is never refused as too big.
    fn fallback_limiter(&self, key: &str, limiter: &Arc<Limiter>) -> Arc<Limiter> {
        if self.share >= 1.0 {
            return Arc::clone(limiter);
        }
        let (rate, burst) = (limiter.rate_per_sec, limiter.burst);
        let shared_rate = ((f64::from(rate) * self.share).ceil() as u32).clamp(1, rate);
        let mut limiters = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(local_limiter(shared_rate, burst)));
        if (limiter.rate_per_sec, limiter.burst) != (shared_rate, burst) {
            // The registry was reloaded with another quota.
            *limiter = Arc::new(local_limiter(shared_rate, burst));
        }
        Arc::clone(limiter)
    }
}

fn local_limiter(rate: u32, burst: u32) -> Limiter {
    let positive = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Limiter::new(positive(rate), positive(burst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn the_fallback_keeps_the_share_of_the_rate_and_the_whole_burst() {
        let token = testing::token();
        let key = "inlet:quota:unit";
        let half = Quota::new(None, 0.5).fallback_limiter(key, &token.limiter);
        assert_eq!(half.rate_per_sec, token.limiter.rate_per_sec / 2);
        assert_eq!(half.burst, token.limiter.burst);
        let whole = Quota::new(None, 1.0).fallback_limiter(key, &token.limiter);
        assert!(
            Arc::ptr_eq(&whole, &token.limiter),
            "the token's own limiter"
        );
    }

    #[tokio::test]
    async fn without_redis_the_tokens_own_limiter_decides() {
        let token = testing::token();
        let quota = Quota::new(None, 0.5);
        let burst = token.limiter.burst as usize;
        assert_eq!(quota.charge(&token, burst + 1).await, Decision::TooBig);
        assert_eq!(quota.charge(&token, burst).await, Decision::Allowed);
        assert!(matches!(
            quota.charge(&token, burst).await,
            Decision::Wait(_)
        ));
    }
}

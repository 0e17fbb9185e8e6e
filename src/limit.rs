//! Per-token rate limits: a GCRA limiter (governor) per token, where a request of N events
//! costs N cells. Each replica's own; [`crate::fleet::quota`] computes the same GCRA in the Redis
//! a fleet of replicas shares, and falls back to these.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// What the limiter decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The events may pass; their cost was charged.
    Allowed,
    /// Not now: the earliest time the same request could pass.
    Wait(Duration),
    /// Never: the request costs more than the burst.
    TooBig,
}

/// One token's limiter, with the quota it was built from.
#[derive(Debug)]
pub struct Limiter {
    inner: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// Sustained events per second.
    pub rate_per_sec: u32,
    /// Events that may pass at once.
    pub burst: u32,
}

impl Limiter {
    /// A limiter allowing `rate_per_sec` events per second with bursts of `burst`; both must be
    /// positive (the registry checks).
    pub fn new(rate_per_sec: NonZeroU32, burst: NonZeroU32) -> Limiter {
        let quota = Quota::per_second(rate_per_sec).allow_burst(burst);
        let clock = DefaultClock::default();
        Limiter {
            inner: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            rate_per_sec: rate_per_sec.get(),
            burst: burst.get(),
        }
    }

    /// Charges `events` cells, all or nothing.
    pub fn check(&self, events: usize) -> Decision {
        let Some(n) = u32::try_from(events).ok().and_then(NonZeroU32::new) else {
            return if events == 0 {
                Decision::Allowed
            } else {
                Decision::TooBig
            };
        };
        match self.inner.check_n(n) {
            Ok(Ok(())) => Decision::Allowed,
            Ok(Err(not_until)) => Decision::Wait(not_until.wait_time_from(self.clock.now())),
            Err(_) => Decision::TooBig,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn a_batch_costs_its_event_count() {
        let l = Limiter::new(nz(1), nz(10));
        assert_eq!(l.check(7), Decision::Allowed);
        assert_eq!(l.check(3), Decision::Allowed);
        assert!(matches!(l.check(1), Decision::Wait(d) if d > Duration::ZERO));
    }

    #[test]
    fn batches_over_the_burst_never_pass() {
        let l = Limiter::new(nz(100), nz(10));
        assert_eq!(l.check(11), Decision::TooBig);
        assert_eq!(l.check(10), Decision::Allowed);
    }
}

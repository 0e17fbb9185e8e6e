//! Where a replica is in its life, as one value every part reads: serving, then the named
//! phases of a graceful shutdown, in order.
//!
//! The server (`server::run`) moves it forward; readiness (`/readyz`) and admission of new ingest
//! requests read it. A phase never goes back.

use std::sync::atomic::{AtomicU8, Ordering};

/// The phases, in the order a shutdown goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Ready, and accepting everything.
    Serving = 0,
    /// Shutdown began: `/readyz` answers 503 so load balancers stop sending, but requests are
    /// still served as usual (`shutdown_delay_ms`).
    NotReady = 1,
    /// The public listener stopped accepting connections; requests in flight finish, and a new
    /// ingest request on a connection still open is answered 503 `shutting_down`.
    Draining = 2,
    /// Requests are done; the producer delivers what is queued within the grace period.
    Flushing = 3,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::Serving,
            1 => Phase::NotReady,
            2 => Phase::Draining,
            _ => Phase::Flushing,
        }
    }
}

/// The replica's current [`Phase`], shared by everything that serves.
#[derive(Debug, Default)]
pub struct Shutdown {
    phase: AtomicU8,
}

impl Shutdown {
    /// A replica that is serving.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Whether load balancers should send traffic here: no shutdown has begun.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Serving
    }

    /// Whether new ingest requests are taken: not yet draining.
    pub fn is_accepting(&self) -> bool {
        self.phase() < Phase::Draining
    }

    /// Moves to `phase` (never back to an earlier one).
    pub fn enter(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_go_forward_only() {
        let shutdown = Shutdown::new();
        assert!(shutdown.is_ready() && shutdown.is_accepting());
        shutdown.enter(Phase::NotReady);
        assert!(!shutdown.is_ready() && shutdown.is_accepting());
        shutdown.enter(Phase::Draining);
        assert!(!shutdown.is_accepting());
        shutdown.enter(Phase::NotReady);
        assert_eq!(shutdown.phase(), Phase::Draining);
        shutdown.enter(Phase::Flushing);
        assert_eq!(shutdown.phase(), Phase::Flushing);
    }
}

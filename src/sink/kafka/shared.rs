//! What the sink's handle and its threads share. It sits above the producer (`reports`) and
//! below the threads that use it (`feeder`, `supervisor`), so that none of them needs the
//! module that starts them.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rdkafka::config::ClientConfig;
use rdkafka::message::OwnedHeaders;

use super::batch::Slots;
use super::reports::{Context, Producer};
use crate::lane::PerLane;

/// What the sink's handle and its threads share. The threads hold it weakly: they exit once
/// the sink is dropped.
pub(super) struct Shared {
    /// The live producer; replaced whole after a fatal error. The reports thread holds it
    /// weakly, and so exits once the sink is dropped too.
    pub(super) producer: Arc<ArcSwap<Producer>>,
    /// What the producer is built from, for rebuilds.
    pub(super) client_config: ClientConfig,
    /// What every producer built calls back into; also holds the feeder's queue.
    pub(super) context: Context,
    /// Each lane's topic.
    pub(super) topics: PerLane<String>,
    /// Each lane's message headers.
    pub(super) headers: PerLane<OwnedHeaders>,
    /// How long a record may wait for room in librdkafka's queue.
    pub(super) enqueue_wait: Duration,
    /// Longest wait for delivery reports under `ack` delivery.
    pub(super) ack_guard: Duration,
    /// Whether the last readiness probe found the beacons topic.
    pub(super) ready: AtomicBool,
    /// `close` was called: new records are answered `ShuttingDown`.
    pub(super) closed: AtomicBool,
    /// Messages still in replaced producers (their delivery reports are yet to come).
    pub(super) retiring: Arc<AtomicUsize>,
    /// Messages handed to librdkafka and not yet reported on, whichever producer has them.
    pub(super) slots: Slots,
}

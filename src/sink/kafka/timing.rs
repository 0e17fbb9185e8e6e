//! The pauses the sink's threads share, in one place below every part that waits: the feed
//! queue and the reports thread (which the shared state is built on) look again on the same
//! clock as the feeder, the supervisor and `close`.

use std::time::Duration;

/// How long the feeder pauses while librdkafka's queue is full (or its producer failed); also
/// the pause of `close` and of a retiring producer's thread between looks.
pub(super) const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How often an idle feeder (or reports thread) checks whether its sink is gone.
pub(super) const IDLE_CHECK: Duration = Duration::from_millis(250);

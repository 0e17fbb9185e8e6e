//! librdkafka's statistics (every `statistics.interval.ms`) turned into metrics: queue depth,
//! broker state, round-trip times, retries and errors.

use std::collections::HashMap;

use serde::Deserialize;

use crate::metrics;

/// Reads one statistics JSON document from librdkafka and records its metrics.
pub(super) fn record(statistics: &[u8]) {
    match serde_json::from_slice::<Stats>(statistics) {
        Ok(stats) => stats.record(),
        Err(error) => tracing::debug!(%error, "unreadable librdkafka statistics"),
    }
}

/// The parts of librdkafka's statistics JSON that become metrics.
#[derive(Debug, Deserialize)]
struct Stats {
    msg_cnt: u64,
    msg_size: u64,
    msg_max: u64,
    msg_size_max: u64,
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
}

#[derive(Debug, Deserialize)]
struct BrokerStats {
    nodeid: i32,
    state: String,
    #[serde(default)]
    txretries: u64,
    #[serde(default)]
    txerrs: u64,
    #[serde(default)]
    rtt: Option<Window>,
}

#[derive(Debug, Deserialize)]
struct Window {
    /// Microseconds.
    avg: i64,
}

impl Stats {
    fn record(&self) {
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MESSAGES).set(self.msg_cnt as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_MESSAGES).set(self.msg_max as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_BYTES).set(self.msg_size as f64);
        ::metrics::gauge!(metrics::KAFKA_QUEUE_MAX_BYTES).set(self.msg_size_max as f64);
        let (mut retries, mut errors) = (0, 0);
        // Bootstrap entries (nodeid -1) duplicate the brokers they lead to.
        for b in self.brokers.values().filter(|b| b.nodeid >= 0) {
            retries += b.txretries;
            errors += b.txerrs;
            let broker = b.nodeid.to_string();
            let up = if b.state == "UP" { 1.0 } else { 0.0 };
            ::metrics::gauge!(metrics::KAFKA_BROKER_UP, "broker" => broker.clone()).set(up);
            if let Some(rtt) = &b.rtt {
                ::metrics::gauge!(metrics::KAFKA_BROKER_RTT, "broker" => broker)
                    .set(rtt.avg.max(0) as f64 / 1e6);
            }
        }
        ::metrics::counter!(metrics::KAFKA_RETRIES).absolute(retries);
        ::metrics::counter!(metrics::KAFKA_ERRORS).absolute(errors);
    }
}

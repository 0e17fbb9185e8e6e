//! The librdkafka properties inlet sets on its producer: every tuning decision about the client
//! in one place, so a change of setting is a change of this file alone.

use rdkafka::config::ClientConfig;

use crate::config::KafkaConfig;

/// librdkafka's own `linger.ms` behind inlet's feeder.
const LIBRDKAFKA_LINGER_MS: &str = "0";

/// Bytes an envelope and Kafka's record framing may add to an event's JSON, at most.
const ENVELOPE_OVERHEAD: usize = 64 * 1024;

/// The configured properties inlet sets on its producer, for `config` (before the free-form
/// `librdkafka` ones, which win).
pub fn producer_properties(config: &KafkaConfig) -> Vec<(String, String)> {
    let message_timeout = match config.retry_forever {
        // Under `ack` the request waits; under `spool` the reader waits for each window's acks
        // and sends again what failed.
        false => config.delivery_timeout.as_millis().to_string(),
        // Under `enqueue` an accepted event must survive broker outages: retry it for as long as
        // the process lives; a full queue pushes back on clients instead.
        true => "0".into(),
    };
    [
        ("bootstrap.servers", config.brokers.clone()),
        ("client.id", "inlet".into()),
        ("acks", "all".into()),
        ("enable.idempotence", "true".into()),
        ("partitioner", "murmur2_random".into()),
        ("compression.codec", config.compression.as_str().into()),
        // inlet's feeder gathers for `linger` and hands over in bursts (see `kafka`); librdkafka
        // need not wait again.
        ("linger.ms", LIBRDKAFKA_LINGER_MS.into()),
        ("message.timeout.ms", message_timeout),
        // librdkafka's default queue may hold 1 GiB; bound memory and push back sooner.
        ("queue.buffering.max.kbytes", (128 * 1024).to_string()),
        ("queue.buffering.max.messages", "100000".into()),
        // Room for the largest event inlet accepts plus its envelope; the broker's (or topic's)
        // message.max.bytes must be at least this too, or it refuses them (413).
        (
            "message.max.bytes",
            (config.max_event + ENVELOPE_OVERHEAD).to_string(),
        ),
        // librdkafka backs off reconnecting up to 10 s by default: after an outage, a broker
        // that is back would sit unused for that long while requests wait. Retry every second.
        ("reconnect.backoff.max.ms", "1000".into()),
        // Queue depth, broker state and round-trip times become metrics.
        ("statistics.interval.ms", "5000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(config.security.0.clone())
    .chain(config.librdkafka.0.clone())
    .collect()
}

/// The properties of the producer of posted lanes (dead letters) over the sink's: its own
/// small queue (its share of memory), gathered longer (nobody waits for it), its own client id,
/// and no statistics (the sink's producer reports the brokers).
const POSTED: [(&str, &str); 6] = [
    ("client.id", "inlet-dead-letters"),
    ("queue.buffering.max.messages", "10000"),
    ("queue.buffering.max.kbytes", "32768"),
    ("linger.ms", "100"),
    ("message.timeout.ms", "30000"),
    ("statistics.interval.ms", "0"),
];

/// The client configuration of the producer of posted lanes: the sink's connection settings
/// and free-form properties, with [`POSTED`] over them.
pub(super) fn posted_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in producer_properties(config) {
        client.set(k, v);
    }
    for (k, v) in POSTED {
        client.set(k, v);
    }
    client
}

/// The client configuration a producer is built (and rebuilt) from: [`producer_properties`],
/// with a warning should the free-form ones weaken `acks`.
pub(super) fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in producer_properties(config) {
        client.set(k, v);
    }
    if client.get("acks").is_some_and(|a| a != "all" && a != "-1") {
        tracing::warn!("librdkafka acks is not `all`: an acknowledged event may still be lost");
    }
    client
}

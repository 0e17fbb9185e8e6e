//! Shared by the unit tests: a configuration, a registry with one token, and state over an
//! in-memory sink.

use std::sync::Arc;

use crate::auth::{Registry, Token, Tokens};
use crate::config::{Config, Settings};
use crate::sink::memory::MemorySink;
use crate::state::AppState;

/// The secret of the first token of [`tokens`]: beacons and occurrences, any origin.
pub const SECRET: &str = "unit-secret";
/// The secret of the second token of [`tokens`]: occurrences and recordings.
pub const RECORDER: &str = "unit-recorder";

/// The secret of the third token of [`tokens`]: OTLP's traces, logs and metrics.
pub const OTEL: &str = "unit-otel";
/// The secret of the fourth: OTLP traces, 10 spans a second, 20 at once.
pub const OTEL_TIGHT: &str = "unit-otel-tight";

/// The secret of the fifth: beacons and recordings, 1,000 bytes a second, 2,000 at once.
pub const BYTES: &str = "unit-bytes";

/// The default configuration, adjusted by `tweak`.
pub fn config(tweak: impl FnOnce(&mut Settings)) -> Config {
    let mut settings = Settings {
        kafka_brokers: Some("unused:9092".into()),
        tokens_file: Some("unused.toml".into()),
        // No dead-letter producer to a broker that is not there.
        dead_letters: Some(crate::config::Switch::Off),
        ..Default::default()
    };
    tweak(&mut settings);
    Config::resolve(settings, Settings::default(), false).unwrap()
}

/// A registry holding five tokens, [`SECRET`], [`RECORDER`], [`OTEL`], [`OTEL_TIGHT`] and
/// [`BYTES`].
pub fn tokens() -> Tokens {
    let registry = Registry::parse(
        &format!(
            "[[token]]\nid = \"unit\"\ntoken = \"{SECRET}\"\nproject_id = \"p\"\n\
             account_id = \"a\"\nkinds = [\"beacon\", \"occurrence\"]\n\
             rate_per_sec = 100000\nburst = 100000\n\
             [[token]]\nid = \"recorder\"\ntoken = \"{RECORDER}\"\nproject_id = \"p\"\n\
             account_id = \"a\"\nkinds = [\"occurrence\", \"recording\"]\nrate_per_sec = 1000\nburst = 1000\n\
             [[token]]\nid = \"otel\"\ntoken = \"{OTEL}\"\nproject_id = \"p\"\n\
             account_id = \"a\"\nkinds = [\"traces\", \"logs\", \"metrics\"]\n\
             rate_per_sec = 100000\nburst = 100000\n\
             [[token]]\nid = \"otel-tight\"\ntoken = \"{OTEL_TIGHT}\"\nproject_id = \"p\"\n\
             account_id = \"a\"\nkinds = [\"traces\"]\nrate_per_sec = 10\nburst = 20\n\
             [[token]]\nid = \"bytes\"\ntoken = \"{BYTES}\"\nproject_id = \"p\"\n\
             account_id = \"a\"\nkinds = [\"beacon\", \"recording\"]\nrate_per_sec = 100000\n\
             burst = 100000\nbytes_per_sec = 1000\nbytes_burst = 2000\n"
        ),
        None,
    )
    .unwrap();
    Tokens::fixed(registry)
}

/// The token [`SECRET`].
pub fn token() -> Arc<Token> {
    tokens().lookup(SECRET).unwrap()
}

/// State over `sink`, with the default configuration adjusted by `tweak`.
pub fn state(sink: Arc<MemorySink>, tweak: impl FnOnce(&mut Settings)) -> AppState {
    AppState::new(config(tweak), Arc::new(tokens()), sink)
}

/// The envelope a record of a lane of events carries.
pub fn envelope(record: &crate::sink::Record) -> crate::proto::Envelope {
    use prost::Message as _;
    crate::proto::Envelope::decode(record.value.as_slice()).unwrap()
}

/// The item a record of the `item` lane carries, from an endpoint of `source`.
pub fn item(record: &crate::sink::Record, source: &str) -> crate::proto::Item {
    assert_eq!(record.kind, crate::lane::Lane::ITEM);
    let envelope = envelope(record);
    assert_eq!(envelope.source, source);
    match envelope.event {
        Some(crate::proto::envelope::Event::Item(item)) => item,
        other => panic!("not an item: {other:?}"),
    }
}

/// The beacon a record of the beacon lane carries.
pub fn beacon(record: &crate::sink::Record) -> crate::proto::Beacon {
    assert_eq!(record.kind, crate::lane::Lane::BEACON);
    match envelope(record).event {
        Some(crate::proto::envelope::Event::Beacon(beacon)) => beacon,
        other => panic!("not a beacon: {other:?}"),
    }
}

/// The occurrence a record of the occurrence lane carries.
pub fn occurrence(record: &crate::sink::Record) -> crate::proto::Occurrence {
    assert_eq!(record.kind, crate::lane::Lane::OCCURRENCE);
    match envelope(record).event {
        Some(crate::proto::envelope::Event::Occurrence(occurrence)) => occurrence,
        other => panic!("not an occurrence: {other:?}"),
    }
}

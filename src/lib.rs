//! inlet: an HTTP-to-Kafka ingest gateway for analytics beacons and error occurrences.
//!
//! A request travels one way, and the modules follow it:
//!
//! 1. **listen**: [`server`] binds nothing itself: it takes bound listeners, serves them and
//!    owns the [`shutdown`] phases; [`http`] holds the route table, the layers, the one handler
//!    of every ingest endpoint ([`http::adapter`]) and one protocol per endpoint module;
//!    [`state`] is what every request shares.
//! 2. **authenticate**: [`http::authenticate`] finds the token (header or query) and resolves
//!    it against [`auth`]'s hot-reloaded registry; handlers only ever see a valid token.
//! 3. **decode**: [`http::body`] checks the media type and reads the body within its cap as
//!    sent; [`decode`] decodes it (content encodings, the decoded-size cap) and splits it into
//!    events (object, array or NDJSON). An SDK's protocol reads its own key and body, and
//!    [`sdk`] translates its payload into inlet's events instead, field by field, validated
//!    by the same rules as they are built ([`event::from_fields`]). Every translation ends in
//!    a [`batch::Batch`] of one [`lane`]'s events.
//! 4. **the pipeline**: every endpoint hands its events to [`pipeline`], which runs the rest:
//!    - **limit**: [`limit`] charges the token's GCRA limiter one unit per event (or, in a
//!      fleet, [`fleet::quota`] the same GCRA in the Redis the replicas share);
//!    - **validate** and **convert**: [`event`] checks each event field by field and builds the
//!      protobuf [`proto::Envelope`];
//!    - **key**: [`key`] derives the shard key (session id or account id);
//!    - **produce**: [`sink`] hands the batch to librdkafka and waits for the broker's acks
//!      (or only for the enqueue), pushing back with 503 when the local queue stays full; under
//!      `spool` delivery it writes the batch durably to a local log instead, which a
//!      background reader produces to Kafka. [`fleet::dedupe`] first takes out events whose
//!      client id was accepted already, and [`fleet::dead_letters`] keeps the invalid ones on
//!      their own topic.
//! 5. **respond**: [`error`] says why something was not accepted, as types; `http::reply`
//!    turns answers and errors into HTTP once.
//!
//! Around the path: [`config`] (resolved from the [`settings`] of the file, environment and
//! flags), [`lane`] (the table of the kinds of telemetry, their topics, keys and caps), [`client`] (addresses and
//! brute-force limits), [`id`] (event ids), [`metrics`] (Prometheus), [`dev`] (the embedded
//! mock cluster of `inlet --dev`) and [`tail`] (`inlet tail`).

pub mod server;
pub mod shutdown;
pub mod state;
pub mod http;
pub mod auth;
pub mod decode;
pub mod sdk;
pub mod batch;
pub mod pipeline;
pub mod recording;
pub mod otlp;
pub mod limit;
pub mod fleet;
pub mod event;
pub mod lane;
pub mod key;
pub mod sink;
pub mod error;

pub mod client;
pub mod config;
pub mod settings;
pub mod dev;
pub mod id;
pub mod metrics;
pub mod tail;
pub mod reassemble;

#[cfg(test)]
pub(crate) mod testing;

/// The protobuf types of `proto/inlet/v1/`, generated at build time.
pub mod proto {
    #![allow(missing_docs, clippy::doc_lazy_continuation)]
    include!(concat!(env!("OUT_DIR"), "/inlet.v1.rs"));
}

/// The OpenTelemetry protocol's types (`proto/opentelemetry/`, the official files), generated
/// at build time: the messages the OpenTelemetry Collector reads, nested as their packages.
pub mod opentelemetry {
    #![allow(
        missing_docs,
        clippy::doc_lazy_continuation,
        clippy::large_enum_variant
    )]
    pub mod proto {
        macro_rules! package {
            ($name:ident, $file:literal) => {
                pub mod $name {
                    pub mod v1 {
                        include!(concat!(env!("OUT_DIR"), "/", $file));
                    }
                }
            };
        }
        package!(common, "opentelemetry.proto.common.v1.rs");
        package!(resource, "opentelemetry.proto.resource.v1.rs");
        package!(trace, "opentelemetry.proto.trace.v1.rs");
        package!(logs, "opentelemetry.proto.logs.v1.rs");
        package!(metrics, "opentelemetry.proto.metrics.v1.rs");
        /// The export requests and responses of each signal.
        pub mod collector {
            package!(trace, "opentelemetry.proto.collector.trace.v1.rs");
            package!(logs, "opentelemetry.proto.collector.logs.v1.rs");
            package!(metrics, "opentelemetry.proto.collector.metrics.v1.rs");
        }
    }
}

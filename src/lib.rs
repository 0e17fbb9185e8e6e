//! inlet: an HTTP-to-Kafka ingest gateway for analytics beacons and error occurrences.
//!
//! A request travels one way, and the modules follow it:
//!
//! 1. **listen**: [`server`] binds the public and admin listeners and owns shutdown;
//!    [`http`] holds the route table and one module per endpoint.
//! 2. **decode**: [`decode`] enforces media types, content encodings and the size caps
//!    (as sent and decoded), and splits the body into events (object, array or NDJSON).
//! 3. **authenticate**: [`auth`] resolves the token (header or query) against the hot-reloaded
//!    registry; handlers only ever see a valid token.
//! 4. **limit**: [`limit`] charges the token's GCRA limiter one unit per event.
//! 5. **validate** and **convert**: [`event`] checks each event field by field and builds the
//!    protobuf [`proto::Envelope`].
//! 6. **key**: [`key`] derives the shard key (session id or account id).
//! 7. **produce**: [`sink`] hands the batch to librdkafka and waits for the broker's acks
//!    (or only for the enqueue), pushing back with 503 when the local queue stays full.
//! 8. **respond**: [`error`] maps every failure to a status and a stable error code.
//!
//! Around the path: [`config`] (file, environment, flags), [`metrics`] (Prometheus),
//! [`dev`] (the embedded mock cluster of `inlet --dev`) and [`tail`] (`inlet tail`).

pub mod auth;
pub mod client;
pub mod config;
pub mod decode;
pub mod dev;
pub mod error;
pub mod event;
pub mod http;
pub mod id;
pub mod key;
pub mod limit;
pub mod metrics;
pub mod server;
pub mod sink;
pub mod tail;

/// The protobuf types of `proto/inlet/v1/`, generated at build time.
pub mod proto {
    #![allow(missing_docs, clippy::doc_lazy_continuation)]
    include!(concat!(env!("OUT_DIR"), "/inlet.v1.rs"));
}

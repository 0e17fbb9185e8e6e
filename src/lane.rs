//! Lanes: the kinds of telemetry inlet carries, as one table.
//!
//! A lane is what a token's `kinds` lists and what a message's `inlet-kind` header names: its
//! own topic, Kafka key, size caps, permission and payload. Dead letters are a lane too, one
//! that inlet produces itself (about what it refused) rather than one clients send. Everything that differs between lanes is in
//! its entry of [`LANES`]; the rest of inlet asks a [`Lane`] for its [`Spec`], or keeps state
//! per lane in a [`PerLane`], and never counts or matches the lanes itself. Adding a lane is one
//! entry here, the names of its settings in [`Settings`](crate::settings::Settings), and its
//! payload in `proto/`.
//!
//! The table's order is part of the spool's format (a spooled record stores its lane's index):
//! append to it, never reorder it.

use std::fmt;
use std::ops::Index;

use crate::settings::{Settings, Switch};

/// The lanes, in the order of their indices.
pub static LANES: &[Spec] = &[
    Spec {
        name: "beacon",
        key: KeyRule::Session,
        listed: true,
        analytics: true,
        posted: false,
        schema: "inlet.v1.Envelope",
        topic: "inlet.beacons",
        limits: BodyLimits {
            max_body: 1 << 20,
            max_decoded: 4 << 20,
            max_event: 128 << 10,
        },
        names: Names {
            topic: "topic_beacons",
            limits: "beacons",
        },
        settings: |s| Given {
            topic: s.topic_beacons.clone(),
            max_body: s.beacons_max_body_bytes,
            max_decoded: s.beacons_max_decoded_bytes,
            max_event: s.beacons_max_event_bytes,
            on: None,
        },
    },
    Spec {
        name: "occurrence",
        key: KeyRule::Account,
        listed: true,
        analytics: false,
        posted: false,
        schema: "inlet.v1.Envelope",
        topic: "inlet.occurrences",
        limits: BodyLimits {
            max_body: 10 << 20,
            max_decoded: 40 << 20,
            max_event: 1_000_000,
        },
        names: Names {
            topic: "topic_occurrences",
            limits: "occurrences",
        },
        settings: |s| Given {
            topic: s.topic_occurrences.clone(),
            max_body: s.occurrences_max_body_bytes,
            max_decoded: s.occurrences_max_decoded_bytes,
            max_event: s.occurrences_max_event_bytes,
            on: None,
        },
    },
    // What inlet refused as invalid, for the operator: no endpoint sends it and no token lists
    // it; the pipeline posts it without waiting, and it can be turned off.
    Spec {
        name: "dead_letter",
        key: KeyRule::Token,
        listed: false,
        analytics: false,
        posted: true,
        schema: "inlet.v1.DeadLetter",
        topic: "inlet.dead-letters",
        // Not configurable: a dead letter keeps 64 KiB of the refused text at most.
        limits: BodyLimits {
            max_body: 64 << 10,
            max_decoded: 64 << 10,
            max_event: 64 << 10,
        },
        names: Names {
            topic: "topic_dead_letters",
            limits: "dead_letters",
        },
        settings: |s| Given {
            topic: s.topic_dead_letters.clone(),
            on: s.dead_letters,
            ..Given::default()
        },
    },
    // Every other item an SDK sends, carried verbatim: a token that may use an SDK endpoint may
    // send that endpoint's other items, so no token lists it.
    Spec {
        name: "item",
        key: KeyRule::Account,
        listed: false,
        analytics: false,
        posted: false,
        schema: "inlet.v1.Envelope",
        topic: "inlet.items",
        // An envelope's caps are its endpoint's lane's; an item's own cap is `max_event`. (The
        // body caps serve the one endpoint whose lane this is: Sentry's security reports.)
        limits: BodyLimits {
            max_body: 10 << 20,
            max_decoded: 40 << 20,
            max_event: 1_000_000,
        },
        names: Names {
            topic: "topic_items",
            limits: "items",
        },
        settings: |s| Given {
            topic: s.topic_items.clone(),
            max_event: s.items_max_event_bytes,
            ..Given::default()
        },
    },
    // Session recordings: opaque payloads up to 100 MiB a request, never held whole, cut into
    // chunks as they arrive (`crate::recording`). A recording is one event; its "event" cap is
    // the chunk's size, and nothing is decoded, so the decoded cap is the body's.
    Spec {
        name: "recording",
        key: KeyRule::Session,
        listed: true,
        analytics: true,
        posted: false,
        schema: "inlet.v1.Envelope",
        topic: "inlet.recordings",
        limits: BodyLimits {
            max_body: 100 << 20,
            max_decoded: 100 << 20,
            max_event: 512 << 10,
        },
        names: Names {
            topic: "topic_recordings",
            limits: "recordings",
        },
        settings: |s| Given {
            topic: s.topic_recordings.clone(),
            max_body: s.recordings_max_bytes,
            max_decoded: s.recordings_max_bytes,
            max_event: s.recordings_chunk_bytes,
            on: None,
        },
    },
    otlp(
        "traces",
        "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
        "otlp_spans",
        Names {
            topic: "topic_otlp_spans",
            limits: "otlp",
        },
        |s| Given {
            topic: s.topic_otlp_spans.clone(),
            ..otlp_sizes(s)
        },
    ),
    otlp(
        "logs",
        "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
        "otlp_logs",
        Names {
            topic: "topic_otlp_logs",
            limits: "otlp",
        },
        |s| Given {
            topic: s.topic_otlp_logs.clone(),
            ..otlp_sizes(s)
        },
    ),
    otlp(
        "metrics",
        "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
        "otlp_metrics",
        Names {
            topic: "topic_otlp_metrics",
            limits: "otlp",
        },
        |s| Given {
            topic: s.topic_otlp_metrics.clone(),
            ..otlp_sizes(s)
        },
    ),
];

/// An OTLP signal's lane (`crate::otlp`): its messages are the OpenTelemetry Collector's
/// `otlp_proto` records, keyed by what they hold (a trace id, a resource), with the gateway's
/// metadata in headers. The three share their size settings; a "single event" is one Kafka
/// message, which a request is split to fit.
const fn otlp(
    name: &'static str,
    schema: &'static str,
    topic: &'static str,
    names: Names,
    settings: fn(&Settings) -> Given,
) -> Spec {
    Spec {
        name,
        key: KeyRule::Payload,
        listed: true,
        analytics: false,
        posted: false,
        schema,
        topic,
        limits: BodyLimits {
            max_body: 4 << 20,
            max_decoded: 16 << 20,
            max_event: 1_000_000,
        },
        names,
        settings,
    }
}

/// The size settings the OTLP lanes share.
fn otlp_sizes(s: &Settings) -> Given {
    Given {
        max_body: s.otlp_max_body_bytes,
        max_decoded: s.otlp_max_decoded_bytes,
        max_event: s.otlp_max_message_bytes,
        ..Given::default()
    }
}

/// What one lane is: everything in which it differs from the others.
pub struct Spec {
    /// Its name: the value in a token's `kinds`, the `inlet-kind` header, metric labels.
    pub name: &'static str,
    /// How its messages are keyed.
    pub key: KeyRule,
    /// Whether a token's `kinds` must list it (else any token of an endpoint that sends it may).
    pub listed: bool,
    /// Whether it carries what people do (`client_ip_truncation = beacons` covers it), rather
    /// than what applications report.
    pub analytics: bool,
    /// Whether its messages are posted: handed to a producer queue of their own without
    /// waiting for an answer, and dropped (counted) when it is full, so they can never delay or
    /// refuse an accepted event. What inlet says about its traffic is posted; events are sent.
    pub posted: bool,
    /// The protobuf message its Kafka values hold (the `inlet-schema` header).
    pub schema: &'static str,
    /// Its topic unless configured.
    pub topic: &'static str,
    /// Its size caps unless configured.
    pub limits: BodyLimits,
    /// The names of its settings, for errors.
    pub names: Names,
    /// Its settings as one source gives them.
    pub settings: fn(&Settings) -> Given,
}

/// The Kafka key of a lane's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// The session the event belongs to: a session's events stay in order.
    Session,
    /// The token's account: an account's events go to one consumer.
    Account,
    /// The token itself: what one client sent stays together.
    Token,
    /// What the payload holds, as its lane splits it: an OTLP trace id, or a resource.
    Payload,
}

/// The names of a lane's settings.
pub struct Names {
    /// Its topic's setting (`topic_beacons`).
    pub topic: &'static str,
    /// The prefix of its size caps' settings (`beacons` of `beacons_max_body_bytes`).
    pub limits: &'static str,
}

/// A lane's settings as one source gives them, each optional.
#[derive(Debug, Default)]
pub struct Given {
    pub topic: Option<String>,
    pub max_body: Option<usize>,
    pub max_decoded: Option<usize>,
    pub max_event: Option<usize>,
    /// Whether the lane is produced at all (only lanes with such a switch can be turned off).
    pub on: Option<Switch>,
}

/// Size caps of one lane's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body as sent.
    pub max_body: usize,
    /// Largest body once decoded.
    pub max_decoded: usize,
    /// Largest single event (its JSON text); for recordings, the largest chunk.
    pub max_event: usize,
}

/// One lane: a handle on its entry of [`LANES`], copied freely.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lane(u8);

impl Lane {
    /// Analytics beacons, keyed by session.
    pub const BEACON: Lane = Lane(0);
    /// Error occurrences, keyed by account.
    pub const OCCURRENCE: Lane = Lane(1);
    /// What inlet refused as invalid, keyed by token.
    pub const DEAD_LETTER: Lane = Lane(2);
    /// An SDK's other items, verbatim, keyed by account.
    pub const ITEM: Lane = Lane(3);
    /// Session recordings, in chunks, keyed by session.
    pub const RECORDING: Lane = Lane(4);
    /// OpenTelemetry spans, keyed by trace id.
    pub const TRACES: Lane = Lane(5);
    /// OpenTelemetry log records, keyed by resource.
    pub const LOGS: Lane = Lane(6);
    /// OpenTelemetry metrics' data points, keyed by resource.
    pub const METRICS: Lane = Lane(7);

    /// What the lane is.
    pub fn spec(self) -> &'static Spec {
        &LANES[usize::from(self.0)]
    }

    /// Its name (`kinds`, `inlet-kind`, metric labels).
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Its place in [`LANES`]: what the spool stores.
    pub fn index(self) -> u8 {
        self.0
    }

    /// The lane at `index` of [`LANES`], if there is one.
    pub fn from_index(index: u8) -> Option<Lane> {
        (usize::from(index) < LANES.len()).then_some(Lane(index))
    }

    /// The lane called `name`.
    pub fn named(name: &str) -> Option<Lane> {
        Lane::all().find(|lane| lane.as_str() == name)
    }

    /// Every lane, in the table's order.
    pub fn all() -> impl Iterator<Item = Lane> {
        (0..LANES.len() as u8).map(Lane)
    }
}

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `T` for each lane, indexed by [`Lane`].
#[derive(Debug, Clone)]
pub struct PerLane<T>(Vec<T>);

impl<T> PerLane<T> {
    /// `make(lane)` for every lane.
    pub fn new(make: impl FnMut(Lane) -> T) -> PerLane<T> {
        PerLane(Lane::all().map(make).collect())
    }

    /// Sets `lane`'s `T`.
    pub fn set(&mut self, lane: Lane, value: T) {
        self.0[usize::from(lane.0)] = value;
    }

    /// Each lane with its `T`.
    pub fn iter(&self) -> impl Iterator<Item = (Lane, &T)> {
        Lane::all().zip(&self.0)
    }
}

impl<T> Index<Lane> for PerLane<T> {
    type Output = T;
    fn index(&self, lane: Lane) -> &T {
        &self.0[usize::from(lane.0)]
    }
}

/// A set of lanes (the lanes a token may send).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneSet(u64);

impl LaneSet {
    /// Adds `lane`.
    pub fn insert(&mut self, lane: Lane) {
        self.0 |= 1 << lane.0;
    }

    /// Whether `lane` is in the set.
    pub fn contains(self, lane: Lane) -> bool {
        self.0 & (1 << lane.0) != 0
    }

    /// Whether the set holds no lane.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        assert!(LANES.len() <= 64, "a LaneSet holds 64 lanes");
        for lane in Lane::all() {
            assert_eq!(Lane::named(lane.as_str()), Some(lane));
            assert_eq!(Lane::from_index(lane.index()), Some(lane));
        }
        assert_eq!(Lane::from_index(LANES.len() as u8), None);
        // The spool stores these indices: they never change.
        assert_eq!(
            (Lane::BEACON.as_str(), Lane::OCCURRENCE.as_str()),
            ("beacon", "occurrence")
        );
        // No token lists dead letters, and they are posted, never waited for.
        let letters = Lane::DEAD_LETTER.spec();
        assert_eq!(Lane::DEAD_LETTER.as_str(), "dead_letter");
        assert!(!letters.listed && letters.posted && letters.key == KeyRule::Token);
        let mut names: Vec<_> = LANES.iter().map(|s| s.names.topic).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LANES.len());
    }

    #[test]
    fn a_set_holds_what_was_put_in() {
        let mut set = LaneSet::default();
        assert!(set.is_empty());
        set.insert(Lane::OCCURRENCE);
        assert!(set.contains(Lane::OCCURRENCE) && !set.contains(Lane::BEACON));
    }
}

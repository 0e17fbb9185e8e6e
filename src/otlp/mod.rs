//! OTLP: OpenTelemetry's traces, logs and metrics, split into the Kafka records the
//! OpenTelemetry Collector's kafka receiver reads (its `otlp_proto` encoding).
//!
//! A request (`Export{Trace,Logs,Metrics}ServiceRequest`, protobuf, or OTLP/JSON converted by
//! [`json`]) is checked by decoding it with the official message types, then cut apart as
//! bytes, never re-encoded: each item (a span, a log record, a metric) is copied as it came,
//! unknown fields included, under a copy of its resource and scope. The records:
//!
//! - **spans**: one trace's spans in each, keyed by the trace id (32 lowercase hex digits), so a
//!   trace's spans meet on one partition;
//! - **logs** and **metrics**: one resource's in each, keyed by the resource (see
//!   [`resource_key`]), so what one process reports stays in order;
//! - none larger than the lane's message limit: a group too large is cut into several records
//!   with the same key, and a metric too large alone is cut by its data points. A span or log
//!   record too large alone is rejected (counted in the answer's `partial_success`), never
//!   dropped silently.
//!
//! Each span, log record and data point is one event (rate limits, metrics, the answer).

pub mod json;
pub mod wire;

use std::collections::HashMap;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::event::Invalid;
use crate::lane::Lane;
use crate::opentelemetry::proto::collector;
use wire::{delimited_len, fields, open_delimited, Malformed, Value};

/// One of OTLP's signals, each its own route, lane and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

/// The field number, in each signal's messages, of the repeated children: a request's
/// resources, a resource's scopes, a scope's items.
const CHILDREN: u32 = 2;
/// The field number of a request's resources.
const RESOURCES: u32 = 1;
/// Room kept in a message for what is not its value: the key and the headers.
const MESSAGE_ROOM: usize = 1024;

impl Signal {
    /// Its lane.
    pub fn lane(self) -> Lane {
        match self {
            Signal::Traces => Lane::TRACES,
            Signal::Logs => Lane::LOGS,
            Signal::Metrics => Lane::METRICS,
        }
    }

    /// The full name of its export request, as the descriptors name it.
    pub fn request(self) -> &'static str {
        match self {
            Signal::Traces => "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
            Signal::Logs => "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
            Signal::Metrics => {
                "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"
            }
        }
    }

    /// What its events are called, in messages.
    pub fn events(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    }

    /// Checks that `body` is its export request, by decoding it with the official types.
    fn check(self, body: &[u8]) -> Result<(), prost::DecodeError> {
        match self {
            Signal::Traces => {
                collector::trace::v1::ExportTraceServiceRequest::decode(body).map(drop)
            }
            Signal::Logs => collector::logs::v1::ExportLogsServiceRequest::decode(body).map(drop),
            Signal::Metrics => {
                collector::metrics::v1::ExportMetricsServiceRequest::decode(body).map(drop)
            }
        }
    }

    /// The answer to a request of which `rejected` events were refused (`message` says why),
    /// as protobuf: its `Export*ServiceResponse`.
    pub fn response(self, rejected: u64, message: String) -> Vec<u8> {
        use collector::{logs, metrics, trace};
        let partial = rejected > 0 || !message.is_empty();
        match self {
            Signal::Traces => trace::v1::ExportTraceServiceResponse {
                partial_success: partial.then_some(trace::v1::ExportTracePartialSuccess {
                    rejected_spans: rejected as i64,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Logs => logs::v1::ExportLogsServiceResponse {
                partial_success: partial.then_some(logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: rejected as i64,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => metrics::v1::ExportMetricsServiceResponse {
                partial_success: partial.then_some(metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points: rejected as i64,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
        }
    }

    /// The same answer in OTLP/JSON.
    pub fn response_json(self, rejected: u64, message: String) -> Vec<u8> {
        if rejected == 0 && message.is_empty() {
            return b"{}".to_vec();
        }
        let field = match self {
            Signal::Traces => "rejectedSpans",
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        };
        let partial = serde_json::json!({ field: rejected.to_string(), "errorMessage": message });
        serde_json::to_vec(&serde_json::json!({ "partialSuccess": partial })).unwrap_or_default()
    }
}

/// A request cut into records, and what of it was refused.
#[derive(Debug, Default)]
pub struct Split {
    pub parts: Vec<Part>,
    pub rejected: Vec<Rejected>,
}

/// One record's worth of a request.
#[derive(Debug)]
pub struct Part {
    pub key: String,
    /// An `Export*ServiceRequest`.
    pub value: Vec<u8>,
    /// The events it holds.
    pub events: usize,
    /// The indices (see [`Request::ids`]) of the items it holds.
    pub items: Vec<usize>,
}

/// Items refused: how many events they held, why, and their bytes (for the dead letters).
#[derive(Debug)]
pub struct Rejected {
    pub events: usize,
    pub invalid: Invalid,
    pub raw: Vec<u8>,
}

impl Split {
    /// Events in the request: those in a record and those refused.
    pub fn events(&self) -> usize {
        let kept: usize = self.parts.iter().map(|p| p.events).sum();
        kept + self.rejected.iter().map(|r| r.events).sum::<usize>()
    }
}

/// A request that is no valid export request of its signal (400).
#[derive(Debug)]
pub struct NotOtlp(pub String);

/// Checks that `body` is `signal`'s export request, by decoding it with the official types:
/// what a Collector would unmarshal, inlet accepts.
pub fn check(signal: Signal, body: &[u8]) -> Result<(), NotOtlp> {
    signal.check(body).map_err(|error| {
        NotOtlp(format!(
            "the body is no OTLP {} export request: {error}",
            signal.events()
        ))
    })
}

/// Checks `body` as `signal`'s export request and cuts it into records of at most
/// `max_message` bytes each.
pub fn split(signal: Signal, body: &[u8], max_message: usize) -> Result<Split, NotOtlp> {
    check(signal, body)?;
    Ok(Request::read(signal, body)?.split(max_message, &[]))
}

/// A request read as far as splitting goes, borrowing its bytes (checked by [`check`]).
pub struct Request<'a> {
    signal: Signal,
    resources: Vec<Parent<'a>>,
}

/// A resource (or a scope): its fields other than its children, as they came, and its
/// children.
struct Parent<'a> {
    head: Vec<&'a [u8]>,
    head_len: usize,
    /// The resource's key (resources only).
    key: String,
    scopes: Vec<Parent<'a>>,
    /// A scope's items (scopes only).
    items: Vec<Item<'a>>,
}

/// Where an item is: its resource, its scope in it, its place in the scope, and its index in
/// the request.
type At = (usize, usize, usize, usize);

/// A span, a log record or a metric: its bytes, its events and where it goes.
struct Item<'a> {
    bytes: &'a [u8],
    events: usize,
    /// The trace id (spans), or `None` when it is not a valid one.
    trace: Option<&'a [u8]>,
    /// The span id (spans).
    span: &'a [u8],
}

impl<'a> Parent<'a> {
    /// `message`'s fields other than its children, and its children's bytes.
    fn read(message: &'a [u8]) -> Result<(Parent<'a>, Vec<&'a [u8]>), Malformed> {
        let mut parent = Parent {
            head: Vec::new(),
            head_len: 0,
            key: String::new(),
            scopes: Vec::new(),
            items: Vec::new(),
        };
        let mut children = Vec::new();
        for field in fields(message) {
            let field = field?;
            match (field.number, field.value) {
                (CHILDREN, Value::Bytes(child)) => children.push(child),
                _ => {
                    parent.head_len += field.bytes.len();
                    parent.head.push(field.bytes);
                }
            }
        }
        Ok((parent, children))
    }
}

impl<'a> Request<'a> {
    /// `body`, `signal`'s export request, read into its resources, scopes and items.
    pub fn read(signal: Signal, body: &'a [u8]) -> Result<Request<'a>, NotOtlp> {
        Request::fields(signal, body).map_err(|Malformed| {
            NotOtlp(format!(
                "the body is no OTLP {} export request",
                signal.events()
            ))
        })
    }

    fn fields(signal: Signal, body: &'a [u8]) -> Result<Request<'a>, Malformed> {
        let mut resources = Vec::new();
        for field in fields(body) {
            let (RESOURCES, Value::Bytes(resource)) = field.map(|f| (f.number, f.value))? else {
                continue;
            };
            let (mut parent, scopes) = Parent::read(resource)?;
            parent.key = resource_key(&parent.head);
            for scope in scopes {
                let (mut scope_parent, items) = Parent::read(scope)?;
                for item in items {
                    scope_parent.items.push(Item::read(signal, item)?);
                }
                parent.scopes.push(scope_parent);
            }
            resources.push(parent);
        }
        Ok(Request { signal, resources })
    }

    /// Each item's id, in order: a span's trace and span ids in hex (`None` for other items,
    /// which have none).
    pub fn ids(&self) -> Vec<Option<String>> {
        let items = self
            .resources
            .iter()
            .flat_map(|r| &r.scopes)
            .flat_map(|s| &s.items);
        let id = |item: &Item<'_>| {
            let trace = hex::encode(item.trace?);
            Some(format!("{trace}{}", hex::encode(item.span)))
        };
        items.map(id).collect()
    }

    /// The records of at most `max_message` bytes: items grouped by key in the order they
    /// came, each group cut to fit; the items whose index (in the order of [`Request::ids`])
    /// `skip` marks are left out and counted nowhere.
    pub fn split(&self, max_message: usize, skip: &[bool]) -> Split {
        let signal = self.signal;
        let limit = max_message.saturating_sub(MESSAGE_ROOM).max(1);
        let mut split = Split::default();
        let mut flat = 0;
        // Each group: its key and its items; found by the trace id's or the resource key's bytes.
        let mut groups: Vec<(String, Vec<At>)> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        for (r, resource) in self.resources.iter().enumerate() {
            for (s, scope) in resource.scopes.iter().enumerate() {
                for (i, item) in scope.items.iter().enumerate() {
                    flat += 1;
                    if skip.get(flat - 1).copied().unwrap_or(false) {
                        continue;
                    }
                    let key = match (signal, item.trace) {
                        (Signal::Traces, Some(trace)) => trace,
                        (Signal::Traces, None) => {
                            split.rejected.push(Rejected {
                                events: item.events,
                                invalid: Invalid::new(
                                    "invalid_trace_id",
                                    "a span's trace_id must be 16 bytes, not all zero",
                                ),
                                raw: item.bytes.to_vec(),
                            });
                            continue;
                        }
                        _ => resource.key.as_bytes(),
                    };
                    let group = *index.entry(key).or_insert_with(|| {
                        let key = match signal {
                            Signal::Traces => hex::encode(key),
                            _ => resource.key.clone(),
                        };
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[group].1.push((r, s, i, flat - 1));
                }
            }
        }
        for (key, items) in groups {
            self.pack(key, &items, limit, &mut split);
        }
        split
    }

    /// Cuts one group's items into records of at most `limit` bytes, greedily in order.
    fn pack(&self, key: String, items: &[At], limit: usize, split: &mut Split) {
        // Room a resource's or a scope's key and length take at most.
        const FRAME: usize = 1 + 10;
        let mut start = 0;
        let mut size = 0;
        let mut at = 0;
        let mut cut_metrics: Vec<(usize, usize, Vec<u8>, usize, usize)> = Vec::new();
        while at < items.len() {
            let (r, s, i, index) = items[at];
            let (resource, scope) = (&self.resources[r], &self.resources[r].scopes[s]);
            let item = &scope.items[i];
            let mut cost = delimited_len(CHILDREN, item.bytes.len());
            let new_resource = at == start || items[at - 1].0 != r;
            let new_scope = new_resource || items[at - 1].1 != s;
            if new_resource {
                cost += FRAME + resource.head_len;
            }
            if new_scope {
                cost += FRAME + scope.head_len;
            }
            if size + cost <= limit {
                size += cost;
                at += 1;
                continue;
            }
            if at > start {
                // What fits so far is one record; this item starts the next.
                split.parts.push(self.part(&key, &items[start..at]));
                (start, size) = (at, 0);
                continue;
            }
            // Alone and too large.
            let frames = 2 * FRAME + resource.head_len + scope.head_len;
            let room = limit.saturating_sub(frames);
            match self.signal {
                Signal::Metrics => match cut_metric(item.bytes, room) {
                    Some(pieces) => {
                        for piece in pieces {
                            cut_metrics.push((r, s, piece.0, piece.1, index));
                        }
                    }
                    None => split.rejected.push(too_large(self.signal, item, limit)),
                },
                _ => split.rejected.push(too_large(self.signal, item, limit)),
            }
            at += 1;
            start = at;
        }
        if at > start {
            split.parts.push(self.part(&key, &items[start..at]));
        }
        // A metric cut by its points: each piece its own record, under the same key.
        for (r, s, piece, events, index) in cut_metrics {
            let (value, _) = self.assemble(&[], &[(r, s, &piece)]);
            split.parts.push(Part {
                key: key.clone(),
                value,
                events,
                items: vec![index],
            });
        }
    }

    /// The record of `items`, under `key`.
    fn part(&self, key: &str, items: &[At]) -> Part {
        let (value, events) = self.assemble(items, &[]);
        Part {
            key: key.to_owned(),
            value,
            events,
            items: items.iter().map(|at| at.3).collect(),
        }
    }

    /// One record of `items` (indices), or of `pieces` (items given as bytes): a request with
    /// a copy of each item's resource and scope. Returns it and the events it holds.
    fn assemble(&self, items: &[At], pieces: &[(usize, usize, &[u8])]) -> (Vec<u8>, usize) {
        let mut listed: Vec<(usize, usize, &[u8], usize)> = items
            .iter()
            .map(|&(r, s, i, _)| {
                let item = &self.resources[r].scopes[s].items[i];
                (r, s, item.bytes, item.events)
            })
            .collect();
        listed.extend(pieces.iter().map(|&(r, s, bytes)| (r, s, bytes, 0)));
        let events = listed.iter().map(|l| l.3).sum();
        // Runs of one resource, and within them of one scope, in order.
        let resource_runs = runs(&listed, 0, listed.len(), |a, b| a.0 == b.0);
        let scope_len = |from: usize, to: usize| -> usize {
            let (r, s) = (listed[from].0, listed[from].1);
            let head = self.resources[r].scopes[s].head_len;
            head + listed[from..to]
                .iter()
                .map(|l| delimited_len(CHILDREN, l.2.len()))
                .sum::<usize>()
        };
        let scope_runs = |from: usize, to: usize| runs(&listed, from, to, |a, b| a.1 == b.1);
        let resource_len = |from: usize, to: usize| -> usize {
            let head = self.resources[listed[from].0].head_len;
            head + scope_runs(from, to)
                .into_iter()
                .map(|(a, b)| delimited_len(CHILDREN, scope_len(a, b)))
                .sum::<usize>()
        };
        let total: usize = resource_runs
            .iter()
            .map(|&(a, b)| delimited_len(RESOURCES, resource_len(a, b)))
            .sum();
        let mut out = Vec::with_capacity(total);
        for (a, b) in resource_runs {
            let resource = &self.resources[listed[a].0];
            open_delimited(RESOURCES, resource_len(a, b), &mut out);
            resource.head.iter().for_each(|f| out.extend_from_slice(f));
            for (c, d) in scope_runs(a, b) {
                let scope = &resource.scopes[listed[c].1];
                open_delimited(CHILDREN, scope_len(c, d), &mut out);
                scope.head.iter().for_each(|f| out.extend_from_slice(f));
                for item in &listed[c..d] {
                    open_delimited(CHILDREN, item.2.len(), &mut out);
                    out.extend_from_slice(item.2);
                }
            }
        }
        debug_assert_eq!(out.len(), total);
        (out, events)
    }
}

impl<'a> Item<'a> {
    fn read(signal: Signal, bytes: &'a [u8]) -> Result<Item<'a>, Malformed> {
        let mut item = Item {
            bytes,
            events: 1,
            trace: None,
            span: &[],
        };
        match signal {
            Signal::Traces => {
                for field in fields(bytes) {
                    match field.map(|f| (f.number, f.value))? {
                        (1, Value::Bytes(id)) => item.trace = trace_id(id),
                        (2, Value::Bytes(id)) => item.span = id,
                        _ => {}
                    }
                }
            }
            Signal::Logs => {}
            Signal::Metrics => item.events = data_points(bytes)?,
        }
        Ok(item)
    }
}

/// The runs of consecutive entries of `listed[from..to]` that `same` holds of (the same
/// resource, the same scope), as ranges of indices.
fn runs<T>(
    listed: &[T],
    from: usize,
    to: usize,
    same: impl Fn(&T, &T) -> bool,
) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for at in from..to {
        match runs.last_mut() {
            Some(run) if same(&listed[run.0], &listed[at]) => run.1 = at + 1,
            _ => runs.push((at, at + 1)),
        }
    }
    runs
}

/// `id`, if it is a trace id: 16 bytes, not all zero.
fn trace_id(id: &[u8]) -> Option<&[u8]> {
    (id.len() == 16 && id.iter().any(|b| *b != 0)).then_some(id)
}

/// The field numbers of a metric's data (`gauge`, `sum`, `histogram`, `exponential_histogram`,
/// `summary`); in each, field 1 is the data points.
const METRIC_DATA: [u32; 5] = [5, 7, 9, 10, 11];
const DATA_POINTS: u32 = 1;

/// The data points of the metric `metric`. Its data is a oneof: as a decoder reads it, a data
/// field replaces one of another kind before it, and merges with one of its own kind.
fn data_points(metric: &[u8]) -> Result<usize, Malformed> {
    let (mut kind, mut points) = (0, 0);
    for field in fields(metric) {
        let field = field?;
        if let (true, Value::Bytes(data)) = (METRIC_DATA.contains(&field.number), field.value) {
            if field.number != kind {
                (kind, points) = (field.number, 0);
            }
            for point in fields(data) {
                points += usize::from(point?.number == DATA_POINTS);
            }
        }
    }
    Ok(points)
}

/// The metric `metric` cut by its data points into metrics of at most `room` bytes each, with
/// their events; `None` when one data point alone is larger.
fn cut_metric(metric: &[u8], room: usize) -> Option<Vec<(Vec<u8>, usize)>> {
    let mut head = Vec::new();
    let (mut data_number, mut data_head, mut points) = (0, Vec::new(), Vec::new());
    for field in fields(metric) {
        let field = field.ok()?;
        match (METRIC_DATA.contains(&field.number), field.value) {
            (true, Value::Bytes(data)) => {
                // A oneof: another kind of data replaces what came before (see `data_points`).
                if field.number != data_number {
                    (data_head, points) = (Vec::new(), Vec::new());
                }
                data_number = field.number;
                for inner in fields(data) {
                    let inner = inner.ok()?;
                    match inner.number {
                        DATA_POINTS => points.push(inner.bytes),
                        _ => data_head.extend_from_slice(inner.bytes),
                    }
                }
            }
            _ => head.extend_from_slice(field.bytes),
        }
    }
    let frame = head.len() + delimited_len(data_number, data_head.len()) + 10;
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < points.len() {
        let mut size = frame;
        let from = at;
        while at < points.len() && size + points[at].len() <= room {
            size += points[at].len();
            at += 1;
        }
        if at == from {
            return None;
        }
        let data_len = data_head.len() + points[from..at].iter().map(|p| p.len()).sum::<usize>();
        let mut piece = head.clone();
        open_delimited(data_number, data_len, &mut piece);
        piece.extend_from_slice(&data_head);
        points[from..at]
            .iter()
            .for_each(|p| piece.extend_from_slice(p));
        pieces.push((piece, at - from));
    }
    Some(pieces)
}

/// The refusal of `item`, larger alone than a message may be.
fn too_large(signal: Signal, item: &Item<'_>, limit: usize) -> Rejected {
    let what = match signal {
        Signal::Traces => "a span",
        Signal::Logs => "a log record",
        Signal::Metrics => "a data point",
    };
    Rejected {
        events: item.events,
        invalid: Invalid::new(
            "event_too_large",
            format!(
                "{what} of {} bytes is larger than a Kafka message may be ({limit} bytes)",
                item.bytes.len()
            ),
        ),
        raw: item.bytes.to_vec(),
    }
}

/// The key of a resource, given its fields as they came: 32 hex digits of the SHA-256 of its
/// attributes sorted (each `KeyValue` as encoded, so the order a client lists them in does not
/// matter), its other fields after them. Every resource without attributes shares one key.
pub fn resource_key(fields_of_resource: &[&[u8]]) -> String {
    let mut attributes: Vec<&[u8]> = Vec::new();
    let mut others: Vec<&[u8]> = Vec::new();
    for field in fields_of_resource {
        // `resource` is field 1 of a ResourceSpans / ResourceLogs / ResourceMetrics.
        let Some(Ok(wire::Field {
            number: 1,
            value: Value::Bytes(resource),
            ..
        })) = fields(field).next()
        else {
            continue;
        };
        for inner in fields(resource).flatten() {
            match inner.number {
                1 => attributes.push(inner.bytes),
                _ => others.push(inner.bytes),
            }
        }
    }
    attributes.sort_unstable();
    let mut hasher = Sha256::new();
    attributes
        .iter()
        .chain(&others)
        .for_each(|b| hasher.update(b));
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
    use crate::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use crate::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValue};
    use crate::opentelemetry::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::opentelemetry::proto::metrics::v1::{metric, Gauge, Metric, NumberDataPoint};
    use crate::opentelemetry::proto::metrics::v1::{ResourceMetrics, ScopeMetrics};
    use crate::opentelemetry::proto::resource::v1::Resource;

    fn attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
        Some(Resource {
            attributes,
            ..Default::default()
        })
    }

    #[test]
    fn logs_are_keyed_by_their_resource_whatever_the_order_of_its_attributes() {
        let logs = |attributes, body: &str| ResourceLogs {
            resource: resource(attributes),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (a, b) = (attribute("service.name", "shop"), attribute("host", "h1"));
        let request = ExportLogsServiceRequest {
            resource_logs: vec![
                logs(vec![a.clone(), b.clone()], "one"),
                logs(vec![attribute("service.name", "cart")], "other"),
                logs(vec![b, a], "two"),
            ],
        };
        let split = split(Signal::Logs, &request.encode_to_vec(), 1 << 20).unwrap();
        assert_eq!(split.parts.len(), 2, "one record per resource");
        assert_eq!(split.parts[0].events, 2);
        assert_eq!(split.parts[0].key.len(), 32);
        assert_ne!(split.parts[0].key, split.parts[1].key);
        let first = ExportLogsServiceRequest::decode(&split.parts[0].value[..]).unwrap();
        assert_eq!(first.resource_logs.len(), 2, "each resource as it came");
        assert_eq!(first.resource_logs[0], request.resource_logs[0]);
        assert_eq!(first.resource_logs[1], request.resource_logs[2]);
    }

    #[test]
    fn a_metric_larger_than_a_message_is_cut_by_its_data_points_and_none_is_lost() {
        let points: Vec<NumberDataPoint> = (0..2000)
            .map(|i| NumberDataPoint {
                attributes: vec![attribute("shard", &format!("shard-{i:05}"))],
                time_unix_nano: i,
                ..Default::default()
            })
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(vec![attribute("service.name", "shop")]),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "queue.depth".into(),
                        unit: "1".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: points.clone(),
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        assert!(body.len() > 50_000);
        let split = split(Signal::Metrics, &body, 20_000).unwrap();
        assert!(split.rejected.is_empty());
        assert!(split.parts.len() >= 3, "{} records", split.parts.len());
        assert_eq!(split.events(), 2000, "each data point an event");
        let mut landed = Vec::new();
        for part in &split.parts {
            assert!(part.value.len() <= 20_000);
            let request = ExportMetricsServiceRequest::decode(&part.value[..]).unwrap();
            let metric = &request.resource_metrics[0].scope_metrics[0].metrics[0];
            assert_eq!(
                (metric.name.as_str(), metric.unit.as_str()),
                ("queue.depth", "1")
            );
            let Some(metric::Data::Gauge(gauge)) = &metric.data else {
                panic!("{metric:?}")
            };
            landed.extend(gauge.data_points.iter().cloned());
        }
        assert_eq!(landed, points);
    }

    #[test]
    fn what_is_no_export_request_is_refused_and_an_empty_one_is_nothing() {
        for garbage in [&b"\x0a\x05ab"[..], b"\xff", b"\x0a\x02\x12\x05"] {
            assert!(
                split(Signal::Traces, garbage, 1 << 20).is_err(),
                "{garbage:?}"
            );
        }
        let empty = split(Signal::Traces, &[], 1 << 20).unwrap();
        assert!(empty.parts.is_empty() && empty.rejected.is_empty());
        assert_eq!(
            Signal::Metrics.response_json(2, "why".into()),
            br#"{"partialSuccess":{"errorMessage":"why","rejectedDataPoints":"2"}}"#
        );
    }
}

//! `inlet::otlp`: OTLP requests, protobuf or OTLP/JSON, checked and cut into the Collector's
//! records.
//!
//! Input: byte 0 picks the signal (`% 3`: traces, logs, metrics), whether the body is OTLP/JSON
//! (`/ 3 % 2`) and the message limit (`/ 6 % 3`: 1 MiB, 4096, 300 bytes); the rest is the body.
//! Checks: no panic, no hang; a body accepted decodes with the official types, and its cut
//! keeps every item: the events of its records and of its refusals add up to the request's
//! spans, log records or data points; every record decodes as the signal's request and is no
//! larger than the limit; every span is in the record of its trace id's key.
#![no_main]

use inlet::opentelemetry::proto::collector::{logs, metrics, trace};
use inlet::otlp::{self, Signal};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const SIGNALS: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];
const LIMITS: [usize; 3] = [1 << 20, 4096, 300];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signal = SIGNALS[usize::from(selector) % 3];
    let json = selector / 3 % 2 == 1;
    let limit = LIMITS[usize::from(selector) / 6 % 3];
    let protobuf = match json {
        true => match otlp::json::to_protobuf(signal.request(), body) {
            Ok(protobuf) => protobuf,
            Err(_) => return,
        },
        false => body.to_vec(),
    };
    let Ok(split) = otlp::split(signal, &protobuf, limit) else {
        assert!(!json, "what OTLP/JSON converts to decodes: {protobuf:?}");
        return;
    };
    assert_eq!(split.events(), events(signal, &protobuf), "an item lost or counted twice");
    for part in &split.parts {
        assert!(part.value.len() <= limit, "{} bytes over {limit}", part.value.len());
        assert_eq!(events(signal, &part.value), part.events);
        if signal == Signal::Traces {
            let request = trace::v1::ExportTraceServiceRequest::decode(&part.value[..]).unwrap();
            let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
            for span in spans.flat_map(|s| &s.spans) {
                let id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(part.key, id, "a span under another trace's key");
            }
        }
    }
});

/// The spans, log records or data points of `signal`'s request `body` (which decodes).
fn events(signal: Signal, body: &[u8]) -> usize {
    match signal {
        Signal::Traces => {
            let request = trace::v1::ExportTraceServiceRequest::decode(body).unwrap();
            let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
            scopes.map(|s| s.spans.len()).sum()
        }
        Signal::Logs => {
            let request = logs::v1::ExportLogsServiceRequest::decode(body).unwrap();
            let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
            scopes.map(|s| s.log_records.len()).sum()
        }
        Signal::Metrics => {
            use inlet::opentelemetry::proto::metrics::v1::metric::Data;
            let request = metrics::v1::ExportMetricsServiceRequest::decode(body).unwrap();
            let scopes = request.resource_metrics.iter().flat_map(|r| &r.scope_metrics);
            let metrics = scopes.flat_map(|s| &s.metrics);
            metrics
                .map(|m| match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                })
                .sum()
        }
    }
}

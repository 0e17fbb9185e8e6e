//! `inlet tail`: consume a topic and print each message decoded from protobuf as one JSON line,
//! so a user can see exactly what inlet wrote (from the dev cluster or a real one): an
//! `envelope`, or a `dead_letter` on the dead-letter topic (told apart by `inlet-schema`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use prost::Message as _;

use crate::proto::{self, envelope::Event};
use crate::reassemble::Reassembler;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Topic to read
    #[arg(long, default_value = "inlet.beacons")]
    pub topic: String,
    /// Kafka bootstrap servers (`inlet --dev` prints its own)
    #[arg(long, env = "INLET_KAFKA_BROKERS")]
    pub brokers: String,
    /// Where to start in every partition
    #[arg(long, value_enum, default_value_t = From::Beginning)]
    pub from: From,
    /// Exit after printing this many messages
    #[arg(long)]
    pub count: Option<usize>,
    /// Exit after this many milliseconds without a message (default: wait forever)
    #[arg(long)]
    pub idle_exit_ms: Option<u64>,
    /// Put session recordings back together from their chunks into DIR/<session>/<recording>,
    /// each checked against its sha256, and print one line per recording (complete, corrupt,
    /// or, at exit, incomplete) instead of one per message
    #[arg(long, value_name = "DIR")]
    pub reassemble: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum From {
    Beginning,
    End,
}

/// Runs `inlet tail` until `--count` messages, `--idle-exit-ms` of silence, or Ctrl-C.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("inlet-tail-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    if args.reassemble.is_some() {
        // A recording is on one partition: fetch more than librdkafka's 1 MiB of it at a time,
        // and do not let the many empty partitions hold each fetch for librdkafka's 500 ms.
        config
            .set("fetch.wait.max.ms", "50")
            .set("max.partition.fetch.bytes", (16 << 20).to_string())
            .set("fetch.max.bytes", (64 << 20).to_string());
    }
    let consumer: BaseConsumer = config
        .create()
        .context("cannot create the Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .with_context(|| format!("cannot reach {}", args.brokers))?;
    let Some(topic) = metadata
        .topics()
        .first()
        .filter(|t| !t.partitions().is_empty())
    else {
        bail!("topic {} does not exist on {}", args.topic, args.brokers);
    };
    let offset = match args.from {
        From::Beginning => Offset::Beginning,
        From::End => Offset::End,
    };
    let mut assignment = TopicPartitionList::new();
    for p in topic.partitions() {
        assignment.add_partition_offset(&args.topic, p.id(), offset)?;
    }
    consumer.assign(&assignment)?;
    let stdout = std::io::stdout();
    let mut reassembler = match &args.reassemble {
        Some(dir) => Some(Reassembler::new(dir)?),
        None => None,
    };
    let (mut printed, mut last) = (0usize, Instant::now());
    // From the first message to the last: the reassembly's own time, not the idle wait.
    let mut first: Option<Instant> = None;
    loop {
        let idle =
            (args.idle_exit_ms).is_some_and(|ms| last.elapsed() >= Duration::from_millis(ms));
        if idle || args.count.is_some_and(|n| printed >= n) {
            if let Some(reassembler) = reassembler {
                let took = first.map_or(Duration::ZERO, |first| last - first);
                finish(reassembler, took)?;
            }
            return Ok(());
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.context("consume")?;
        if let Some(reassembler) = reassembler.as_mut() {
            first.get_or_insert_with(Instant::now);
            let payload = message.payload().unwrap_or_default();
            if let Ok(proto::Envelope {
                event: Some(Event::Recording(chunk)),
                ..
            }) = proto::Envelope::decode(payload)
            {
                if let Some(line) = reassembler.chunk(chunk)? {
                    let mut out = stdout.lock();
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
            }
            printed += 1;
            last = Instant::now();
            continue;
        }
        let mut headers = serde_json::Map::new();
        if let Some(h) = message.headers() {
            for header in h.iter() {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(header.key.to_owned(), json!(value));
            }
        }
        let payload = message.payload().unwrap_or_default();
        // The schema header says which message the value is; messages without it are envelopes.
        let schema = headers
            .get("inlet-schema")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (field, value) = match schema {
            "inlet.v1.DeadLetter" => ("dead_letter", decoded(payload, dead_letter_json)),
            schema if schema.starts_with("opentelemetry.") => ("otlp", otlp_json(schema, payload)),
            _ => ("envelope", decoded(payload, envelope_json)),
        };
        let mut line = json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "headers": headers,
        });
        line[field] = value;
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        printed += 1;
        last = Instant::now();
    }
}

/// Reports the recordings left incomplete, then what the reassembly came to: one line each.
fn finish(reassembler: Reassembler, took: Duration) -> anyhow::Result<()> {
    let bytes = reassembler.bytes;
    let mut out = std::io::stdout().lock();
    for line in reassembler.finish() {
        writeln!(out, "{line}")?;
    }
    let (mib, secs) = (bytes as f64 / f64::from(1 << 20), took.as_secs_f64());
    let summary = json!({ "reassembled": {
        "bytes": bytes, "seconds": secs, "mib_per_s": if secs > 0.0 { mib / secs } else { 0.0 },
    }});
    writeln!(out, "{summary}")?;
    Ok(())
}

/// `payload` decoded as `M` and shown as JSON by `show`, or why it could not be decoded.
fn decoded<M: prost::Message + Default>(payload: &[u8], show: fn(&M) -> Value) -> Value {
    match M::decode(payload) {
        Ok(message) => show(&message),
        Err(e) => json!({ "undecodable": e.to_string() }),
    }
}

/// A dead letter as JSON, field names as in the .proto.
pub fn dead_letter_json(d: &proto::DeadLetter) -> Value {
    json!({
        "token_id": d.token_id, "project_id": d.project_id, "account_id": d.account_id,
        "kind": d.kind, "source": d.source, "code": d.code, "message": d.message,
        "received_at_ms": d.received_at_ms, "raw": d.raw, "raw_bytes": d.raw_bytes,
        "index": d.index,
        "binary_base64": (!d.binary.is_empty()).then(|| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&d.binary)
        }),
    })
}

/// An OTLP record (the `Export*ServiceRequest` named by `schema`) in short: what it holds, each
/// span by its ids and name, each log record by its severity and body, each metric by its name.
pub fn otlp_json(schema: &str, payload: &[u8]) -> Value {
    use crate::opentelemetry::proto::collector::{logs, metrics, trace};
    match schema.rsplit('.').next().unwrap_or("") {
        "ExportTraceServiceRequest" => {
            decoded(payload, |r: &trace::v1::ExportTraceServiceRequest| {
                let spans = r
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans);
                json!({ "spans": spans.map(|s| json!({
                "trace_id": hex::encode(&s.trace_id), "span_id": hex::encode(&s.span_id),
                "parent_span_id": hex::encode(&s.parent_span_id), "name": s.name,
            })).collect::<Vec<_>>() })
            })
        }
        "ExportLogsServiceRequest" => decoded(payload, |r: &logs::v1::ExportLogsServiceRequest| {
            let records = r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records);
            json!({ "log_records": records.map(|l| json!({
                "severity": l.severity_text, "body": format!("{:?}", l.body.as_ref().and_then(|b| b.value.as_ref())),
                "trace_id": hex::encode(&l.trace_id),
            })).collect::<Vec<_>>() })
        }),
        _ => decoded(payload, |r: &metrics::v1::ExportMetricsServiceRequest| {
            let metrics = r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics);
            json!({ "metrics": metrics.map(|m| m.name.as_str()).collect::<Vec<_>>() })
        }),
    }
}

/// An envelope as JSON, field names as in the .proto; `props_json` / `custom_json` are
/// expanded back into JSON values under `props` / `custom`.
pub fn envelope_json(e: &proto::Envelope) -> Value {
    let event = match &e.event {
        Some(Event::Beacon(b)) => json!({ "beacon": {
            "session_id": b.session_id, "event": b.event, "client_ts_ms": b.client_ts_ms,
            "url": b.url, "referrer": b.referrer, "title": b.title, "user_id": b.user_id,
            "props": embedded(&b.props_json),
        }}),
        Some(Event::Occurrence(o)) => json!({ "occurrence": {
            "level": proto::Level::try_from(o.level).map(|l| l.as_str_name()).unwrap_or("LEVEL_UNSPECIFIED"),
            "message": o.message,
            "exception": o.exception.as_ref().map(|x| json!({
                "class": x.class, "message": x.message,
                "frames": x.frames.iter().map(|f| json!({
                    "filename": f.filename, "lineno": f.lineno, "colno": f.colno, "method": f.method,
                })).collect::<Vec<_>>(),
            })),
            "client_ts_ms": o.client_ts_ms, "environment": o.environment, "platform": o.platform,
            "language": o.language, "code_version": o.code_version, "fingerprint": o.fingerprint,
            "custom": embedded(&o.custom_json),
        }}),
        Some(Event::Item(i)) => json!({ "item": {
            "type": i.r#type, "media_type": i.media_type,
            "payload": String::from_utf8(i.payload.clone())
                .map(|text| embedded(&text))
                .unwrap_or_else(|e| json!({ "bytes": e.into_bytes().len() })),
            "headers": embedded(&i.headers_json),
        }}),
        Some(Event::Recording(r)) => json!({ "recording": {
            "session_id": r.session_id, "recording_id": r.recording_id, "index": r.index,
            "bytes": r.data.len(), "media_type": r.media_type,
            "content_encoding": r.content_encoding, "last": r.last, "count": r.count,
            "size": r.size, "sha256": r.sha256, "type": r.r#type,
            "headers": embedded(&r.headers_json),
        }}),
        None => Value::Null,
    };
    json!({
        "event_id": e.event_id, "received_at_ms": e.received_at_ms, "project_id": e.project_id,
        "account_id": e.account_id, "token_id": e.token_id, "client_ip": e.client_ip,
        "user_agent": e.user_agent, "source": e.source, "trimmed": e.trimmed, "event": event,
    })
}

fn embedded(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_dead_letter_is_printed_field_by_field() {
        let letter = proto::DeadLetter {
            token_id: "web".into(),
            code: "missing_field".into(),
            raw: r#"{"event":"e"}"#.into(),
            raw_bytes: 13,
            ..Default::default()
        };
        let shown = decoded(&letter.encode_to_vec(), dead_letter_json);
        assert_eq!(shown["token_id"], "web");
        assert_eq!(shown["code"], "missing_field");
        assert_eq!(shown["raw"], r#"{"event":"e"}"#);
        let garbage = decoded(&[0xff, 0xff], dead_letter_json);
        assert!(garbage["undecodable"].is_string());
    }
}

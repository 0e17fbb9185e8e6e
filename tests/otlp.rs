//! OTLP over HTTP with OpenTelemetry's own SDKs (issue #23): Python's `opentelemetry-sdk` with
//! `opentelemetry-exporter-otlp-proto-http` (protobuf) and Node's
//! `@opentelemetry/exporter-trace-otlp-http` (OTLP/JSON), each configured only through
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_HEADERS`, run as their own processes
//! (`tests/sdk/otlp.py`, `otlp.js`) against an in-process inlet producing to Tansu.
//!
//! What lands is read back and decoded with the official OTLP message types, the ones a
//! Collector's kafka receiver unmarshals `otlp_proto` records with, and compared field by
//! field with the requests the exporters sent (their bytes, captured by the scripts): every
//! span, log record and data point exactly once, under its resource and scope as sent, keyed
//! by trace id or resource, with inlet's metadata in the headers.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::gateway::{create_topics, otlp_topics, Gateway, Kafka, Place};
use common::gateway::{ACCOUNT, OTEL, OTEL_TIGHT, PROJECT};
use common::{script_lines, sdk_root};
use inlet::config::Delivery;
use inlet::opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
use inlet::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use inlet::opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::Value;

/// How long the consumer reads on after the expected records arrived, to catch a duplicate.
const LINGER: Duration = Duration::from_secs(1);

/// Runs `tests/sdk/otlp.{py,js}` with `args` against `gateway` as the SDK's users configure
/// it, the token in `headers` (`OTEL_EXPORTER_OTLP_HEADERS`); returns the lines it printed.
fn run_sdk(node: bool, gateway: &Gateway, headers: &str, args: &[&str]) -> Vec<Value> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    let (program, script, path_var, path, installed) = match node {
        false => {
            let path = sdk_root().join("python");
            let installed = path.join("opentelemetry/exporter/otlp/proto/http");
            ("python3", "otlp.py", "PYTHONPATH", path, installed)
        }
        true => {
            let path = sdk_root().join("node/node_modules");
            let installed = path.join("@opentelemetry/exporter-trace-otlp-http");
            ("node", "otlp.js", "NODE_PATH", path, installed)
        }
    };
    assert!(
        installed.exists(),
        "{} is not installed: run tests/sdk/install.sh",
        installed.display()
    );
    let mut command = Command::new(program);
    command
        .arg(scripts.join(script))
        .args(args)
        .env(path_var, &path)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &gateway.url)
        .env("OTEL_EXPORTER_OTLP_HEADERS", headers)
        .env("OTEL_SERVICE_NAME", "checkout");
    script_lines(&mut command, &format!("{script} {args:?}"))
}

/// The printed lines of `signal`.
fn lines<'a>(printed: &'a [Value], signal: &str) -> Vec<&'a Value> {
    printed.iter().filter(|l| l["signal"] == signal).collect()
}

/// The bodies of the requests to `path` the exporter sent and inlet answered 200, decoded as
/// sent (gzip undone).
fn sent_bodies(printed: &[Value], path: &str) -> Vec<Vec<u8>> {
    lines(printed, "request")
        .into_iter()
        .filter(|r| r["path"] == path && r["status"] == 200)
        .map(|r| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["body_b64"].as_str().unwrap())
                .unwrap();
            match r["content_encoding"].as_str() {
                Some("gzip") => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&bytes[..]),
                        &mut out,
                    )
                    .unwrap();
                    out
                }
                _ => bytes,
            }
        })
        .collect()
}

/// Reads `topic` back until `events` events arrived (as `count` counts a record's), then for
/// [`LINGER`] more: each record's place and value.
fn read_back(
    kafka: &Kafka,
    topic: &str,
    events: usize,
    count: fn(&[u8]) -> usize,
) -> Vec<(Place, Vec<u8>)> {
    common::gateway::consume_until(
        &kafka.brokers(),
        topic,
        LINGER,
        |v| v.to_vec(),
        |read| read.iter().map(|(_, v)| count(v)).sum::<usize>() >= events,
    )
}

fn spans_in(value: &[u8]) -> usize {
    let request = ExportTraceServiceRequest::decode(value).unwrap();
    let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
    scopes.map(|s| s.spans.len()).sum()
}

fn logs_in(value: &[u8]) -> usize {
    let request = ExportLogsServiceRequest::decode(value).unwrap();
    let scopes = request.resource_logs.iter().flat_map(|r| &r.scope_logs);
    scopes.map(|s| s.log_records.len()).sum()
}

fn metrics_in(value: &[u8]) -> usize {
    let request = ExportMetricsServiceRequest::decode(value).unwrap();
    let scopes = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics);
    scopes.map(|s| s.metrics.len()).sum()
}

/// Checks the headers of a record of `lane`: inlet's metadata for the token `token_id`.
fn assert_headers(place: &Place, lane: &str, token_id: &str) {
    let h = &place.headers;
    assert_eq!(h.get("inlet-kind").map(String::as_str), Some(lane), "{h:?}");
    assert_eq!(h.get("inlet-token-id").map(String::as_str), Some(token_id));
    assert_eq!(h.get("inlet-project-id").map(String::as_str), Some(PROJECT));
    assert_eq!(h.get("inlet-account-id").map(String::as_str), Some(ACCOUNT));
    let at: i64 = h["inlet-received-at-ms"].parse().unwrap();
    assert!(at > 1_700_000_000_000, "{at}");
    assert!(h["inlet-schema"].starts_with("opentelemetry.proto.collector."));
}

/// A gateway under `delivery` whose OTLP topics exist.
async fn otlp_gateway(test: &str, delivery: Delivery) -> (Kafka, Gateway) {
    let kafka = Kafka::start(test).await;
    let otlp = otlp_topics(&kafka.topics);
    create_topics(&kafka.brokers(), &otlp.each_ref().map(String::as_str)).await;
    let spool = common::gateway::temp_dir("otlp-spool");
    let gateway = Gateway::start(&kafka.brokers(), &kafka.topics, |s| {
        s.delivery = Some(delivery);
        if delivery == Delivery::Spool {
            s.spool_dir = Some(spool);
        }
    })
    .await;
    gateway.wait_ready().await;
    (kafka, gateway)
}

/// Checks that the spans that landed on `topic` are exactly those of the traces requests in
/// `printed`, each once, field by field under its resource and scope, keyed by its trace.
fn assert_spans_landed(
    kafka: &Kafka,
    topic: &str,
    token_id: &str,
    printed: &[Value],
) -> Vec<(Place, Vec<u8>)> {
    let sent: Vec<ExportTraceServiceRequest> = sent_bodies(printed, "/v1/traces")
        .iter()
        .map(|body| ExportTraceServiceRequest::decode(&body[..]).expect("what the SDK sent"))
        .collect();
    let mut by_id = HashMap::new();
    for request in &sent {
        for resource in &request.resource_spans {
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    let id = (span.trace_id.clone(), span.span_id.clone());
                    assert!(
                        by_id.insert(id, (resource, scope, span)).is_none(),
                        "sent twice"
                    );
                }
            }
        }
    }
    assert_eq!(
        by_id.len(),
        lines(printed, "span").len(),
        "the requests hold every span"
    );
    let landed = read_back(kafka, topic, by_id.len(), spans_in);
    let mut seen = HashMap::new();
    let mut keys_of_trace: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for (place, value) in &landed {
        assert_headers(place, "traces", token_id);
        let request = ExportTraceServiceRequest::decode(&value[..]).unwrap();
        for resource in &request.resource_spans {
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    assert_eq!(place.key, hex::encode(&span.trace_id), "keyed by its trace");
                    let key = keys_of_trace
                        .entry(span.trace_id.clone())
                        .or_insert(place.key.clone());
                    assert_eq!(*key, place.key);
                    let id = (span.trace_id.clone(), span.span_id.clone());
                    let (sent_resource, sent_scope, sent_span) = by_id
                        .get(&id)
                        .unwrap_or_else(|| panic!("a span never sent: {span:?}"));
                    assert_eq!(span, *sent_span, "the span as sent");
                    assert_eq!(resource.resource, sent_resource.resource);
                    assert_eq!(resource.schema_url, sent_resource.schema_url);
                    assert_eq!(scope.scope, sent_scope.scope);
                    assert_eq!(scope.schema_url, sent_scope.schema_url);
                    *seen.entry(id).or_insert(0) += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), by_id.len(), "every span landed");
    assert!(seen.values().all(|n| *n == 1), "a span landed twice");
    // The printed spans (what the SDK made) are the ones that landed.
    for span in lines(printed, "span") {
        let trace = hex::decode(span["trace_id"].as_str().unwrap()).unwrap();
        let id = hex::decode(span["span_id"].as_str().unwrap()).unwrap();
        assert!(seen.contains_key(&(trace, id)), "{span}");
    }
    landed
}

/// `values` (records of `signal`) decoded by `tests/sdk/otlp_decode.py`, with the official
/// messages of Google's protobuf runtime, as a Collector's receiver decodes them: the items of
/// each record.
fn decoded_elsewhere(signal: &str, values: &[(Place, Vec<u8>)]) -> Vec<Vec<Value>> {
    let dir = common::gateway::temp_dir("otlp-records");
    let files: Vec<PathBuf> = (values.iter().enumerate())
        .map(|(i, (_, value))| {
            let file = dir.join(format!("{i:05}"));
            std::fs::write(&file, value).unwrap();
            file
        })
        .collect();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/otlp_decode.py"))
        .arg(signal)
        .args(&files)
        .env("PYTHONPATH", sdk_root().join("python"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout.lines())
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            line["items"].as_array().unwrap().clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_s_traces_logs_and_metrics_land_once_each_as_a_collector_reads_them() {
    let (kafka, gateway) = otlp_gateway("otlp-python", Delivery::Ack).await;
    let headers = format!("authorization=Bearer%20{OTEL}");
    let printed =
        tokio::task::block_in_place(|| run_sdk(false, &gateway, &headers, &["all", "200"]));
    let [spans, logs, metrics] = otlp_topics(&kafka.topics);

    let landed_spans = assert_spans_landed(&kafka, &spans, "otel", &printed);
    // The same records decoded by another implementation of the same messages: each record's
    // spans, all of its key's trace.
    let elsewhere = decoded_elsewhere("traces", &landed_spans);
    assert_eq!(elsewhere.len(), landed_spans.len());
    let mut ids = std::collections::BTreeSet::new();
    for ((place, _), spans) in landed_spans.iter().zip(&elsewhere) {
        for span in spans {
            assert_eq!(span["trace_id"].as_str(), Some(place.key.as_str()));
            assert!(ids.insert(span["span_id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(ids.len(), 200);

    // Log records: each once, under its resource and scope as sent, keyed by the resource.
    let sent: Vec<ExportLogsServiceRequest> = sent_bodies(&printed, "/v1/logs")
        .iter()
        .map(|body| ExportLogsServiceRequest::decode(&body[..]).unwrap())
        .collect();
    let mut by_body = HashMap::new();
    for request in &sent {
        for resource in &request.resource_logs {
            for scope in &resource.scope_logs {
                for record in &scope.log_records {
                    let body = format!("{:?}", record.body);
                    assert!(by_body.insert(body, (resource, scope, record)).is_none());
                }
            }
        }
    }
    assert_eq!(by_body.len(), 200);
    let landed = read_back(&kafka, &logs, 200, logs_in);
    let mut seen = HashMap::new();
    let keys: std::collections::BTreeSet<_> = landed.iter().map(|(p, _)| p.key.clone()).collect();
    assert_eq!(
        keys.len(),
        1,
        "one process, one resource, one key: {keys:?}"
    );
    let key = keys.first().unwrap();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    for (place, value) in &landed {
        assert_headers(place, "logs", "otel");
        let request = ExportLogsServiceRequest::decode(&value[..]).unwrap();
        for resource in &request.resource_logs {
            for scope in &resource.scope_logs {
                for record in &scope.log_records {
                    let body = format!("{:?}", record.body);
                    let (sent_resource, sent_scope, sent_record) = by_body[&body];
                    assert_eq!(record, sent_record);
                    assert_eq!(resource.resource, sent_resource.resource);
                    assert_eq!(scope.scope, sent_scope.scope);
                    *seen.entry(body).or_insert(0) += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|n| *n == 1), "a log record landed twice");
    let elsewhere = decoded_elsewhere("logs", &landed);
    assert_eq!(elsewhere.iter().map(Vec::len).sum::<usize>(), 200);
    let traced = by_body
        .values()
        .filter(|(_, _, r)| !r.trace_id.is_empty())
        .count();
    assert!(traced > 0, "records made inside a span carry its trace id");

    // Metrics: each metric as sent, with every data point, once.
    let sent: Vec<ExportMetricsServiceRequest> = sent_bodies(&printed, "/v1/metrics")
        .iter()
        .map(|body| ExportMetricsServiceRequest::decode(&body[..]).unwrap())
        .collect();
    let sent_metrics: Vec<_> = sent
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect();
    let landed = read_back(&kafka, &metrics, sent_metrics.len(), metrics_in);
    let mut landed_metrics = Vec::new();
    for (place, value) in &landed {
        assert_headers(place, "metrics", "otel");
        assert_eq!(
            &place.key, key,
            "the same resource as the logs, the same key"
        );
        let request = ExportMetricsServiceRequest::decode(&value[..]).unwrap();
        for resource in request.resource_metrics {
            for scope in resource.scope_metrics {
                landed_metrics.extend(scope.metrics);
            }
        }
    }
    assert_eq!(landed_metrics.len(), sent_metrics.len());
    let elsewhere = decoded_elsewhere("metrics", &landed);
    let names: Vec<&str> = elsewhere
        .iter()
        .flatten()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), sent_metrics.len(), "{names:?}");
    for metric in sent_metrics {
        let found = landed_metrics.iter().filter(|m| *m == metric).count();
        assert_eq!(found, 1, "{} landed {found} times", metric.name);
    }
    let points = lines(&printed, "point").len();
    assert!(points >= 6, "{points} data points made");
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_json_exporter_s_spans_land_once_each_keyed_by_trace() {
    let (kafka, gateway) = otlp_gateway("otlp-node", Delivery::Ack).await;
    let printed = tokio::task::block_in_place(|| {
        run_sdk(
            true,
            &gateway,
            &format!("x-inlet-token={OTEL}"),
            &["traces", "150"],
        )
    });
    let requests = lines(&printed, "request");
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r["content_type"]
        .as_str()
        .is_some_and(|t| t.starts_with("application/json"))));
    let spans = lines(&printed, "span");
    assert_eq!(spans.len(), 150);
    // What the exporter sent, as JSON: each span's fields to compare with what landed.
    let mut sent = HashMap::new();
    for body in sent_bodies(&printed, "/v1/traces") {
        let body: Value = serde_json::from_slice(&body).unwrap();
        for resource in body["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    let id = (
                        span["traceId"].as_str().unwrap().to_owned(),
                        span["spanId"].as_str().unwrap().to_owned(),
                    );
                    sent.insert(id, span.clone());
                }
            }
        }
    }
    assert_eq!(sent.len(), 150);
    let [topic, _, _] = otlp_topics(&kafka.topics);
    let landed = read_back(&kafka, &topic, 150, spans_in);
    let mut seen = HashMap::new();
    for (place, value) in &landed {
        assert_headers(place, "traces", "otel");
        let request = ExportTraceServiceRequest::decode(&value[..]).unwrap();
        for resource in &request.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .find(|a| a.key == "service.name");
            assert!(service.is_some(), "the resource as sent");
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    let id = (hex::encode(&span.trace_id), hex::encode(&span.span_id));
                    assert_eq!(place.key, id.0);
                    let json = &sent[&id];
                    assert_eq!(span.name, json["name"].as_str().unwrap());
                    assert_eq!(i64::from(span.kind), json["kind"].as_i64().unwrap());
                    let start = &json["startTimeUnixNano"];
                    let start = start
                        .as_str()
                        .map(|s| s.parse().unwrap())
                        .or(start.as_u64())
                        .unwrap();
                    assert_eq!(span.start_time_unix_nano, start);
                    let parent = json["parentSpanId"].as_str().unwrap_or("");
                    assert_eq!(hex::encode(&span.parent_span_id), parent);
                    let attributes = json["attributes"].as_array().map_or(0, Vec::len);
                    assert_eq!(span.attributes.len(), attributes);
                    *seen.entry(id).or_insert(0) += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), 150);
    assert!(seen.values().all(|n| *n == 1), "a span landed twice");
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_spool_the_python_sdk_s_spans_land_with_their_headers() {
    let (kafka, gateway) = otlp_gateway("otlp-spool", Delivery::Spool).await;
    let printed = tokio::task::block_in_place(|| {
        run_sdk(
            false,
            &gateway,
            &format!("x-inlet-token={OTEL}"),
            &["traces", "120"],
        )
    });
    let [spans, _, _] = otlp_topics(&kafka.topics);
    assert_spans_landed(&kafka, &spans, "otel", &printed);
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_token_makes_the_python_exporter_wait_for_retry_after() {
    let (kafka, gateway) = otlp_gateway("otlp-limit", Delivery::Ack).await;
    let headers = format!("x-inlet-token={OTEL_TIGHT}");
    // 20 spans take the whole burst; the second run's 20 are refused 429 with a Retry-After
    // of about 4 s (5 spans a second), which the exporter waits before it sends them again.
    let first =
        tokio::task::block_in_place(|| run_sdk(false, &gateway, &headers, &["traces", "20"]));
    let second =
        tokio::task::block_in_place(|| run_sdk(false, &gateway, &headers, &["traces", "20"]));
    let attempts: Vec<(u64, f64)> = lines(&second, "request")
        .iter()
        .map(|r| (r["status"].as_u64().unwrap(), r["at"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        [429, 200],
        "{attempts:?}"
    );
    // The exporter's own backoff would have waited about a second (1 s ± 20%).
    let waited = attempts[1].1 - attempts[0].1;
    assert!(waited >= 3.0, "the retry came {waited:.2} s after the 429");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("inlet_events_total")
            && l.contains("outcome=\"rate_limited\"")
            && l.contains("kind=\"traces\"")),
        "{metrics}"
    );
    let [spans, _, _] = otlp_topics(&kafka.topics);
    let mut printed = first;
    printed.extend(second);
    assert_spans_landed(&kafka, &spans, "otel-tight", &printed);
    gateway.stop().await.unwrap();
}

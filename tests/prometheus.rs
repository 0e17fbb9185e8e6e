//! A real Prometheus server (Debian's `prometheus`, its own process) scrapes inlet's admin
//! listener while the test sends known traffic; the counters it scraped must match the traffic.
//! Alone in its test binary, so the process-wide metrics count this test's traffic only.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::gateway::{temp_dir, Gateway, Kafka, SDK, TIGHT};
use serde_json::{json, Value};

fn prometheus_bin() -> PathBuf {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("Prometheus is not installed: run `apt-get update && apt-get install -y prometheus` (tests/run.sh does)")
        })
}

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (host:port) every second.
    fn start(target: &str) -> Prometheus {
        let dir = temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: inlet\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The value of an instant query that returns one series (None while it returns none).
    async fn value(&self, query: &str) -> Option<f64> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
        let result = body["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query} returned several series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` equals `expected` (Prometheus scrapes every second), then returns it.
    async fn wait_for(&self, query: &str, expected: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.value(query).await;
            if v == Some(expected) || Instant::now() > deadline {
                return v.unwrap_or(f64::NAN);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_counters_that_match_the_traffic() {
    let kafka = Kafka::start("prom").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let prometheus = Prometheus::start(gw.admin.trim_start_matches("http://"));
    assert_eq!(
        prometheus.wait_for("up{job=\"inlet\"}", 1.0).await,
        1.0,
        "Prometheus scrapes inlet"
    );

    let three = json!([{"session_id": "p", "event": "a"}, {"session_id": "p", "event": "b"}, {"session_id": "p", "event": "c"}]).to_string();
    for _ in 0..7 {
        assert_eq!(
            gw.post("/v1/beacons", SDK, three.clone(), &[]).await.status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            gw.post(
                "/v1/beacons",
                SDK,
                json!({"session_id": "p"}).to_string(),
                &[]
            )
            .await
            .status,
            400
        );
    }
    for _ in 0..3 {
        assert_eq!(
            gw.post("/v1/beacons", "nope", three.clone(), &[])
                .await
                .status,
            401
        );
    }
    let one = json!({"session_id": "p", "event": "a"}).to_string();
    for _ in 0..5 {
        assert_eq!(
            gw.post("/v1/beacons", TIGHT, one.clone(), &[]).await.status,
            200
        );
    }
    assert_eq!(
        gw.post("/v1/beacons", TIGHT, one.clone(), &[]).await.status,
        429
    );
    let occurrence = json!({"level": "error", "message": "m"}).to_string();
    for _ in 0..4 {
        assert_eq!(
            gw.post("/v1/occurrences", SDK, occurrence.clone(), &[])
                .await
                .status,
            200
        );
    }

    let checks: [(&str, f64); 10] = [
        (
            r#"inlet_http_requests_total{route="/v1/beacons",status="200"}"#,
            12.0,
        ),
        (
            r#"inlet_http_requests_total{route="/v1/beacons",status="400"}"#,
            2.0,
        ),
        (
            r#"inlet_http_requests_total{route="/v1/beacons",status="401"}"#,
            3.0,
        ),
        (
            r#"inlet_http_requests_total{route="/v1/beacons",status="429"}"#,
            1.0,
        ),
        (
            r#"inlet_http_requests_total{route="/v1/occurrences",status="200"}"#,
            4.0,
        ),
        (
            r#"inlet_events_total{kind="beacon",outcome="accepted"}"#,
            26.0,
        ),
        (
            r#"inlet_events_total{kind="beacon",outcome="invalid"}"#,
            2.0,
        ),
        (
            r#"inlet_events_total{kind="occurrence",outcome="accepted"}"#,
            4.0,
        ),
        (r#"inlet_rate_limited_requests_total{token="tight"}"#, 1.0),
        (r#"inlet_auth_failures_total{reason="unknown"}"#, 3.0),
    ];
    for (query, expected) in checks {
        let got = prometheus.wait_for(query, expected).await;
        println!("{query} = {got}");
        assert_eq!(got, expected, "{query}");
    }
    // Histograms and librdkafka's statistics arrive too.
    let produced = prometheus
        .wait_for("inlet_kafka_produce_latency_seconds_count", 30.0)
        .await;
    assert_eq!(produced, 30.0, "one produce latency per accepted event");
    let requests = prometheus
        .wait_for(
            r#"sum(inlet_http_request_duration_seconds_count{route=~"/v1/.*"})"#,
            22.0,
        )
        .await;
    assert_eq!(requests, 22.0);
    let queue_max = prometheus
        .wait_for("inlet_kafka_queue_max_messages", 100_000.0)
        .await;
    assert_eq!(queue_max, 100_000.0, "librdkafka statistics are exported");
    assert_eq!(prometheus.wait_for("inlet_kafka_ready", 1.0).await, 1.0);
}

//! A real browser against inlet: headless Chromium (Debian's `chromium`) opens a page served by
//! this test on one origin; the page sends beacons to inlet on another origin with
//! `navigator.sendBeacon` (token in the query string), with `fetch` (JSON, an `Authorization`
//! header, so a CORS preflight, and `keepalive`) and with an image pixel, then posts what it saw
//! back to the page server. Every beacon from the allowed origin must land in Kafka; the same
//! requests with a token whose `allowed_origins` lacks the page's origin are answered 403
//! without CORS headers, so Chromium refuses the fetch (a `TypeError` and a CORS console error)
//! and nothing of them reaches Kafka.
//!
//! Chromium: `$CHROMIUM_BIN`, else `/usr/bin/chromium` (`apt-get install -y chromium`;
//! `tests/run.sh` installs it when missing).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gateway::{temp_dir, tokens_toml, Gateway, Kafka, SDK, WEB};
use inlet::proto::envelope::Event;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The tests of this file run one at a time: inlet's metrics are one recorder per process,
/// shared by every gateway a test binary starts, and one test counts the 403s inlet answered
/// on `/v1/beacons` while another provokes some (waiting for a token to be loaded).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_INSTALL: &str = "apt-get install -y chromium";
/// Secret of the token this test adds: beacons, only from the page's origin.
const PAGE_TOKEN: &str = "page-secret";
const SESSION: &str = "browser-session-1";
/// How long the page may take to report, Chromium's start included.
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

/// The client event ids the page sends; the first three must land, the others never.
const SENT_BEACON: &str = "b-send-beacon";
const FETCH_KEEPALIVE: &str = "b-fetch-keepalive";
const PIXEL: &str = "b-pixel";
const REFUSED_BEACON: &str = "b-refused-send-beacon";
const REFUSED_FETCH: &str = "b-refused-fetch";
const REFUSED_PIXEL: &str = "b-refused-pixel";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_beacons_across_origins_and_cors_refuses_a_foreign_origin() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let chromium = chromium_bin();
    let kafka = Kafka::start("browser").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;

    // The page's server: its own port, so its origin differs from inlet's.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    assert_ne!(page_origin, gw.url, "page and inlet share an origin");
    add_page_token(&gw, &page_origin).await;
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let html = Arc::new(page(&gw.url));
    let server = tokio::spawn(serve_page(listener, html, report_tx));

    let preflights_before = requests_total(&gw, "/v1/beacons", 204).await;
    let refused_before = (
        requests_total(&gw, "/v1/beacons", 403).await,
        requests_total(&gw, "/v1/pixel.gif", 403).await,
    );
    let browser = Chromium::start(&chromium, &format!("{page_origin}/"));
    let report = match tokio::time::timeout(REPORT_TIMEOUT, reports.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!(
            "the page did not report within {REPORT_TIMEOUT:?}; Chromium's log: {}\n{}",
            browser.log.display(),
            browser.log_tail()
        ),
    };
    let report: Value = serde_json::from_str(&report).expect("the report is JSON");
    println!(
        "page {page_origin} -> inlet {} reported:\n{report:#}",
        gw.url
    );

    // What the page saw.
    assert_eq!(report["origin"], page_origin.as_str());
    assert_eq!(report["beacon"], true, "sendBeacon queued the beacon");
    assert_eq!(report["beacon_refused"], true, "sendBeacon cannot tell");
    assert_eq!(
        report["fetch"],
        json!({"status": 200, "body": {"accepted": 1}}),
        "the keepalive fetch passed its preflight and its answer was readable"
    );
    let refused = report["fetch_refused"]["error"].as_str().unwrap_or("");
    assert!(
        refused.starts_with("TypeError"),
        "the fetch from a refused origin must fail CORS: {report}"
    );
    assert_eq!(report["pixel"], "load");
    assert_eq!(report["pixel_refused"], "error", "a 403 is no image");

    // What Chromium said about the refused fetch: its CORS check, not a network error.
    let blocked = format!(
        "Access to fetch at '{}/v1/beacons' from origin '{page_origin}' has been blocked by CORS policy",
        gw.url
    );
    let console = browser.wait_for_log(&blocked, Duration::from_secs(5)).await;
    let console = console
        .unwrap_or_else(|| panic!("Chromium's log lacks {blocked:?}:\n{}", browser.log_tail()));
    println!("Chromium's console: {console}");
    assert!(
        console.contains("No 'Access-Control-Allow-Origin' header is present"),
        "{console}"
    );

    // Chromium preflighted the fetch (`Authorization` is not a simple header); the refused
    // fetch may reuse the cached answer.
    let preflights = requests_total(&gw, "/v1/beacons", 204).await - preflights_before;
    assert!(preflights >= 1, "no preflight reached inlet");

    // inlet itself answered the refused requests 403 (the sendBeacon and the fetch, the pixel).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused_now = (
            requests_total(&gw, "/v1/beacons", 403).await - refused_before.0,
            requests_total(&gw, "/v1/pixel.gif", 403).await - refused_before.1,
        );
        if refused_now == (2, 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inlet answered (beacons, pixel) 403s: {refused_now:?}, expected (2, 1)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kafka holds exactly the three allowed beacons, with what the browser sent.
    let landed = kafka.beacons(3, Duration::from_millis(1500)).await;
    drop(browser);
    let mut by_id = BTreeMap::new();
    for c in &landed {
        let Some(Event::Beacon(b)) = &c.envelope.event else {
            panic!("not a beacon: {c:?}");
        };
        assert_eq!(c.key, SESSION);
        assert_eq!(b.session_id, SESSION);
        assert_eq!(c.envelope.token_id, "page");
        assert_eq!(
            c.envelope.user_agent, report["ua"],
            "the browser's User-Agent"
        );
        let previous = by_id.insert(c.envelope.event_id.clone(), b.clone());
        assert!(previous.is_none(), "{} landed twice", c.envelope.event_id);
    }
    let ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
    let mut allowed = [SENT_BEACON, FETCH_KEEPALIVE, PIXEL];
    allowed.sort();
    assert_eq!(ids, allowed, "{landed:#?}");
    for (id, event, via) in [
        (SENT_BEACON, "page_hide", "sendBeacon"),
        (FETCH_KEEPALIVE, "click", "fetch"),
        (PIXEL, "view", "pixel"),
    ] {
        let b = &by_id[id];
        assert_eq!(b.event, event, "{id}");
        assert_eq!(b.props_json, json!({"via": via}).to_string(), "{id}");
        assert!(b.client_ts_ms > 0, "{id}");
    }
    assert_eq!(by_id[SENT_BEACON].url, format!("{page_origin}/"));

    server.abort();
    assert!(gw.stop().await.is_ok());
}

/// rollbar.js's browser build (from its npm package, installed by tests/sdk/install.sh),
/// unmodified but for its `endpoint`, on a page of another origin: an error the page throws and
/// nobody catches is reported by Rollbar's global handler through a CORS preflight (its key is
/// a header) and lands in Kafka once, as an occurrence with Rollbar's own uuid (issue #13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbar_js_in_chromium_reports_an_uncaught_error() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let chromium = chromium_bin();
    let rollbar_js = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/sdk/node/node_modules/rollbar/dist/rollbar.umd.min.js");
    let rollbar_js = std::fs::read_to_string(&rollbar_js)
        .unwrap_or_else(|e| panic!("{}: {e}: run tests/sdk/install.sh", rollbar_js.display()));
    let kafka = Kafka::start("browser-rollbar").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let html = Arc::new(rollbar_page(&gw.url, &rollbar_js));
    let server = tokio::spawn(serve_page(listener, html, report_tx));
    let browser = Chromium::start(&chromium, &format!("{page_origin}/"));
    let report = match tokio::time::timeout(REPORT_TIMEOUT, reports.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!(
            "the page did not report within {REPORT_TIMEOUT:?}; Chromium's log:\n{}",
            browser.log_tail()
        ),
    };
    let report: Value = serde_json::from_str(&report).expect("the report is JSON");
    let uuid = report["uuid"]
        .as_str()
        .unwrap_or_else(|| panic!("no uuid: {report}"));

    let landed = kafka.occurrences(1, Duration::from_secs(1)).await;
    assert_eq!(landed.len(), 1, "{landed:?}");
    let one = &landed[0];
    assert_eq!(one.envelope.event_id, uuid);
    assert_eq!(one.envelope.source, "rollbar");
    assert_eq!(one.key, common::gateway::ACCOUNT);
    let Some(Event::Occurrence(o)) = &one.envelope.event else {
        panic!("not an occurrence: {one:?}");
    };
    assert_eq!(o.level, inlet::proto::Level::Error as i32);
    assert_eq!(o.environment, "staging");
    assert_eq!(o.platform, "browser");
    let e = o.exception.as_ref().expect("an exception");
    assert_eq!(e.class, "TypeError");
    assert_eq!(e.message, "cannot parse not a number in the browser");
    assert!(
        e.frames
            .iter()
            .any(|f| f.method == "parse" && f.lineno > 0 && f.filename.starts_with(&page_origin)),
        "{e:?}"
    );
    server.abort();
    assert!(gw.stop().await.is_ok());
}

/// A page that loads rollbar.js, throws an uncaught `TypeError` three calls deep, and once
/// Rollbar has made its item posts Rollbar's uuid for it to `/report` (the test then waits for
/// the occurrence in Kafka).
fn rollbar_page(inlet: &str, rollbar_js: &str) -> String {
    let config = json!({
        "accessToken": SDK,
        "endpoint": format!("{inlet}/api/1/item/"),
        "environment": "staging",
        "captureUncaught": true,
    });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rollbar.js against inlet</title>
<script>{rollbar_js}</script></head>
<body><script>
let sent = null;
const rollbar = new window.rollbar(Object.assign({config}, {{transform: data => {{ sent = data.uuid; }}}}));
function deepFailure() {{
  function parse(value) {{ throw new TypeError("cannot parse " + value); }}
  function load(value) {{ return parse(value); }}
  return load("not a number in the browser");
}}
setTimeout(deepFailure, 0);
const waitForRollbar = setInterval(() => {{
  if (sent === null) return;
  clearInterval(waitForRollbar);
  fetch("/report", {{method: "POST", body: JSON.stringify({{uuid: sent}})}});
}}, 50);
</script></body></html>
"#
    )
}

/// The Chromium binary, or a failure that says how to install it.
fn chromium_bin() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| CHROMIUM.into()));
    assert!(
        path.is_file(),
        "Chromium not found at {}: install it with `{CHROMIUM_INSTALL}` \
         (tests/run.sh does), or point CHROMIUM_BIN at it",
        path.display()
    );
    path
}

/// Adds the token `page` (beacons, `allowed_origins` = the page's origin) to the registry and
/// waits until inlet knows it: a preflight naming it from a foreign origin is then refused.
async fn add_page_token(gw: &Gateway, page_origin: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for attempt in 0.. {
        // Rewritten with a new comment each round, in case a write raced the watcher's start.
        let registry = format!(
            "{}\n# attempt {attempt}\n[[token]]\nid = \"page\"\ntoken = \"{PAGE_TOKEN}\"\n\
             project_id = \"proj-browser\"\naccount_id = \"acct-browser\"\nkinds = [\"beacon\"]\n\
             rate_per_sec = 1000\nburst = 1000\nallowed_origins = [\"{page_origin}\"]\n",
            tokens_toml()
        );
        std::fs::write(&gw.tokens_file, registry).unwrap();
        let round = Instant::now() + Duration::from_secs(3);
        while Instant::now() < round {
            let r = gw
                .http
                .request(
                    reqwest::Method::OPTIONS,
                    format!("{}/v1/beacons?token={PAGE_TOKEN}", gw.url),
                )
                .header("origin", "https://elsewhere.example")
                .header("access-control-request-method", "POST")
                .send()
                .await
                .expect("preflight");
            if r.status() == 403 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            Instant::now() < deadline,
            "inlet never loaded the page token from {}",
            gw.tokens_file.display()
        );
    }
}

/// `inlet_http_requests_total` for one route and status (0 before the first such request).
async fn requests_total(gw: &Gateway, route: &str, status: u16) -> u64 {
    let text = gw.metrics().await;
    let (route, status) = (format!("route=\"{route}\""), format!("status=\"{status}\""));
    text.lines()
        .filter(|l| l.starts_with("inlet_http_requests_total{"))
        .filter(|l| l.contains(&route) && l.contains(&status))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The page: sends the six beacons one after the other, then posts what it saw to `/report`.
fn page(inlet: &str) -> String {
    let config = json!({
        "inlet": inlet,
        "token": PAGE_TOKEN,
        "refused_token": WEB,
        "session": SESSION,
    });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>inlet browser test</title></head>
<body><p id="status">running</p>
<script>
const C = {config};
function beacon(id, event, via) {{
  return JSON.stringify({{session_id: C.session, event: event, id: id, url: location.href,
                         ts: Date.now(), props: {{via: via}}}});
}}
function sendBeacon(token, id) {{
  return navigator.sendBeacon(C.inlet + "/v1/beacons?token=" + encodeURIComponent(token),
                              beacon(id, "page_hide", "sendBeacon"));
}}
async function post(token, id, keepalive) {{
  try {{
    const r = await fetch(C.inlet + "/v1/beacons", {{
      method: "POST", keepalive: keepalive,
      headers: {{"Authorization": "Bearer " + token, "Content-Type": "application/json"}},
      body: beacon(id, "click", "fetch"),
    }});
    return {{status: r.status, body: await r.json()}};
  }} catch (e) {{
    return {{error: e.name + ": " + e.message}};
  }}
}}
function pixel(token, id) {{
  return new Promise(resolve => {{
    const img = new Image();
    img.onload = () => resolve("load");
    img.onerror = () => resolve("error");
    img.src = C.inlet + "/v1/pixel.gif?" + new URLSearchParams({{
      token: token, session_id: C.session, event: "view", id: id,
      props: JSON.stringify({{via: "pixel"}}), ts: String(Date.now()), _: String(Math.random()),
    }});
  }});
}}
(async () => {{
  const report = {{origin: location.origin, ua: navigator.userAgent}};
  report.beacon = sendBeacon(C.token, "{SENT_BEACON}");
  report.beacon_refused = sendBeacon(C.refused_token, "{REFUSED_BEACON}");
  report.fetch = await post(C.token, "{FETCH_KEEPALIVE}", true);
  report.fetch_refused = await post(C.refused_token, "{REFUSED_FETCH}", false);
  report.pixel = await pixel(C.token, "{PIXEL}");
  report.pixel_refused = await pixel(C.refused_token, "{REFUSED_PIXEL}");
  document.getElementById("status").textContent = JSON.stringify(report);
  await fetch("/report", {{method: "POST", body: JSON.stringify(report)}});
}})();
</script></body></html>
"#
    )
}

/// Serves `GET /` (the page) and `POST /report` (sent on to `reports`), one request per
/// connection.
async fn serve_page(
    listener: TcpListener,
    html: Arc<String>,
    reports: mpsc::UnboundedSender<String>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (html, reports) = (html.clone(), reports.clone());
        tokio::spawn(async move {
            let _ = answer(stream, &html, &reports).await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    html: &str,
    reports: &mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, path) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (status, content_type, body) = match (method, path) {
        ("GET", "/") => ("200 OK", "text/html; charset=utf-8", html.as_bytes()),
        ("POST", "/report") => {
            let report = &buf[head_end..head_end + length];
            let _ = reports.send(String::from_utf8_lossy(report).into_owned());
            ("204 No Content", "text/plain", &b""[..])
        }
        _ => ("404 Not Found", "text/plain", &b"not found"[..]),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

/// Headless Chromium showing one page, in its own process group (so its helper processes go
/// with it), with a fresh profile; killed on drop.
struct Chromium {
    child: Child,
    dir: PathBuf,
    /// Chromium's stderr, console messages included.
    log: PathBuf,
}

impl Chromium {
    fn start(bin: &Path, url: &str) -> Chromium {
        use std::os::unix::process::CommandExt;
        let dir = temp_dir("chromium");
        let log = dir.join("chromium.log");
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-quic",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install it with `{CHROMIUM_INSTALL}`)",
                    bin.display()
                )
            });
        Chromium { child, dir, log }
    }

    /// The first line of Chromium's log containing `needle`, waiting up to `wait` for it.
    async fn wait_for_log(&self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of Chromium's log, without its D-Bus complaints.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group: the browser and the renderer, GPU and utility processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// posthog-js (its npm package's `dist/array.js`, as the snippet loads it) in Chromium, with
/// `api_host` pointing at inlet: it fetches its remote configuration from inlet, captures a
/// page view, a custom event and, when the page is hidden, a page leave, and sends them as it
/// does to PostHog (gzip bodies with no `Content-Encoding`, then `sendBeacon`). Each must land
/// in Kafka exactly once, mapped, and posthog-js must log no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_js_in_chromium_delivers_its_events_exactly_once() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let chromium = chromium_bin();
    let posthog_js = posthog_js();
    let kafka = Kafka::start("posthog_js").await;
    let gw = Gateway::start(&kafka.brokers(), &kafka.topics, |_| {}).await;
    gw.wait_ready().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", listener.local_addr().unwrap());
    add_page_token(&gw, &page_origin).await;
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let html = Arc::new(posthog_page(&gw.url, &posthog_js));
    let server = tokio::spawn(serve_page(listener, html, report_tx));

    let browser = Chromium::start(&chromium, &format!("{page_origin}/"));
    let report = match tokio::time::timeout(REPORT_TIMEOUT, reports.recv()).await {
        Ok(Some(r)) => r,
        _ => panic!(
            "the page did not report within {REPORT_TIMEOUT:?}; Chromium's log:\n{}",
            browser.log_tail()
        ),
    };
    let report: Value = serde_json::from_str(&report).expect("the report is JSON");
    println!("posthog-js reported:\n{report:#}");
    assert_eq!(report["errors"], json!([]), "posthog-js logged errors");
    let seen: Vec<(String, String)> = serde_json::from_value(report["seen"].clone()).unwrap();
    let mut names: Vec<&str> = seen.iter().map(|(event, _)| event.as_str()).collect();
    names.sort();
    assert_eq!(names, ["$pageleave", "$pageview", "checkout_started"]);
    let session = report["session_id"].as_str().unwrap();
    let distinct_id = report["distinct_id"].as_str().unwrap();

    let landed = kafka.beacons(seen.len(), Duration::from_millis(1500)).await;
    drop(browser);
    assert_eq!(landed.len(), seen.len(), "{landed:#?}");
    let mut by_id = BTreeMap::new();
    for c in &landed {
        let Some(Event::Beacon(b)) = &c.envelope.event else {
            panic!("not a beacon: {c:?}");
        };
        assert_eq!(c.envelope.source, "posthog");
        assert_eq!(c.envelope.token_id, "page");
        assert_eq!((c.key.as_str(), b.session_id.as_str()), (session, session));
        assert_eq!(b.user_id, distinct_id);
        assert_eq!(b.url, format!("{page_origin}/"));
        assert!(!b.props_json.contains(PAGE_TOKEN), "the key is not kept");
        let previous = by_id.insert(c.envelope.event_id.clone(), b.event.clone());
        assert!(previous.is_none(), "{} landed twice", c.envelope.event_id);
    }
    for (event, uuid) in &seen {
        assert_eq!(by_id.get(uuid), Some(event), "{event} {uuid}: {by_id:?}");
    }
    let config_loads = requests_total(&gw, "/array/{token}/config.js", 200).await;
    assert!(
        config_loads >= 1,
        "posthog-js never asked inlet for its configuration"
    );
    server.abort();
    assert!(gw.stop().await.is_ok());
}

/// posthog-js's `dist/array.js` from the SDKs `tests/sdk/install.sh` installs.
fn posthog_js() -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target.join("sdk/node/node_modules/posthog-js/dist/array.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: run tests/sdk/install.sh", path.display()))
}

/// The page: posthog-js inline (its text holds no `</script`), initialised against `inlet`;
/// it records every console error and each event posthog-js sends (`before_send`), captures a
/// custom event, hides the page (posthog-js then captures `$pageleave` and sends what it holds
/// with `sendBeacon`), and reports.
fn posthog_page(inlet: &str, posthog_js: &str) -> String {
    assert!(
        !posthog_js.contains("</script"),
        "posthog-js cannot be inlined"
    );
    let config = json!({"inlet": inlet, "token": PAGE_TOKEN});
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout</title></head>
<body><p id="status">running</p>
<script>
const errors = [];
const consoleError = console.error;
console.error = (...args) => {{ errors.push(args.map(String).join(" ")); consoleError(...args); }};
window.addEventListener("error", (e) => errors.push("uncaught: " + e.message));
</script>
<script>{posthog_js}</script>
<script>
const C = {config};
const seen = [];
posthog.init(C.token, {{
  api_host: C.inlet,
  opt_out_useragent_filter: true,
  before_send: (event) => {{ seen.push([event.event, event.uuid]); return event; }},
}});
posthog.capture("checkout_started", {{cart: 3}});
setTimeout(async () => {{
  window.dispatchEvent(new PageTransitionEvent("pagehide"));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const report = {{seen, errors, distinct_id: posthog.get_distinct_id(),
                  session_id: posthog.get_session_id()}};
  document.getElementById("status").textContent = JSON.stringify(report);
  await fetch("/report", {{method: "POST", body: JSON.stringify(report)}});
}}, 1500);
</script></body></html>
"#
    )
}

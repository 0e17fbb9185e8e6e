//! Kafka as production runs it (issue #24): the inlet binary producing over TLS, mutual TLS,
//! SASL/SCRAM (SHA-256 and SHA-512) and SASL over TLS to a real broker, Tansu with
//! `--authentication` behind Debian's haproxy (tests/common/secure.rs), each read back with
//! the same credentials; the secrets appear in no log and no metric; and each failure an
//! operator can meet (a wrong password, an unknown CA, a missing client certificate) is said
//! once with its cause, counted, turns `/readyz` 503 and is never answered 2xx under `ack`.

mod common;

use std::time::Duration;

use common::broker::{Broker, Options};
use common::gateway::{create_topics, landed, temp_dir, topics, SDK};
use common::process::InletProcess;
use common::secure::{add_user, behind_tls, Certs, Haproxy, Tls};
use serde_json::json;

/// A broker address with the client properties that reach it (see `gateway::client_config`).
fn with(address: &str, properties: &[(&str, &str)]) -> String {
    let extra: Vec<String> = properties
        .iter()
        .map(|(k, v)| format!("|{k}={v}"))
        .collect();
    format!("{address}{}", extra.concat())
}

/// Creates this run's topics through `brokers` (properties included), starts inlet against
/// `address` with `env`, sends a beacon, and reads it back through `brokers`: the event
/// landed, with the credentials of `env`.
async fn produce_and_read_back(
    test: &str,
    address: &str,
    brokers: &str,
    env: &[(&str, &str)],
) -> InletProcess {
    let topics = topics(test);
    create_topics(brokers, &[&topics.0, &topics.1]).await;
    let inlet = InletProcess::start(address, &topics, env);
    inlet.wait_ready().await;
    let id = format!("{test}-1");
    let status = post_beacon(&inlet, test, Some(&id)).await;
    assert_eq!(status, 200, "{test}: {}", inlet.log());
    let read = landed(brokers, &topics.0, 1, Duration::from_millis(200)).await;
    assert_eq!(read.len(), 1, "{test}");
    assert_eq!(read[0].envelope.event_id, id);
    inlet
}

/// POSTs one beacon of `session` (with event id `id`, if any) to `inlet`: the answer's status.
async fn post_beacon(inlet: &InletProcess, session: &str, id: Option<&str>) -> reqwest::StatusCode {
    let beacon = json!({"session_id": session, "event": "e", "id": id}).to_string();
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/beacons", inlet.url))
        .bearer_auth(SDK)
        .header("content-type", "application/json")
        .body(beacon)
        .send()
        .await
        .unwrap();
    answer.status()
}

/// Fails if `secret` is in `inlet`'s log or metrics.
async fn assert_never_shown(inlet: &InletProcess, secret: &str) {
    assert!(!inlet.log().contains(secret), "the secret is in the log");
    assert!(
        !inlet.metrics().await.contains(secret),
        "the secret is on /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_plaintext_and_over_tls_produce_and_read_back_with_the_same_credentials() {
    let certs = Certs::make();
    let storage = temp_dir("scram");
    // Users live in the SQLite storage the authenticating brokers share; they are made through
    // a broker that does not ask for them.
    let open = Broker::start_with(Some(&storage), Options::default());
    let (pw256, pw512) = ("p256-Hunter2-secret", "p512-Hunter2-secret");
    add_user(&open, "scram256", "inlet256", pw256);
    add_user(&open, "scram512", "inlet512", pw512);
    let plain = Broker::start_with(
        Some(&storage),
        Options {
            authentication: true,
            ..Options::default()
        },
    );
    let (tls_port, behind) = behind_tls(Some(&storage), true);
    let _proxy = Haproxy::start(&certs, &[(tls_port, Tls::Server, behind.port())]);

    // SASL_PLAINTEXT, SCRAM-SHA-256, the password given directly.
    let client256 = [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "inlet256"),
        ("sasl.password", pw256),
    ];
    let inlet = produce_and_read_back(
        "scram256",
        &plain.bootstrap(),
        &with(&plain.bootstrap(), &client256),
        &[
            ("INLET_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("INLET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("INLET_KAFKA_SASL_USERNAME", "inlet256"),
            ("INLET_KAFKA_SASL_PASSWORD", pw256),
        ],
    )
    .await;
    assert_never_shown(&inlet, pw256).await;

    // SASL_SSL, SCRAM-SHA-512, the password from a file (a mounted secret), TLS by haproxy.
    let file = storage.join("kafka-password");
    std::fs::write(&file, format!("{pw512}\n")).unwrap();
    let address = format!("127.0.0.1:{tls_port}");
    let ca = certs.path("ca.pem");
    let client512 = [
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "inlet512"),
        ("sasl.password", pw512),
    ];
    let file = file.display().to_string();
    let inlet = produce_and_read_back(
        "scram512",
        &address,
        &with(&address, &client512),
        &[
            ("INLET_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("INLET_KAFKA_SSL_CA_LOCATION", &ca),
            ("INLET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("INLET_KAFKA_SASL_USERNAME", "inlet512"),
            ("INLET_KAFKA_SASL_PASSWORD_FILE", &file),
        ],
    )
    .await;
    assert_never_shown(&inlet, pw512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_produce_and_read_back() {
    let certs = Certs::make();
    let (tls_port, tls_broker) = behind_tls(None, false);
    let (mtls_port, mtls_broker) = behind_tls(None, false);
    let _proxy = Haproxy::start(
        &certs,
        &[
            (tls_port, Tls::Server, tls_broker.port()),
            (mtls_port, Tls::Mutual, mtls_broker.port()),
        ],
    );
    let ca = certs.path("ca.pem");
    let address = format!("127.0.0.1:{tls_port}");
    let tls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
    ];
    produce_and_read_back(
        "tls",
        &address,
        &with(&address, &tls),
        &[
            ("INLET_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("INLET_KAFKA_SSL_CA_LOCATION", &ca),
        ],
    )
    .await;

    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    let address = format!("127.0.0.1:{mtls_port}");
    let mtls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
    ];
    produce_and_read_back(
        "mtls",
        &address,
        &with(&address, &mtls),
        &[
            ("INLET_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("INLET_KAFKA_SSL_CA_LOCATION", &ca),
            ("INLET_KAFKA_SSL_CERTIFICATE_LOCATION", &cert),
            ("INLET_KAFKA_SSL_KEY_LOCATION", &key),
        ],
    )
    .await;
}

/// Starts inlet against `address` with `env` and checks what an operator meets: the failure's
/// cause counted and said once with its advice, `/readyz` 503, and a beacon not answered 2xx.
async fn assert_failure_said(address: &str, env: &[(&str, &str)], cause: &str, advice: &str) {
    let topics = topics(cause);
    let mut env = env.to_vec();
    env.push(("INLET_DELIVERY_TIMEOUT_MS", "1000"));
    let inlet = InletProcess::start(address, &topics, &env);
    let label = format!("cause=\"{cause}\"");
    let errors = "inlet_kafka_connection_errors_total";
    inlet.wait_for_metric(errors, &label, 1.0).await;
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", inlet.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "{cause}");
    let status = post_beacon(&inlet, "s", None).await;
    assert!(!status.is_success(), "{cause}: answered {status}");
    let log = inlet.log();
    let said = log.matches(advice).count();
    assert_eq!(said, 1, "{cause}: said {said} times:\n{log}");
}

/// Under `spool`, an event accepted (202) while `wrong` settings keep inlet from Kafka is
/// delivered once inlet restarts with the `right` ones (the spool kept it): read back through
/// `brokers`.
async fn spooled_then_delivered(
    test: &str,
    address: &str,
    brokers: &str,
    wrong: &[(&str, &str)],
    right: &[(&str, &str)],
) {
    let topics = topics(test);
    create_topics(brokers, &[&topics.0, &topics.1]).await;
    let spool = temp_dir("spool-fixed").display().to_string();
    let start = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend([
            ("INLET_DELIVERY", "spool"),
            ("INLET_SPOOL_DIR", spool.as_str()),
            // What Kafka does not take within the grace stays in the spool: no need to wait.
            ("INLET_SHUTDOWN_GRACE_MS", "500"),
        ]);
        InletProcess::start(address, &topics, &env)
    };
    let mut inlet = start(wrong);
    let id = format!("{test}-spooled");
    let status = post_beacon(&inlet, test, Some(&id)).await;
    assert_eq!(status, 202, "{test}: accepted into the spool");
    inlet.signal("TERM");
    inlet.wait(Duration::from_secs(60));
    let fixed = start(right);
    let read = landed(brokers, &topics.0, 1, Duration::from_millis(200)).await;
    assert_eq!(
        read.len(),
        1,
        "{test}: delivered after the restart:\n{}",
        fixed.log()
    );
    assert_eq!(read[0].envelope.event_id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_an_unknown_ca_and_a_missing_client_certificate_are_each_said_once() {
    let certs = Certs::make();
    let storage = temp_dir("scram-wrong");
    let open = Broker::start_with(Some(&storage), Options::default());
    add_user(&open, "scram256", "inlet", "the-right-one");
    let locked = Broker::start_with(
        Some(&storage),
        Options {
            authentication: true,
            ..Options::default()
        },
    );
    let (rogue_port, rogue_broker) = behind_tls(None, false);
    let (mtls_port, mtls_broker) = behind_tls(None, false);
    let _proxy = Haproxy::start(
        &certs,
        &[
            (rogue_port, Tls::Rogue, rogue_broker.port()),
            (mtls_port, Tls::Mutual, mtls_broker.port()),
        ],
    );
    assert_failure_said(
        &locked.bootstrap(),
        &[
            ("INLET_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("INLET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("INLET_KAFKA_SASL_USERNAME", "inlet"),
            ("INLET_KAFKA_SASL_PASSWORD", "a-wrong-one"),
        ],
        "authentication",
        "Kafka refused inlet's SASL credentials",
    )
    .await;
    let ca = certs.path("ca.pem");
    let tls = [
        ("INLET_KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("INLET_KAFKA_SSL_CA_LOCATION", ca.as_str()),
    ];
    assert_failure_said(
        &format!("127.0.0.1:{rogue_port}"),
        &tls,
        "broker_certificate",
        "inlet cannot verify the broker's TLS certificate",
    )
    .await;
    assert_failure_said(
        &format!("127.0.0.1:{mtls_port}"),
        &tls,
        "client_certificate",
        "the broker wants a client certificate",
    )
    .await;

    // Under `spool` each is accepted meanwhile and delivered once fixed and restarted.
    let sasl = |password: &'static str| {
        vec![
            ("INLET_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("INLET_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("INLET_KAFKA_SASL_USERNAME", "inlet"),
            ("INLET_KAFKA_SASL_PASSWORD", password),
        ]
    };
    let reader = [
        ("security.protocol", "sasl_plaintext"),
        ("sasl.mechanisms", "SCRAM-SHA-256"),
        ("sasl.username", "inlet"),
        ("sasl.password", "the-right-one"),
    ];
    let address = locked.bootstrap();
    let brokers = with(&address, &reader);
    spooled_then_delivered(
        "spool-password",
        &address,
        &brokers,
        &sasl("a-wrong-one"),
        &sasl("the-right-one"),
    )
    .await;
    // The client certificate missing, then given.
    let (cert, key) = (certs.path("client.crt"), certs.path("client.key"));
    let address = format!("127.0.0.1:{mtls_port}");
    let mtls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.certificate.location", cert.as_str()),
        ("ssl.key.location", key.as_str()),
    ];
    let mut right = tls.to_vec();
    right.extend([
        ("INLET_KAFKA_SSL_CERTIFICATE_LOCATION", cert.as_str()),
        ("INLET_KAFKA_SSL_KEY_LOCATION", key.as_str()),
    ]);
    spooled_then_delivered(
        "spool-client-cert",
        &address,
        &with(&address, &mtls),
        &tls,
        &right,
    )
    .await;
    // The CA unknown (the rogue one given), then the right one.
    let (tls_port, tls_broker) = behind_tls(None, false);
    let _tls_proxy = Haproxy::start(&certs, &[(tls_port, Tls::Server, tls_broker.port())]);
    let address = format!("127.0.0.1:{tls_port}");
    let rogue = certs.path("rogue-ca.pem");
    let wrong = [
        ("INLET_KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("INLET_KAFKA_SSL_CA_LOCATION", rogue.as_str()),
    ];
    let reader = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca.as_str()),
    ];
    spooled_then_delivered("spool-ca", &address, &with(&address, &reader), &wrong, &tls).await;
}

//! Why inlet cannot reach Kafka, as an operator can act on it: librdkafka's client errors
//! sorted into a few causes (a password, a certificate authority, a client certificate, the
//! network), each logged once when it starts (not at every reconnection, every second),
//! counted in `inlet_kafka_connection_errors_total{cause}`, and cleared when a broker answers.

use std::sync::atomic::{AtomicU8, Ordering};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::metrics;

/// Why the producer cannot talk to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cause {
    /// SASL refused the credentials.
    Authentication = 1,
    /// TLS could not verify the broker's certificate (an unknown CA, a wrong host name).
    BrokerCertificate = 2,
    /// The broker's TLS end wants a client certificate inlet did not give, or refused it.
    ClientCertificate = 3,
    /// Another TLS failure (TLS spoken to a plaintext port, or the reverse).
    Tls = 4,
    /// No broker answers (refused, unresolvable, timed out).
    Unreachable = 5,
}

impl Cause {
    /// The `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Authentication => "authentication",
            Cause::BrokerCertificate => "broker_certificate",
            Cause::ClientCertificate => "client_certificate",
            Cause::Tls => "tls",
            Cause::Unreachable => "unreachable",
        }
    }

    /// What an operator should check.
    pub fn advice(self) -> &'static str {
        match self {
            Cause::Authentication => {
                "Kafka refused inlet's SASL credentials: check kafka_sasl_mechanism, kafka_sasl_username and the password"
            }
            Cause::BrokerCertificate => {
                "inlet cannot verify the broker's TLS certificate: check kafka_ssl_ca_location (the CA that signed it) and the broker's host name"
            }
            Cause::ClientCertificate => {
                "the broker wants a client certificate inlet did not give, or refused it: check kafka_ssl_certificate_location and kafka_ssl_key_location"
            }
            Cause::Tls => {
                "the TLS handshake with the broker failed: check kafka_security_protocol against the broker's listener"
            }
            Cause::Unreachable => {
                "no Kafka broker answers: check kafka_brokers and the network"
            }
        }
    }

    fn from_u8(n: u8) -> Option<Cause> {
        [
            Cause::Authentication,
            Cause::BrokerCertificate,
            Cause::ClientCertificate,
            Cause::Tls,
            Cause::Unreachable,
        ]
        .into_iter()
        .find(|c| *c as u8 == n)
    }
}

/// The cause of a client error, if it is one of connecting at all.
pub fn cause(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Cause> {
    let reason = reason.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| reason.contains(w));
    if code == Some(RDKafkaErrorCode::Authentication) || has(&["sasl authentication error"]) {
        return Some(Cause::Authentication);
    }
    if has(&[
        "certificate verify failed",
        "unable to get local issuer",
        "self-signed certificate",
        "self signed certificate",
    ]) {
        return Some(Cause::BrokerCertificate);
    }
    if has(&[
        "certificate required",
        "alert handshake failure",
        "alert bad certificate",
        "unknown ca",
        "peer did not return a certificate",
    ]) {
        return Some(Cause::ClientCertificate);
    }
    if has(&[
        "ssl handshake failed",
        "wrong version number",
        "ssl routines",
    ]) {
        return Some(Cause::Tls);
    }
    match code {
        Some(
            RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve,
        ) => Some(Cause::Unreachable),
        _ if has(&["connection refused", "failed to resolve", "timed out"]) => {
            Some(Cause::Unreachable)
        }
        _ => None,
    }
}

/// The cause last logged, so each is logged once while it lasts.
#[derive(Debug, Default)]
pub struct Watch {
    logged: AtomicU8,
}

impl Watch {
    /// A client error: counted under its cause, logged (once while that cause lasts) with what
    /// to check. Returns whether it was one of connecting.
    pub fn error(&self, error: &KafkaError, reason: &str) -> bool {
        let Some(cause) = cause(error.rdkafka_error_code(), reason) else {
            return false;
        };
        ::metrics::counter!(metrics::KAFKA_CONNECTION_ERRORS, "cause" => cause.as_str())
            .increment(1);
        // "All brokers down" follows every other failure: it does not replace a more precise
        // cause already said, only a more precise cause replaces it.
        if cause == Cause::Unreachable && self.logged.load(Ordering::Acquire) != 0 {
            return true;
        }
        let before = self.logged.swap(cause as u8, Ordering::AcqRel);
        if before != cause as u8 {
            tracing::error!(cause = cause.as_str(), %error, reason, "{}", cause.advice());
        }
        true
    }

    /// A broker answered: the next failure is news again.
    pub fn connected(&self) {
        let before = self.logged.swap(0, Ordering::AcqRel);
        if let Some(cause) = Cause::from_u8(before) {
            tracing::info!(was = cause.as_str(), "Kafka connection restored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once_and_all_brokers_down_does_not_replace_a_precise_one() {
        let watch = Watch::default();
        let error = KafkaError::ClientCreation("x".into());
        let said = |watch: &Watch| Cause::from_u8(watch.logged.load(Ordering::Acquire));
        assert!(watch.error(&error, "SASL authentication error: invalid-proof"));
        assert_eq!(said(&watch), Some(Cause::Authentication));
        assert!(watch.error(&error, "1/1 brokers are down: Connection refused"));
        assert_eq!(
            said(&watch),
            Some(Cause::Authentication),
            "still the precise cause"
        );
        watch.connected();
        assert_eq!(said(&watch), None);
        assert!(watch.error(&error, "Connect failed: Connection refused"));
        assert_eq!(said(&watch), Some(Cause::Unreachable));
        assert!(watch.error(&error, "SSL handshake failed: certificate verify failed"));
        assert_eq!(
            said(&watch),
            Some(Cause::BrokerCertificate),
            "a precise cause replaces it"
        );
        assert!(!watch.error(&error, "Message size too large"));
    }

    #[test]
    fn librdkafka_s_errors_are_sorted_into_what_an_operator_can_act_on() {
        let cases = [
            (Some(RDKafkaErrorCode::Authentication), "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256", Some(Cause::Authentication)),
            (Some(RDKafkaErrorCode::BrokerTransportFailure), "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 5ms in state SSL_HANDSHAKE)", Some(Cause::BrokerCertificate)),
            (Some(RDKafkaErrorCode::BrokerTransportFailure), "ssl://127.0.0.1:9094/bootstrap: SSL handshake failed: error:0A00045C:SSL routines::tlsv13 alert certificate required", Some(Cause::ClientCertificate)),
            (Some(RDKafkaErrorCode::BrokerTransportFailure), "ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::wrong version number", Some(Cause::Tls)),
            (Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down", Some(Cause::Unreachable)),
            (Some(RDKafkaErrorCode::BrokerTransportFailure), "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused", Some(Cause::Unreachable)),
            (Some(RDKafkaErrorCode::MessageSizeTooLarge), "too large", None),
        ];
        for (code, reason, expected) in cases {
            assert_eq!(cause(code, reason), expected, "{reason}");
        }
    }
}

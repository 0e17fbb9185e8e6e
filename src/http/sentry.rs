//! Sentry's endpoints, `POST /api/{project}/envelope/` and `POST /api/{project}/store/`, for
//! `sentry-sdk`, `@sentry/node` and `@sentry/browser` pointed at inlet by their DSN
//! (`http://KEY@inlet:8080/PROJECT`). The key is the DSN's public key, from `X-Sentry-Auth`
//! (sentry-python) or `?sentry_key=` (the JavaScript SDKs); the project in the path is not
//! read: the token says which project the events are for.
//!
//! Answers as Sentry does: 200 `{"id": EVENT_ID}` (32 hex digits); errors `{"detail": M,
//! "code": C}` with inlet's status; a rate limit as 429 with `Retry-After` and
//! `X-Sentry-Rate-Limits: SECS::organization`, which the SDKs obey for every category.

use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;
use uuid::Uuid;

use super::adapter::{Limits, Protocol, Translation};
use super::sdk::{self, header_value};
use crate::error::ApiError;
use crate::event::Source;
use crate::lane::Lane;
use crate::pipeline::Answer;
use crate::sdk::report::Report;
use crate::sdk::{sentry, Items};

/// Sentry's endpoints: an envelope, or one event as older SDKs `/store/` it.
#[derive(Debug, Clone, Copy)]
pub enum Sentry {
    /// `POST /api/{project}/envelope/`: its `event` items become occurrences; its other items
    /// are counted and answered as accepted.
    Envelope,
    /// `POST /api/{project}/store/`: one event.
    Store,
}

impl Protocol for Sentry {
    type Head = ();
    /// The id to answer: the first event's, else the envelope's.
    type Receipt = Option<Uuid>;

    fn lane(self) -> Lane {
        Lane::OCCURRENCE
    }

    fn key(self, parts: &Parts) -> Option<String> {
        sentry_key(parts)
    }

    fn head(self, _: &Parts) -> Result<(), ApiError> {
        Ok(())
    }

    fn translate(
        self,
        _: (),
        body: Bytes,
        limits: Limits,
    ) -> Result<Translation<Option<Uuid>>, ApiError> {
        let (reports, envelope_id, items) = match self {
            Sentry::Envelope => {
                let envelope = sentry::envelope(&body).map_err(ApiError::MalformedBody)?;
                let reports = (envelope.events.iter().enumerate())
                    .map(|(index, raw)| {
                        sdk::check_event_size(limits, index, raw.len())?;
                        Ok(sentry::event(raw, envelope.event_id))
                    })
                    .collect::<Result<Vec<Report>, ApiError>>()?;
                let mut items = Items::default();
                envelope.item_types.iter().for_each(|kind| items.add(kind));
                (reports, envelope.event_id, items)
            }
            Sentry::Store => {
                sdk::check_event_size(limits, 0, body.len())?;
                (vec![sentry::event(&body, None)], None, Items::one("event"))
            }
        };
        let id = reports.first().map(|r| r.id).or(envelope_id);
        Ok(Translation {
            batch: sdk::reports(Source::Sentry, reports),
            key: None,
            items,
            receipt: id,
        })
    }

    /// Sentry's answer: 200 `{"id": "<32 hex>"}`, or the error in Sentry's shape.
    fn reply(self, outcome: Result<(Answer, Option<Uuid>), ApiError>) -> Response {
        match outcome {
            Ok((_, id)) => sdk::success(
                StatusCode::OK,
                json!({ "id": id.map(|id| id.simple().to_string()) }),
            ),
            Err(error) => error_answer(error),
        }
    }
}

/// The DSN's public key: `sentry_key` of `X-Sentry-Auth: Sentry sentry_key=K, ...`, else of
/// the query string.
fn sentry_key(parts: &Parts) -> Option<String> {
    let from_header = header_value(&parts.headers, "x-sentry-auth").and_then(|auth| {
        let fields = auth
            .strip_prefix("Sentry ")
            .or_else(|| auth.strip_prefix("sentry "))?;
        fields.split(',').find_map(|field| {
            let (name, value) = field.trim().split_once('=')?;
            (name.trim() == "sentry_key").then(|| value.trim().to_owned())
        })
    });
    from_header.or_else(|| {
        let query = parts.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "sentry_key")
            .map(|(_, value)| value.into_owned())
    })
}

/// An error as Sentry answers one, with the rate limit header the SDKs obey on a 429.
fn error_answer(error: ApiError) -> Response {
    let limited = sdk::rate_limited_secs(&error);
    let mut response = sdk::error_answer(
        error,
        |_, code, message| json!({"detail": message, "code": code}),
    );
    if let Some(secs) = limited {
        sdk::set_header(
            &mut response,
            "x-sentry-rate-limits",
            format!("{secs}::organization"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use serde_json::Value;

    use crate::http::public_router;
    use crate::http::testing::send;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    const EXCEPTION: &[u8] =
        include_bytes!("../../tests/sdk/payloads/sentry/python-exception.envelope");

    fn post(uri: &str, auth: Option<&str>, body: &[u8]) -> Request<Body> {
        let mut request =
            Request::post(uri).header(header::CONTENT_TYPE, "application/x-sentry-envelope");
        if let Some(auth) = auth {
            request = request.header("x-sentry-auth", auth);
        }
        request.body(Body::from(body.to_vec())).unwrap()
    }

    #[tokio::test]
    async fn an_envelope_is_answered_with_its_event_id_and_produced_once() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let auth = format!("Sentry sentry_key={SECRET}, sentry_version=7, sentry_client=x/1");
        let (status, _, body) =
            send(&router, post("/api/42/envelope/", Some(&auth), EXCEPTION)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], "7bc7b823935a4609849b520f1d57f41c");
        let records = sink.records();
        assert_eq!(records.len(), 1);
        // The key in the query string, on the path without its trailing slash, and /store/.
        let uri = format!("/api/42/envelope?sentry_key={SECRET}&sentry_version=7");
        let (status, _, _) = send(&router, post(&uri, None, EXCEPTION)).await;
        assert_eq!(status, StatusCode::OK);
        let event = EXCEPTION.split(|b| *b == b'\n').nth(2).unwrap();
        let uri = format!("/api/42/store/?sentry_key={SECRET}");
        let (status, _, body) = send(&router, post(&uri, None, event)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sink.records().len(), 3);
    }

    /// A request's path, `X-Sentry-Auth` and body, and the status and code of its answer.
    type Case<'a> = (&'a str, Option<&'a str>, &'a [u8], StatusCode, &'a str);

    #[tokio::test]
    async fn errors_keep_their_status_and_code_in_sentry_shape() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let cases: [Case; 4] = [
            (
                "/api/1/envelope/",
                None,
                EXCEPTION,
                StatusCode::UNAUTHORIZED,
                "missing_token",
            ),
            (
                "/api/1/envelope/",
                Some("Sentry sentry_key=nope"),
                EXCEPTION,
                StatusCode::UNAUTHORIZED,
                "unknown_token",
            ),
            (
                "/api/1/envelope/?sentry_key=",
                Some(&format!("Sentry sentry_key={SECRET}")),
                b"nope\n",
                StatusCode::BAD_REQUEST,
                "malformed_body",
            ),
            (
                "/api/1/store/",
                Some(&format!("Sentry sentry_key={SECRET}")),
                br#"{"level":"error"}"#,
                StatusCode::BAD_REQUEST,
                "missing_field",
            ),
        ];
        for (uri, auth, body, expected, code) in cases {
            let (status, headers, body) = send(&router, post(uri, auth, body)).await;
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, expected, "{uri}: {body}");
            assert_eq!(body["code"], code, "{uri}: {body}");
            assert!(body["detail"].as_str().is_some(), "{uri}: {body}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        }
        assert!(sink.records().is_empty());
    }

    #[tokio::test]
    async fn an_envelope_without_events_is_accepted_and_produces_nothing() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |_| {}));
        let body = b"{}\n{\"type\":\"client_report\"}\n{\"discarded_events\":[]}\n";
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let (status, _, body) = send(&router, post(&uri, None, body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["id"],
            Value::Null
        );
        assert!(sink.records().is_empty());
    }

    /// An envelope of `items` events, each about `size` bytes of JSON.
    fn envelope_of(items: usize, size: usize) -> Vec<u8> {
        let mut body = b"{\"event_id\":\"7bc7b823935a4609849b520f1d57f41c\"}\n".to_vec();
        for i in 0..items {
            let pad = "x".repeat(size);
            let event = format!(
                r#"{{"event_id":"{i:032x}","level":"error","message":"m{i}","extra":{{"pad":"{pad}"}}}}"#
            );
            body.extend_from_slice(
                format!("{{\"type\":\"event\",\"length\":{}}}\n", event.len()).as_bytes(),
            );
            body.extend_from_slice(event.as_bytes());
            body.push(b'\n');
        }
        body
    }

    /// One runtime thread: a 40 MiB envelope is translated on the blocking pool, so a small
    /// request sent after it is answered while it is still being translated (in place, it would
    /// hold the only thread until it was done).
    #[tokio::test(flavor = "current_thread")]
    async fn a_small_request_is_answered_while_a_40_mib_envelope_is_translated() {
        let sink = Arc::new(MemorySink::accepting());
        let router = public_router(state(Arc::clone(&sink), |s| {
            s.occurrences_max_body_bytes = Some(48 << 20);
            s.occurrences_max_decoded_bytes = Some(48 << 20);
        }));
        let big = envelope_of(47, 900_000);
        assert!(big.len() >= 40 << 20);
        let uri = format!("/api/1/envelope/?sentry_key={SECRET}");
        let large = tokio::spawn({
            let (router, request) = (router.clone(), post(&uri, None, &big));
            async move { send(&router, request).await }
        });
        // The large request runs until it waits for the blocking pool.
        tokio::task::yield_now().await;
        let (status, _, _) = send(&router, post(&uri, None, &envelope_of(1, 100))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !large.is_finished(),
            "the small request waited for the large one"
        );
        let (status, _, body) = large.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(sink.records().len(), 48);
    }
}

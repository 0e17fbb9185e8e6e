//! PostHog's capture API (`/e/`, `/i/v0/e/`, `/capture/`, `/batch/`), as `posthog-js`,
//! `posthog-node` and `posthog` (Python) send it, translated into beacons (API.md, "Drop-in
//! endpoints"):
//!
//! - `properties.$session_id`, else the distinct id → `session_id`; the distinct id (the
//!   event's `distinct_id`, else `properties.distinct_id`, where posthog-js puts it) →
//!   `user_id`; `event` → `event`; `uuid` → `id`; `timestamp` → `ts`;
//!   `properties.$current_url` → `url`; `properties.$referrer` → `referrer`;
//!   `properties.title` (posthog-js's page title) → `title`;
//! - `properties` and the rest of the event (`$set`, `$set_once`, `offset`, ...) → `props`
//!   ([`analytics::props`]). The project token is never kept.
//!
//! Every event is kept, `$identify` without a session included (its session is its distinct
//! id). An event that names a token other than the request's key is refused
//! (`token_mismatch`): it belongs to another project.
//!
//! posthog-js encodes its bodies several ways, and does not always say which: [`decode`]
//! finds out from the bytes themselves.

use base64::Engine;
use bytes::Bytes;
use serde_json::value::RawValue;

use serde_json::Value;

use super::analytics::{self, not_an_object, untranslated, Fields, Messages, Object};
use super::report::{self, take_if, take_string, ExceptionValue, FrameFields, Innermost};
use super::report::{Occurrence, Report, Rest};
use super::{Items, Secrets, Translated, Untranslated};
use crate::decode::{decompress, Encoding};
use crate::error::ApiError;
use crate::event::Invalid;

/// Where an event may carry the project key: beside it (one event's body), or as its `token`.
const SECRETS: Secrets = &[&[KEY], &["token"], &["$token"], &["properties", "token"]];

/// The body member that carries the project token.
pub const KEY: &str = "api_key";

/// The first bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How a PostHog body is encoded, beyond its `Content-Encoding` (which the HTTP layer decodes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire<'a> {
    /// The `compression` query parameter (`gzip-js`, `base64`, ...), if any.
    pub compression: Option<&'a str>,
    /// Whether the body is `application/x-www-form-urlencoded` (`data=<base64 JSON>`).
    pub form: bool,
}

/// The JSON text of a PostHog body, whatever posthog-js did to it: gzip (`?compression=gzip-js`,
/// sent as `text/plain`, or with no parameter at all: recognized by its magic bytes, whatever
/// the query says), the form `data=` (base64, or URL-encoded JSON from older clients),
/// `?compression=base64`, or plain JSON. The decoded text is capped at `max_decoded`.
pub fn decode(body: Bytes, wire: Wire<'_>, max_decoded: usize) -> Result<Bytes, ApiError> {
    if body.starts_with(&GZIP_MAGIC) {
        return decompress(Encoding::Gzip, body, max_decoded);
    }
    let base64 = wire.compression == Some("base64");
    let data = if wire.form || body.starts_with(b"data=") {
        form_data(&body)?
    } else if base64 {
        body
    } else {
        return Ok(body);
    };
    let text = data.trim_ascii();
    if text.starts_with(b"{") || text.starts_with(b"[") {
        return Ok(data);
    }
    let decoded = base64_decode(text)?;
    if decoded.starts_with(&GZIP_MAGIC) {
        return decompress(Encoding::Gzip, Bytes::from(decoded), max_decoded);
    }
    if decoded.len() > max_decoded {
        return Err(ApiError::DecodedTooLarge { limit: max_decoded });
    }
    Ok(Bytes::from(decoded))
}

/// Whether decoding `body` may inflate it: gzip (by its magic bytes), or base64 and form
/// bodies, which may hold gzip. Plain JSON decodes to itself.
pub fn may_inflate(body: &[u8], wire: Wire<'_>) -> bool {
    body.starts_with(&GZIP_MAGIC)
        || wire.form
        || wire.compression == Some("base64")
        || body.starts_with(b"data=")
}

/// The `data` field of a form body.
fn form_data(body: &[u8]) -> Result<Bytes, ApiError> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "data")
        .map(|(_, value)| Bytes::from(value.into_owned()))
        .ok_or_else(|| ApiError::MalformedBody("the form body has no `data` field".into()))
}

/// Base64 with or without padding, standard or URL-safe alphabet (both are seen in the wild).
fn base64_decode(text: &[u8]) -> Result<Vec<u8>, ApiError> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    let lenient = general_purpose::GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid base64: {e}")))
}

/// Reads a PostHog body (decoded): `{"api_key", "batch": [...]}`, an array of events, or one
/// event; at most `max_events`. The key is the body's `api_key`, else the first event's
/// `token` or `properties.token`.
pub fn read(body: &[u8], max_events: usize) -> Result<Messages<'_>, ApiError> {
    let mut read = analytics::messages(body, KEY, max_events)?;
    if read.key.is_none() {
        read.key = read
            .messages
            .first()
            .and_then(|raw| Object::parse(raw))
            .and_then(|event| event_token(&event, event.object("properties").as_ref()));
    }
    Ok(read)
}

/// The token an event names itself, if any.
fn event_token(event: &Object<'_>, properties: Option<&Object<'_>>) -> Option<String> {
    event
        .text("token")
        .or_else(|| event.text("$token"))
        .or_else(|| properties.and_then(|p| p.text("token")))
}

/// The event's name: its `event`; a person update without one (`{"$set": ..., "$token",
/// "$distinct_id"}`, which posthog-js before 1.71 posted to `/engage/`) is an `$identify`, as
/// PostHog takes it.
fn event_name(event: &Object<'_>) -> Option<String> {
    event.text("event").or_else(|| {
        (event.contains("$set") || event.contains("$set_once")).then(|| "$identify".to_owned())
    })
}

/// A PostHog body's events, translated: beacons, and its `$exception` events (PostHog's error
/// tracking, from posthog-js, -node and -python) as occurrences, with the same events as
/// beacons for a token that may not send occurrences.
#[derive(Debug, Default)]
pub struct Translation {
    pub beacons: Vec<Result<Translated, Untranslated>>,
    pub exceptions: Vec<Report>,
    pub exceptions_as_beacons: Vec<Result<Translated, Untranslated>>,
}

/// Translates each event in order, refusing those that name a token other than `key` (the
/// body's); adds each to `items`.
/// The items are added in the order of the events produced: the beacons, then the exceptions.
pub fn translate(events: &[&RawValue], key: Option<&str>, items: &mut Items) -> Translation {
    let mut translation = Translation::default();
    let mut exception_items = Items::default();
    for event in events {
        match is_exception(event) {
            true => {
                let beacon = translate_one(event, key, &mut exception_items);
                translation.exceptions.push(exception(event, key));
                translation.exceptions_as_beacons.push(beacon);
            }
            false => translation.beacons.push(translate_one(event, key, items)),
        }
    }
    items.extend(exception_items);
    translation
}

/// A `/s/` body's `$snapshot` events (posthog-js's session recording) as recordings: each
/// session's events (by `properties.$session_id`), in their order, one recording of that
/// session whose data is a JSON array of them as posthog-js wrote them, the token taken out.
/// An event that is no `$snapshot`, names no session, or names a token other than `key` is
/// refused. Each recording is one item (`snapshot`), and each refused event one.
pub fn snapshots(
    events: &[&RawValue],
    key: Option<&str>,
    items: &mut Items,
) -> Vec<Result<Translated, Untranslated>> {
    let mut sessions: Vec<(String, Vec<u8>)> = Vec::new();
    let mut refused = Vec::new();
    for raw in events {
        let session = match snapshot_session(raw, key) {
            Ok(session) => session,
            Err(invalid) => {
                items.add(label(None));
                refused.push(Err(untranslated(invalid, raw, SECRETS)));
                continue;
            }
        };
        let at = match sessions.iter().position(|(s, _)| *s == session) {
            Some(at) => at,
            None => {
                sessions.push((session, b"[".to_vec()));
                sessions.len() - 1
            }
        };
        let data = &mut sessions[at].1;
        if data.len() > 1 {
            data.push(b',');
        }
        data.extend_from_slice(snapshot_without_key(raw.get(), key).as_bytes());
    }
    let mut recordings: Vec<_> = (sessions.into_iter())
        .map(|(session, mut data)| {
            data.push(b']');
            items.add("snapshot");
            let recording = crate::event::recording(
                &session,
                "$snapshot",
                "application/json",
                data,
                String::new(),
            );
            recording
                .map(|event| Translated {
                    event,
                    trimmed: Vec::new(),
                })
                .map_err(|invalid| Untranslated {
                    invalid,
                    raw: session,
                })
        })
        .collect();
    recordings.extend(refused);
    recordings
}

/// A `$snapshot` event without the request's key: its own `token` members, and wherever
/// posthog-js copied it into the recording's custom events (rrweb type 5: `$posthog_config`
/// holds posthog-js's whole configuration, `$remote_config_received` the remote one), any
/// member whose value is the key.
fn snapshot_without_key(raw: &str, key: Option<&str>) -> String {
    let Ok(Value::Object(mut event)) = serde_json::from_str::<Value>(raw) else {
        return raw.to_owned();
    };
    super::remove_secrets(&mut event, SECRETS);
    let custom = (event.get_mut("properties"))
        .and_then(|properties| properties.get_mut("$snapshot_data"))
        .and_then(Value::as_array_mut);
    if let (Some(snapshots), Some(key)) = (custom, key) {
        for snapshot in snapshots.iter_mut().filter(|s| s["type"] == 5) {
            if let Some(data) = snapshot.get_mut("data") {
                remove_value(data, key);
            }
        }
    }
    Value::Object(event).to_string()
}

/// Takes every member whose value is the string `key` out of `value`, at any depth.
fn remove_value(value: &mut Value, key: &str) {
    match value {
        Value::Object(members) => {
            members.retain(|_, member| member.as_str() != Some(key));
            members
                .values_mut()
                .for_each(|member| remove_value(member, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| remove_value(item, key)),
        _ => {}
    }
}

/// The session of a `$snapshot` event, or why it is refused.
fn snapshot_session(raw: &RawValue, key: Option<&str>) -> Result<String, Invalid> {
    let Ok((event, properties)) = Object::parse_apart::<Object>(raw.get(), "properties") else {
        return Err(Invalid::not_an_object());
    };
    if event_name(&event).as_deref() != Some("$snapshot") {
        return Err(Invalid::new(
            "unsupported_message",
            "`/s/` takes `$snapshot` events only",
        ));
    }
    if event_token(&event, properties.as_ref()).is_some_and(|token| Some(token.as_str()) != key) {
        return Err(Invalid::new(
            "token_mismatch",
            "the event's `token` is not the request's key: it belongs to another project",
        ));
    }
    properties
        .and_then(|p| p.text("$session_id"))
        .ok_or_else(|| Invalid::missing("properties.$session_id"))
}

/// Whether `raw` is an `$exception` event, by a look at its text first (most events are not).
fn is_exception(raw: &RawValue) -> bool {
    raw.get().contains("\"$exception\"")
        && Object::parse(raw)
            .and_then(|event| event.text("event"))
            .as_deref()
            == Some("$exception")
}

/// Where a PostHog stack frame keeps inlet's frame fields (Sentry's names).
const FRAME: FrameFields = FrameFields {
    filename: &["filename", "abs_path"],
    lineno: "lineno",
    colno: "colno",
    method: "function",
};

/// An `$exception` event as an occurrence: the first of `properties.$exception_list` (the
/// exception raised; its causes follow it) → `exception`, its frames in Sentry's order (the
/// innermost last); `$exception_level` → `level`; `$exception_fingerprint` → `fingerprint`;
/// `uuid` → its id; `timestamp`; the rest (the other properties, the other exceptions) →
/// `custom`. An event whose token is not `key` is refused, as for beacons.
pub fn exception(raw: &RawValue, key: Option<&str>) -> Report {
    let text = raw.get().as_bytes();
    let members = match report::members(text) {
        Ok(members) => members,
        Err(invalid) => return Report::untranslated(invalid, text, SECRETS),
    };
    let properties = members.object("properties");
    if event_token(&members, properties.as_ref()).is_some_and(|token| Some(token.as_str()) != key) {
        let invalid = Invalid::new(
            "token_mismatch",
            "the event's `token` is not the request's key: it belongs to another project",
        );
        return Report::untranslated(invalid, text, SECRETS);
    }
    let mut rest = Rest::from(members);
    for secret in SECRETS {
        take_string(&mut rest, secret);
    }
    let given = take_string(&mut rest, &["uuid"]);
    let id = report::event_id(given, &mut rest, "uuid");
    let level = match take_string(&mut rest, &["properties", "$exception_level"]).as_deref() {
        Some("fatal" | "critical") => "critical",
        Some("warning" | "warn") => "warning",
        Some("info" | "log") => "info",
        Some("debug") => "debug",
        _ => "error",
    };
    let mut occurrence = Occurrence::new(level);
    let listed = take_if(
        &mut rest,
        &["properties", "$exception_list"],
        Value::is_array,
    );
    let mut listed = match listed {
        Some(Value::Array(listed)) => listed,
        _ => Vec::new(),
    };
    let raised = (!listed.is_empty())
        .then(|| serde_json::from_value::<ExceptionValue>(listed[0].clone()).ok())
        .flatten();
    match raised {
        Some(raised) => {
            listed.remove(0);
            let frames = raised.stacktrace.map(|s| s.frames).unwrap_or_default();
            let class = report::text(raised.class).unwrap_or_else(|| "Error".into());
            occurrence.exception(
                class,
                report::text(raised.value),
                frames,
                &FRAME,
                Innermost::Last,
            );
        }
        None => occurrence.set(
            "message",
            take_string(&mut rest, &["properties", "$exception_message"]),
        ),
    }
    if !listed.is_empty() {
        rest.insert("$exception_causes", Value::Array(listed));
    }
    occurrence.set(
        "fingerprint",
        take_string(&mut rest, &["properties", "$exception_fingerprint"]),
    );
    // A time that is no RFC 3339 stays in `custom`.
    let ts = (rest.get("timestamp").and_then(|t| t.as_str())).and_then(report::rfc3339_to_ms);
    if ts.is_some() {
        rest.remove("timestamp");
    }
    occurrence.timestamp(ts);
    occurrence.finish(id, rest, text, SECRETS)
}

/// The `type` label of an event: PostHog's own events by name, `other` for the rest of
/// PostHog's `$` events, `custom` for the application's.
fn label(event: Option<&str>) -> &'static str {
    match event {
        Some("$pageview") => "pageview",
        Some("$pageleave") => "pageleave",
        Some("$identify") => "identify",
        Some("$autocapture") => "autocapture",
        Some("$exception") => "exception",
        Some(name) if name.starts_with('$') => "other",
        Some(_) => "custom",
        None => "invalid",
    }
}

fn translate_one(
    raw: &RawValue,
    key: Option<&str>,
    items: &mut Items,
) -> Result<Translated, Untranslated> {
    let Ok((mut event, mut properties)) = Object::parse_apart::<Object>(raw.get(), "properties")
    else {
        items.add(label(None));
        return Err(not_an_object(raw));
    };
    let name = event_name(&event);
    items.add(label(name.as_deref()));
    if event_token(&event, properties.as_ref()).is_some_and(|token| Some(token.as_str()) != key) {
        let invalid = Invalid::new(
            "token_mismatch",
            "the event's `token` is not the request's key: it belongs to another project",
        );
        return Err(untranslated(invalid, raw, SECRETS));
    }
    beacon(&mut event, name, properties.as_ref())
        .and_then(|beacon| {
            if let Some(properties) = properties.as_mut() {
                properties.take("token");
            }
            analytics::build(beacon, analytics::props(properties, event)?)
        })
        .map_err(|invalid| untranslated(invalid, raw, SECRETS))
}

/// Takes the beacon's fields out of an event (`name` is its `event`); what is left becomes
/// `props`.
fn beacon(
    event: &mut Object<'_>,
    name: Option<String>,
    properties: Option<&Object<'_>>,
) -> Result<Fields, Invalid> {
    let property = |name: &str| properties.and_then(|p| p.text(name));
    let Some(name) = name else {
        return Err(Invalid::new("missing_field", "`event` is required"));
    };
    let distinct_id = event
        .text("distinct_id")
        .or_else(|| event.text("$distinct_id"))
        .or_else(|| property("distinct_id"));
    let Some(session_id) = property("$session_id").or_else(|| distinct_id.clone()) else {
        return Err(Invalid::new(
            "missing_field",
            "`properties.$session_id` or `distinct_id` is required",
        ));
    };
    let id = event.text("uuid");
    for mapped in [
        "event",
        "distinct_id",
        "$distinct_id",
        "uuid",
        "token",
        "$token",
        KEY,
    ] {
        event.take(mapped);
    }
    Ok(Fields {
        session_id,
        event: name,
        ts: analytics::take_time(event, "timestamp"),
        url: property("$current_url"),
        referrer: property("$referrer"),
        title: property("title"),
        user_id: distinct_id,
        id,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::event::Source;

    use serde_json::{json, Value};

    use super::*;
    use crate::lane::Lane;
    use crate::proto;
    use crate::sdk::recorded;
    fn beacons(body: &[u8]) -> Vec<Result<proto::Beacon, String>> {
        let read = read(body, 1000).unwrap();
        translate(&read.messages, read.key.as_deref(), &mut Items::default())
            .beacons
            .into_iter()
            .map(|t| match t {
                Ok(t) => Ok(t.event.into_beacon()),
                Err(u) => Err(u.invalid.code.to_owned()),
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn every_wire_of_posthog_js_decodes_to_the_same_json() {
        let json = br#"{"api_key":"k","batch":[{"event":"e"}]}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let form = format!(
            "data={}",
            form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>()
        );
        let legacy_form = format!(
            "data={}",
            form_urlencoded::byte_serialize(json).collect::<String>()
        );
        let gzip_js = Wire {
            compression: Some("gzip-js"),
            form: false,
        };
        let base64_query = Wire {
            compression: Some("base64"),
            form: true,
        };
        let form_only = Wire {
            compression: None,
            form: true,
        };
        let cases: [(&str, Vec<u8>, Wire); 6] = [
            ("plain", json.to_vec(), Wire::default()),
            ("gzip-js", gzip(json), gzip_js),
            ("gzip, no parameter", gzip(json), Wire::default()),
            ("base64 form", form.clone().into_bytes(), base64_query),
            ("form without parameter", form.into_bytes(), form_only),
            ("form of JSON", legacy_form.into_bytes(), form_only),
        ];
        for (name, body, wire) in cases {
            let decoded =
                decode(Bytes::from(body), wire, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&decoded[..], json, "{name}");
        }
        let bomb = gzip(&vec![b' '; 10_000]);
        let error = decode(Bytes::from(bomb), Wire::default(), 1000).unwrap_err();
        assert_eq!(error.code(), "decoded_body_too_large");
        let error = decode(Bytes::from("data=%%%"), form_only, 1000).unwrap_err();
        assert_eq!(error.code(), "malformed_body");
    }

    #[test]
    fn posthog_js_events_map_as_the_contract_says() {
        let body = recorded(Source::Posthog, "js-batch.json");
        let beacons = beacons(&body);
        let pageview = beacons
            .iter()
            .flatten()
            .find(|b| b.event == "$pageview")
            .expect("a $pageview");
        assert!(!pageview.session_id.is_empty());
        assert!(pageview.url.starts_with("http"), "{}", pageview.url);
        assert!(pageview.client_ts_ms > 0);
        let props: Value = serde_json::from_str(&pageview.props_json).unwrap();
        assert!(props.get("token").is_none(), "the token is not kept");
        assert!(props.get("$lib").is_some());
    }

    #[test]
    fn the_recorded_posthog_js_batch_translates_to_its_native_twin() {
        let body = recorded(Source::Posthog, "js-batch.json");
        let read = read(&body, 1000).unwrap();
        let translated: Vec<_> =
            translate(&read.messages, read.key.as_deref(), &mut Items::default())
                .beacons
                .into_iter()
                .map(|t| t.unwrap().event)
                .collect();
        let twin = "tests/sdk/payloads/posthog/js-batch.beacons.json";
        crate::sdk::assert_twin(Lane::BEACON, &translated.iter().collect::<Vec<_>>(), twin);
    }

    #[test]
    fn every_recorded_payload_translates_whole() {
        for name in [
            "js-batch.json",
            "python-batch.json",
            "node-batch.json",
            "node-batch.json.gz",
        ] {
            let body = decode(
                Bytes::from(recorded(Source::Posthog, name)),
                Wire::default(),
                1 << 20,
            )
            .unwrap();
            let beacons = beacons(&body);
            assert!(beacons.len() >= 3, "{name}");
            for beacon in beacons {
                let beacon = beacon.unwrap_or_else(|code| panic!("{name}: {code}"));
                assert!(beacon.client_ts_ms > 0, "{name}: {}", beacon.event);
            }
        }
    }

    #[test]
    fn the_python_sdk_batch_maps_as_the_contract_says() {
        let body = recorded(Source::Posthog, "python-batch.json");
        assert_eq!(
            read(&body, 100).unwrap().key.as_deref(),
            Some("posthog-project-key")
        );
        let beacons = beacons(&body);
        let first = beacons[0].as_ref().unwrap();
        assert_eq!(first.event, "signed_up");
        assert_eq!(first.user_id, "user-py-1");
        assert_eq!(first.session_id, "session-py-1");
    }

    #[test]
    fn identify_without_a_session_is_kept_under_its_distinct_id() {
        let body = json!({"api_key": "k", "batch": [
            {"event": "$identify", "distinct_id": "u-1", "$set": {"email": "a@b.example"},
             "uuid": "0190f3c0-0000-7000-8000-000000000001"},
            {"event": "other", "properties": {"token": "another", "distinct_id": "u-2"}},
            {"properties": {"distinct_id": "u"}},
            {"event": "e"},
            {"event": "e", "properties": {"distinct_id": "u-3", "token": "k"},
             "timestamp": "2024-05-01T10:00:00.000Z"},
        ]})
        .to_string();
        let beacons = beacons(body.as_bytes());
        let identify = beacons[0].as_ref().unwrap();
        assert_eq!(
            (identify.session_id.as_str(), identify.event.as_str()),
            ("u-1", "$identify")
        );
        assert_eq!(identify.props_json, r#"{"$set":{"email":"a@b.example"}}"#);
        let codes: Vec<_> = beacons[1..4]
            .iter()
            .map(|b| b.clone().unwrap_err())
            .collect();
        assert_eq!(codes, ["token_mismatch", "missing_field", "missing_field"]);
        let last = beacons[4].as_ref().unwrap();
        assert_eq!(last.client_ts_ms, 1_714_557_600_000);
        assert_eq!(last.props_json, r#"{"distinct_id":"u-3"}"#);
    }

    #[test]
    fn a_refused_event_is_kept_without_any_token() {
        let body = json!({"api_key": "k", "batch": [
            {"event": "e", "token": "other", "properties": {"token": "another"}},
            {"event": "e", "distinct_id": "u".repeat(200), "properties": {"token": "k"}},
        ]})
        .to_string();
        let read = read(body.as_bytes(), 10).unwrap();
        for refused in translate(&read.messages, Some("k"), &mut Items::default()).beacons {
            let raw = refused.unwrap_err().raw;
            assert!(!raw.contains("token") && !raw.contains("other"), "{raw}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_or_trimmed_never_a_crash() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let bodies = [
            format!(r#"{{"api_key":"k","batch":[{{"event":"e","properties":{deep}}}]}}"#),
            format!(r#"[{{"event":"e","distinct_id":"d","properties":{{"a":{deep}}}}}]"#),
            format!(r#"{{"event":"e","distinct_id":"d","x":{deep}}}"#),
        ];
        for body in bodies {
            match read(body.as_bytes(), 10) {
                Err(error) => assert_eq!(error.code(), "malformed_body"),
                // Kept, the nested member left out of `props` and named: never a crash.
                Ok(read) => {
                    let translated = translate(&read.messages, Some("k"), &mut Items::default());
                    for event in translated.beacons {
                        assert!(event.is_err() || !event.unwrap().trimmed.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn the_key_is_the_body_s_else_the_first_event_s() {
        let key = |body: &[u8]| read(body, 10).unwrap().key;
        assert_eq!(
            key(br#"[{"event":"e","properties":{"token":"t"}}]"#).as_deref(),
            Some("t")
        );
        assert_eq!(key(br#"{"event":"e","token":"t2"}"#).as_deref(), Some("t2"));
        assert_eq!(key(br#"{"event":"e"}"#), None);
    }

    #[test]
    fn a_person_update_from_engage_is_an_identify() {
        // posthog-js before 1.71, `people.set` (`/engage/`, a form of base64 JSON).
        let body = br#"{"$set": {"plan": "pro"}, "$token": "k", "$distinct_id": "u1"}"#;
        let read = read(body, 10).unwrap();
        assert_eq!(read.key.as_deref(), Some("k"));
        let translated = translate(&read.messages, Some("k"), &mut Items::default()).beacons;
        let beacon = translated
            .into_iter()
            .next()
            .unwrap()
            .unwrap()
            .event
            .into_beacon();
        assert_eq!(
            (
                beacon.event.as_str(),
                beacon.user_id.as_str(),
                beacon.session_id.as_str()
            ),
            ("$identify", "u1", "u1")
        );
        assert!(beacon.props_json.contains("pro") && !beacon.props_json.contains("\"k\""));
    }
}

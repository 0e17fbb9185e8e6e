//! `GET /v1/pixel.gif`: one beacon in the query string, for image pixels and clients that can
//! only make a GET. Answers a 1x1 transparent GIF once the beacon is accepted.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::ingest::{admit, charge, meta, produce};
use super::AppState;
use crate::auth::Authenticated;
use crate::config::Delivery;
use crate::error::ApiError;
use crate::event::{self, Invalid, Kind};

/// A 1x1 transparent GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Query parameters that are not beacon fields: the token, and `_`, the usual cache buster.
const NOT_FIELDS: [&str; 2] = ["token", "_"];

/// `HEAD /v1/pixel.gif`: 405. The GET ingests a beacon, so a HEAD (which axum would otherwise
/// route to it) must not: link checkers and prefetchers send HEADs nobody meant as events.
pub async fn head() -> Response {
    let mut response = ApiError::MethodNotAllowed.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    response
}

/// `GET /v1/pixel.gif`.
pub async fn pixel(
    State(state): State<AppState>,
    Authenticated { token, client_ip }: Authenticated,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(Kind::Beacon, &state, &token, &headers)?;
    charge(Kind::Beacon, &token, 1)?;
    let beacon =
        fields(query.as_deref().unwrap_or("")).and_then(|map| event::validate(Kind::Beacon, map));
    produce(
        Kind::Beacon,
        &state,
        &token,
        meta(Kind::Beacon, &state, &token, client_ip, &headers),
        vec![beacon],
    )
    .await?;
    let status = match state.config.delivery {
        Delivery::Ack => StatusCode::OK,
        Delivery::Enqueue => StatusCode::ACCEPTED,
    };
    let mut response = (status, GIF).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, max-age=0"),
    );
    Ok(response)
}

/// The beacon's fields from the query string: `ts` as a number when it is all digits, `props`
/// parsed as JSON, everything else a string. A field given twice (`?event=a&event=b`) makes
/// the beacon invalid (`duplicate_field`), as a repeated key in a JSON body does: servers and
/// proxies disagree on which copy wins.
fn fields(query: &str) -> Result<Map<String, Value>, Invalid> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if NOT_FIELDS.contains(&k.as_ref()) {
            continue;
        }
        if map.contains_key(k.as_ref()) {
            return Err(Invalid::duplicate(&k));
        }
        let value = match k.as_ref() {
            "ts" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                serde_json::from_str(&v).map_err(|_| Invalid::bad("ts", "is out of range"))?
            }
            "props" => serde_json::from_str(&v)
                .map_err(|_| Invalid::bad("props", "must be a JSON object"))?,
            _ => Value::String(v.into_owned()),
        };
        map.insert(k.into_owned(), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_fields_become_a_beacon() {
        let map = fields(
            "token=t&_=123&session_id=s%201&event=view&ts=1700000000000&props=%7B%22a%22%3A1%7D",
        )
        .unwrap();
        let v = event::validate(Kind::Beacon, map).unwrap();
        match v.body {
            crate::proto::envelope::Event::Beacon(b) => {
                assert_eq!(b.session_id, "s 1");
                assert_eq!(b.client_ts_ms, 1_700_000_000_000);
                assert_eq!(b.props_json, r#"{"a":1}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_props_name_the_field() {
        let err = fields("props=nope").unwrap_err();
        assert!(err.message.contains("`props`"));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        for query in [
            "session_id=a&session_id=b&event=e",
            "session_id=a&event=e&event=e",
            "session_id=a&event=e&props=%7B%7D&props=%7B%7D",
        ] {
            let err = fields(query).unwrap_err();
            assert_eq!(err.code, "duplicate_field", "{query}");
            assert!(err.message.contains("appears more than once"), "{query}");
        }
        // The token and the cache buster are not fields.
        assert!(fields("token=a&token=b&_=1&_=2&session_id=s&event=e").is_ok());
    }

    #[test]
    fn the_gif_is_a_gif() {
        assert!(GIF.starts_with(b"GIF89a") && GIF.ends_with(b";"));
    }
}

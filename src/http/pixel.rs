//! `GET /v1/pixel.gif`: one beacon in the query string, for image pixels and clients that can
//! only make a GET. Answers a 1x1 transparent GIF once the beacon is accepted.

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::adapter::{Limits, Protocol, Translation};
use super::authenticate::presented_secret;
use crate::batch::Batch;
use crate::config::Delivery;
use crate::error::ApiError;
use crate::lane::Lane;
use crate::pipeline::Answer;

/// A 1x1 transparent GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `HEAD /v1/pixel.gif`: 405. The GET ingests a beacon, so a HEAD (which axum would otherwise
/// route to it) must not: link checkers and prefetchers send HEADs nobody meant as events.
pub async fn head() -> Response {
    let mut response = ApiError::MethodNotAllowed.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    response
}

/// `GET /v1/pixel.gif`: the query string is one beacon (see [`crate::event::beacon::from_query`]).
#[derive(Debug, Clone, Copy)]
pub struct Pixel;

impl Protocol for Pixel {
    /// The query string.
    type Head = String;
    type Receipt = ();

    fn lane(self) -> Lane {
        Lane::BEACON
    }

    fn key(self, parts: &Parts) -> Option<String> {
        presented_secret(parts)
    }

    fn head(self, parts: &Parts) -> Result<String, ApiError> {
        Ok(parts.uri.query().unwrap_or("").to_owned())
    }

    fn has_body(self) -> bool {
        false
    }

    fn translate(self, query: String, _: Bytes, _: Limits) -> Result<Translation<()>, ApiError> {
        Ok(Translation::of(Batch::query(&query), ()))
    }

    fn partial_answers(self) -> bool {
        true
    }

    fn reply(self, outcome: Result<(Answer, ()), ApiError>) -> Response {
        let answer = match outcome {
            Ok((answer, ())) => answer,
            Err(error) => return error.into_response(),
        };
        let status = match answer.delivery {
            Delivery::Ack => StatusCode::OK,
            Delivery::Enqueue | Delivery::Spool => StatusCode::ACCEPTED,
        };
        let mut response = (status, GIF).into_response();
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, max-age=0"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gif_is_a_gif() {
        assert!(GIF.starts_with(b"GIF89a") && GIF.ends_with(b";"));
    }
}

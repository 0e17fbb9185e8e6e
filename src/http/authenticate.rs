//! Authentication at the HTTP edge: where a request carries its token and its page's origin,
//! and the extractor that resolves the token, so handlers only ever see a valid one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::auth::Token;
use crate::error::ApiError;
use crate::metrics;
use crate::pipeline::Client;
use crate::state::AppState;

/// A request's authenticated token and the client's address. Handlers that take it only ever
/// run for a known token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: Arc<Token>,
    /// The client's address (see [`crate::client::client_ip`]), before any truncation.
    pub client_ip: IpAddr,
}

impl Authenticated {
    /// Who sent the request, as the pipeline records it: the address and the `User-Agent`.
    pub fn client(&self, headers: &HeaderMap) -> Client {
        Client {
            ip: self.client_ip,
            user_agent: headers
                .get(header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        }
    }
}

impl Authenticated {
    /// Resolves `secret`, found wherever the endpoint's protocol carries it, to a token: the
    /// one check every endpoint makes, with the same counting and per-address limiting of
    /// failures. `parts` gives the client's address (behind trusted proxies).
    pub fn resolve(
        state: &AppState,
        parts: &Parts,
        secret: Option<String>,
    ) -> Result<Authenticated, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let client_ip = crate::client::client_ip(peer, &parts.headers, &state.edge.trusted_proxies);
        if let Some(wait) = state.auth_failures.blocked(client_ip) {
            ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => "blocked").increment(1);
            return Err(ApiError::TooManyAuthFailures {
                retry_after_secs: wait.as_secs() + 1,
            });
        }
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => "missing").increment(1);
            state.auth_failures.fail(client_ip);
            return Err(ApiError::MissingToken);
        };
        match state.tokens.lookup(&secret) {
            Some(token) => Ok(Authenticated { token, client_ip }),
            None => {
                ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => "unknown").increment(1);
                state.auth_failures.fail(client_ip);
                Err(ApiError::UnknownToken)
            }
        }
    }
}

/// inlet's own endpoints: the token from [`presented_secret`].
impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Authenticated::resolve(state, parts, presented_secret(parts))
    }
}

/// The secret from `Authorization: Bearer`, `X-Inlet-Token`, or the `token` query parameter.
pub fn presented_secret(parts: &Parts) -> Option<String> {
    let header_value = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(auth) = header_value(header::AUTHORIZATION.as_str()) {
        if let Some((scheme, rest)) = auth.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
                return Some(rest.trim().to_owned());
            }
        }
    }
    if let Some(token) = header_value("x-inlet-token") {
        return Some(token.to_owned());
    }
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The page a browser request comes from: its `Origin`, else the scheme and host of its
/// `Referer`; `None` for a request that names neither (a server-side client).
pub fn request_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        return Some(origin.to_owned());
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let (scheme, rest) = referer.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_header_or_query() {
        let cases = [
            (
                "/v1/beacons",
                Some(("authorization", "Bearer abc")),
                Some("abc"),
            ),
            ("/v1/beacons", Some(("x-inlet-token", "def")), Some("def")),
            ("/v1/beacons?a=1&token=g%2Bh", None, Some("g+h")),
            ("/v1/beacons", Some(("authorization", "Basic abc")), None),
            ("/v1/beacons?token=", None, None),
        ];
        for (uri, header, expected) in cases {
            let mut request = axum::http::Request::builder().uri(uri);
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            assert_eq!(
                presented_secret(&parts).as_deref(),
                expected,
                "{uri} {header:?}"
            );
        }
    }

    #[test]
    fn the_origin_comes_from_origin_else_referer() {
        let mut h = HeaderMap::new();
        assert_eq!(request_origin(&h), None);
        h.insert(
            header::REFERER,
            "https://evil.example/page?x".parse().unwrap(),
        );
        assert_eq!(request_origin(&h).as_deref(), Some("https://evil.example"));
        h.insert(header::ORIGIN, "https://www.acme.example".parse().unwrap());
        assert_eq!(
            request_origin(&h).as_deref(),
            Some("https://www.acme.example")
        );
    }
}

//! A request described as data, so tests can hold tables of them, and built the way every test
//! sends one: the token as a bearer, JSON unless the case names another content type.
#![allow(dead_code)]

use reqwest::Method;

/// One HTTP request to inlet's public listener.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query string.
    pub path: String,
    /// Sent as `Authorization: Bearer`; a request without a token gets no default content type.
    pub token: Option<String>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// `POST path` with `token` and `body`.
    pub fn post(path: &str, token: &str, body: impl Into<Vec<u8>>) -> Request {
        Request {
            token: Some(token.to_owned()),
            body: body.into(),
            ..Request::anonymous(Method::POST, path)
        }
    }

    /// `method path` without a token, headers or body.
    pub fn anonymous(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.to_owned(),
            token: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The same request with one more header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// The same request with a body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The request on `http` against `base_url` (`http://host:port`).
    pub fn build(&self, http: &reqwest::Client, base_url: &str) -> reqwest::RequestBuilder {
        let mut req = http.request(self.method.clone(), format!("{base_url}{}", self.path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
            if !self
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
        }
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        req.body(self.body.clone())
    }
}

//! Reading a request body over HTTP: its media type and content encoding from the headers, and
//! the bytes themselves within the cap as sent and a minimum arrival rate. What the bytes mean
//! is `decode`'s business; this module only knows HTTP.
//!
//! A body over its cap gets 413 `body_too_large`, and how that answer is delivered matters.
//! When a handler answers without reading the whole body, hyper reads what has already arrived
//! and then closes the connection (hyper issue #2384): a client that writes its whole body
//! before it reads (Python's urllib, and SDKs built on it) then gets a broken pipe or a reset
//! instead of the 413. So inlet first reads and throws away the rest of an over-cap body, within
//! bounds ([`DISCARD_BYTES`], [`DISCARD_TIME`] and the body's [`MinRate`]), then answers; a body
//! read to its end leaves the connection usable. This is nginx's lingering close, done before
//! the answer rather than after it: so the discarding stays part of the request (its slot under
//! `max_concurrent_requests`, the shutdown's wait for requests in flight) rather than a task of
//! its own, and a client that reads only once it has sent everything loses nothing by it.
//! A client that sent `Expect: 100-continue` has not sent its body yet and is answered at once:
//! hyper sends `100 Continue` only when the body is first polled, so it never does here.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::batch::off_the_runtime_if;
use crate::config::{BodyLimits, EdgeConfig};
use crate::decode::{self, Encoding};
use crate::error::ApiError;

/// A request's body, decoded: its encoding checked before it is read, its size capped as sent
/// (recorded in `sent_bytes`) and once decoded, decoded on the blocking pool when it is large.
/// The media type is the endpoint's to check, since each protocol sends its own.
pub async fn read_decoded(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
    rate: MinRate,
    sent_bytes: &::metrics::Histogram,
) -> Result<Bytes, ApiError> {
    let encoding = content_encoding(headers)?;
    let sent = read_body(body, headers, limits.max_body, rate).await?;
    sent_bytes.record(sent.len() as f64);
    let large = encoding != Encoding::Identity && sent.len() >= decode::BLOCKING_DECODE_BYTES;
    off_the_runtime_if(large, "decoded", move || {
        decode::decompress(encoding, sent, limits.max_decoded)
    })
    .await?
}

/// The request's content encoding; 415 for anything else (including stacked encodings).
pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding("<non-ASCII>".into()))?
        .trim();
    if text.is_empty() {
        return Ok(Encoding::Identity);
    }
    Encoding::from_name(text).ok_or_else(|| ApiError::UnsupportedEncoding(truncate(text, 64)))
}

/// Accepts `application/json`, `application/x-ndjson`, `text/plain` (what sendBeacon sends for
/// a string) or no `Content-Type`; parameters such as `charset` are ignored.
pub fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    media_type(
        headers,
        &["application/json", "application/x-ndjson", "text/plain"],
    )
    .map(|_| ())
}

/// The request's media type, lowercase and without parameters (`""` when there is no
/// `Content-Type`), when it is one of `accepted`; else 415 naming what was sent.
pub fn media_type(headers: &HeaderMap, accepted: &[&str]) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(String::new());
    };
    let unsupported = |sent: String| {
        let accepted = match accepted {
            [] => String::new(),
            [one] => (*one).to_owned(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        };
        ApiError::UnsupportedMediaType { sent, accepted }
    };
    let text = value
        .to_str()
        .map_err(|_| unsupported("<non-ASCII>".into()))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || accepted.contains(&essence.as_str()) {
        Ok(essence)
    } else {
        Err(unsupported(truncate(text, 64)))
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// How fast a body must arrive: within `grace` of the request, then on average at least
/// `bytes_per_sec` since the grace ended. A client that stops sending, or trickles, is cut off
/// with 408 as soon as it falls behind, so a slow client holds no worker for long.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    /// Time the body may take before the rate applies: within it, any pace is fine.
    pub grace: Duration,
    /// The average rate the body must keep once the grace has passed.
    pub bytes_per_sec: u64,
}

impl MinRate {
    /// The rate the edge's settings set: `body_timeout`, then `body_min_rate`.
    pub fn of(edge: &EdgeConfig) -> MinRate {
        MinRate {
            grace: edge.body_timeout,
            bytes_per_sec: edge.body_min_rate,
        }
    }

    /// When a body that started at `started` and has delivered `received` bytes falls behind
    /// (far in the future, rather than an overflow, for an absurd configured grace).
    fn deadline(&self, started: Instant, received: u64) -> Instant {
        let behind =
            Duration::try_from_secs_f64(received as f64 / self.bytes_per_sec.max(1) as f64)
                .unwrap_or(Duration::MAX);
        started
            .checked_add(self.grace.saturating_add(behind))
            .unwrap_or_else(|| started + Duration::from_secs(30 * 365 * 86_400))
    }
}

/// How far past its cap an over-cap body is read and thrown away before the 413. A client that
/// declares a longer body is answered at once, since it would be cut off anyway. Discarding
/// costs no memory, and 16 MiB at the speed of a local network takes a fraction of a second;
/// it covers the usual mistake, a batch a few times the cap.
pub const DISCARD_BYTES: u64 = 16 << 20;

/// How long the discarding may last at most, whatever the body's pace: no longer than a body
/// that stalls at once is given (the default `body_timeout`), so a client that declares an
/// over-cap body and trickles it holds its connection and request slot no longer than one that
/// stalls under the cap.
pub const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Reads the whole body, refusing more than `limit` bytes as sent (413, up front from
/// `Content-Length`, else once the body passes it) and a body that falls behind `rate` (408).
///
/// Before a 413 the rest of the body is discarded (see the module's doc), except when the
/// client waits for `100 Continue`: then the body is never polled and never sent.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    rate: MinRate,
) -> Result<Bytes, ApiError> {
    let mut incoming = Incoming::open(body, headers, limit, rate).await?;
    let mut out = BytesMut::new();
    while let Some(data) = incoming.next().await? {
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// A body read piece by piece as it arrives, within its cap as sent and its minimum rate, as
/// [`read_body`] reads a whole one: what streams a body elsewhere (a recording, to Kafka)
/// rather than holding it.
pub struct Incoming {
    body: Body,
    /// When the body started, moved later by the time inlet itself did not read.
    started: Instant,
    received: u64,
    limit: usize,
    rate: MinRate,
}

impl Incoming {
    /// The body of a request with `headers`, to be read within `limit` bytes as sent and at
    /// `rate`: 413 at once for a declared length over the cap (the body discarded first, as
    /// [`read_body`] does).
    pub async fn open(
        body: Body,
        headers: &HeaderMap,
        limit: usize,
        rate: MinRate,
    ) -> Result<Incoming, ApiError> {
        let started = Instant::now();
        let limit_bytes = limit as u64;
        if let Some(declared) = declared_length(headers).filter(|&n| n > limit_bytes) {
            if !expects_continue(headers) && declared <= limit_bytes.saturating_add(DISCARD_BYTES) {
                discard(body, started, 0, limit, rate).await;
            }
            return Err(ApiError::BodyTooLarge { limit });
        }
        Ok(Incoming {
            body,
            started,
            received: 0,
            limit,
            rate,
        })
    }

    /// The next piece of the body, `None` at its end: 408 once it falls behind the rate, 413
    /// once it passes the cap (the rest read and thrown away first).
    pub async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        let deadline = self.rate.deadline(self.started, self.received);
        let Some(data) = next_data(&mut self.body, deadline).await? else {
            return Ok(None);
        };
        self.received += data.len() as u64;
        if self.received > self.limit as u64 {
            let body = std::mem::take(&mut self.body);
            discard(body, self.started, self.received, self.limit, self.rate).await;
            return Err(ApiError::BodyTooLarge { limit: self.limit });
        }
        Ok(Some(data))
    }

    /// Bytes of body received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Excuses `paused` from the rate: time inlet did not read the body (waiting for Kafka to
    /// take what arrived) is not the client's.
    pub fn excuse(&mut self, paused: Duration) {
        self.started += paused;
    }

    /// Reads and throws away the rest of the body, within the bounds an over-cap body is
    /// discarded in, so that the client reads the answer to a request that failed half-way.
    pub async fn discard(self) -> bool {
        discard(
            self.body,
            self.started,
            self.received,
            self.limit,
            self.rate,
        )
        .await
    }
}

/// The length the client declares, if it declares one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The next piece of the body's data: `None` at its end, 408 once `deadline` passes.
async fn next_data(body: &mut Body, deadline: Instant) -> Result<Option<Bytes>, ApiError> {
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout),
            Ok(None) => return Ok(None),
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                return Err(ApiError::MalformedBody(format!(
                    "could not read the body: {e}"
                )))
            }
        };
        // Trailers carry no data: read on.
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Reads and throws away the rest of an over-cap body, of which `received` bytes have arrived,
/// so that hyper can keep the connection and the client reads the answer. Gives up once the body
/// passes `limit` + [`DISCARD_BYTES`], falls behind `rate` (on the same clock as the read, from
/// `started`), or [`DISCARD_TIME`] has passed; hyper then closes the connection. Returns whether
/// the body was read to its end.
async fn discard(body: Body, started: Instant, received: u64, limit: usize, rate: MinRate) -> bool {
    let bound = (limit as u64).saturating_add(DISCARD_BYTES);
    discard_within(body, started, received, bound, DISCARD_TIME, rate).await
}

/// [`discard`] with its bounds given: at most `bound` bytes of body in all, for at most `time`.
async fn discard_within(
    mut body: Body,
    started: Instant,
    mut received: u64,
    bound: u64,
    time: Duration,
    rate: MinRate,
) -> bool {
    let give_up = Instant::now() + time;
    while received <= bound {
        match next_data(&mut body, rate.deadline(started, received).min(give_up)).await {
            Ok(Some(data)) => received += data.len() as u64,
            Ok(None) => return true,
            Err(_) => break,
        }
    }
    tracing::debug!(
        received,
        "stopped discarding an over-cap body; the connection will close"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that sends one byte every `every`, `left` times.
    struct Trickle {
        left: usize,
        every: Duration,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    }

    impl Trickle {
        fn body(left: usize, every: Duration) -> Body {
            Body::new(Trickle {
                left,
                every,
                sleep: Box::pin(tokio::time::sleep(every)),
            })
        }
    }

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            use std::future::Future;
            if self.left == 0 {
                return std::task::Poll::Ready(None);
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let next = Instant::now() + self.every;
            self.sleep.as_mut().reset(next);
            self.left -= 1;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b" ")))))
        }
    }

    #[tokio::test]
    async fn a_body_must_keep_up_with_the_minimum_rate() {
        let rate = MinRate {
            grace: Duration::from_millis(100),
            bytes_per_sec: 1000,
        };
        let no_length = HeaderMap::new();
        // 200 bytes at 50 bytes/s, no Content-Length: it falls behind 1000 bytes/s as soon as the
        // grace is over, long before its last byte (a single deadline from the size cap, 10 s
        // here, would have let all four seconds of it through).
        let slow = Trickle::body(200, Duration::from_millis(20));
        assert!(matches!(
            read_body(slow, &no_length, 10_000, rate).await,
            Err(ApiError::BodyTimeout)
        ));
        // A body that keeps ahead arrives whole, however it is split.
        let rate = MinRate {
            grace: Duration::from_secs(10),
            bytes_per_sec: 1000,
        };
        let paced = Trickle::body(5, Duration::from_millis(1));
        assert_eq!(
            read_body(paced, &no_length, 10_000, rate).await.unwrap(),
            &b"     "[..]
        );
        // An absurd grace means no deadline, not an overflow.
        let endless = MinRate {
            grace: Duration::from_millis(u64::MAX),
            bytes_per_sec: 1,
        };
        assert_eq!(
            read_body(Body::from("x"), &no_length, 10, endless)
                .await
                .unwrap(),
            &b"x"[..]
        );
        let over = Trickle::body(11, Duration::from_millis(1));
        assert!(matches!(
            read_body(over, &no_length, 10, rate).await,
            Err(ApiError::BodyTooLarge { limit: 10 })
        ));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(matches!(
            read_body(Body::from("x"), &declared, 10, rate).await,
            Err(ApiError::BodyTooLarge { limit: 10 })
        ));
    }

    /// A body whose polling fails the test: for answers that must come before the body.
    struct MustNotBePolled;

    impl hyper::body::Body for MustNotBePolled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            panic!("the body was polled (hyper would have sent 100 Continue, or read it)");
        }
    }

    fn declaring(length: u64, expect: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, length.into());
        if expect {
            headers.insert(header::EXPECT, "100-Continue".parse().unwrap());
        }
        headers
    }

    #[tokio::test]
    async fn some_over_cap_bodies_are_answered_before_a_byte_is_read() {
        let rate = MinRate {
            grace: Duration::from_secs(10),
            bytes_per_sec: 1000,
        };
        let cases = [
            ("waits for 100 Continue", declaring(11, true)),
            (
                "declared past the discard bound",
                declaring(10 + DISCARD_BYTES + 1, false),
            ),
        ];
        for (name, headers) in cases {
            let answer = read_body(Body::new(MustNotBePolled), &headers, 10, rate).await;
            assert!(
                matches!(answer, Err(ApiError::BodyTooLarge { limit: 10 })),
                "{name}: {answer:?}"
            );
        }
    }

    #[tokio::test]
    async fn discarding_stops_at_the_end_or_at_a_bound() {
        let patient = MinRate {
            grace: Duration::from_secs(3600),
            bytes_per_sec: 1,
        };
        let started = Instant::now();
        let whole = Body::from(vec![b'x'; 2 << 20]);
        assert!(discard(whole, started, 0, 1 << 20, patient).await);
        let past_the_bound = Body::from(vec![b'x'; (1 << 20) + DISCARD_BYTES as usize + 1]);
        assert!(!discard(past_the_bound, started, 0, 1 << 20, patient).await);
        // Behind the body's rate: given up at its deadline, as a read would be (408).
        let strict = MinRate {
            grace: Duration::from_millis(50),
            bytes_per_sec: 1000,
        };
        let slow = Trickle::body(1000, Duration::from_millis(20));
        let begun = Instant::now();
        assert!(!discard(slow, begun, 0, 10, strict).await);
        assert!(begun.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn discarding_gives_up_after_its_time_whatever_the_pace() {
        // A byte a millisecond, forever, under a rate that would allow it: only the time bound
        // stops it ([`DISCARD_TIME`] itself, shortened for the test).
        let patient = MinRate {
            grace: Duration::from_secs(3600),
            bytes_per_sec: 1,
        };
        let endless = Trickle::body(usize::MAX, Duration::from_millis(1));
        let (begun, time) = (Instant::now(), Duration::from_millis(300));
        assert!(!discard_within(endless, begun, 0, u64::MAX, time, patient).await);
        let took = begun.elapsed();
        assert!(took >= time && took < time * 5, "{took:?}");
    }

    #[test]
    fn media_types_and_encodings() {
        let mut h = HeaderMap::new();
        assert!(check_media_type(&h).is_ok());
        for ok in [
            "application/json; charset=utf-8",
            "text/plain;charset=UTF-8",
            "application/x-ndjson",
        ] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_media_type(&h).is_ok(), "{ok}");
        }
        h.insert(header::CONTENT_TYPE, "application/xml".parse().unwrap());
        assert_eq!(
            check_media_type(&h).unwrap_err().code(),
            "unsupported_media_type"
        );
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Gzip);
        h.insert(header::CONTENT_ENCODING, " identity ".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "".parse().unwrap());
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        h.insert(header::CONTENT_ENCODING, "compress".parse().unwrap());
        assert_eq!(
            content_encoding(&h).unwrap_err().code(),
            "unsupported_content_encoding"
        );
    }
}

/// Over-cap bodies through a real socket and inlet's own connection handling, sent the ways
/// clients send them: the whole body before reading (Python's urllib), `Expect: 100-continue`
/// (curl past 1 MiB), and lying or stalling.
#[cfg(test)]
mod over_the_cap {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::config::Settings;
    use crate::http::listen::{self, ConnLimits};
    use crate::http::public_router;
    use crate::sink::memory::MemorySink;
    use crate::testing::{state, SECRET};

    /// Twice the beacons cap (1 MiB), as a new user's first oversized batch.
    const TWO_MIB: usize = 2 << 20;

    /// Serves the public router over an in-memory sink on a local port, with the default
    /// configuration adjusted by `tweak`, until the test's runtime ends.
    async fn serve(tweak: impl FnOnce(&mut Settings)) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = public_router(state(Arc::new(MemorySink::accepting()), tweak));
        let limits = ConnLimits {
            max_connections: 16,
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 16 << 10,
        };
        tokio::spawn(listen::serve(
            listener,
            router,
            limits,
            "public",
            std::future::pending(),
        ));
        addr
    }

    /// The head of a beacons request, with `extra` header lines.
    fn beacons_head(extra: &str) -> String {
        format!(
            "POST /v1/beacons HTTP/1.1\r\nhost: inlet\r\nauthorization: Bearer {SECRET}\r\n\
             content-type: application/json\r\n{extra}\r\n"
        )
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Reads one answer off `stream`: its head, and its body by its `Content-Length`.
    fn read_answer(stream: &mut TcpStream) -> (String, String) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                other => panic!(
                    "the connection ended mid-answer ({other:?}) after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
        let head = String::from_utf8(head).unwrap();
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    fn assert_body_too_large(name: &str, (head, body): &(String, String)) {
        assert!(head.starts_with("HTTP/1.1 413 "), "{name}: {head}");
        assert!(
            body.contains(r#""code":"body_too_large""#),
            "{name}: {body}"
        );
    }

    /// Whether the server closes `stream` (rather than leave it open) within its read timeout.
    fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).is_ok()
    }

    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in body.chunks(64 << 10) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_writes_its_whole_body_first_reads_the_413() {
        let addr = serve(|_| {}).await;
        let body = vec![b'x'; TWO_MIB];
        let cases = [
            (
                "Content-Length",
                [
                    beacons_head(&format!("content-length: {TWO_MIB}\r\n")).into_bytes(),
                    body.clone(),
                ]
                .concat(),
            ),
            (
                "chunked",
                [
                    beacons_head("transfer-encoding: chunked\r\n").into_bytes(),
                    chunked(&body),
                ]
                .concat(),
            ),
        ];
        tokio::task::spawn_blocking(move || {
            for (name, request) in cases {
                let mut stream = connect(addr);
                // As urllib does: the whole request, and only then the answer.
                stream
                    .write_all(&request)
                    .unwrap_or_else(|e| panic!("{name}: writing the body failed: {e}"));
                assert_body_too_large(name, &read_answer(&mut stream));
                // The body was read to its end, so the connection serves the next request.
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nhost: inlet\r\n\r\n")
                    .unwrap();
                let (head, _) = read_answer(&mut stream);
                assert!(head.starts_with("HTTP/1.1 200 "), "{name}, then: {head}");
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_expects_100_continue_is_answered_before_its_body() {
        let addr = serve(|_| {}).await;
        tokio::task::spawn_blocking(move || {
            let mut stream = connect(addr);
            let head = beacons_head(&format!(
                "content-length: {TWO_MIB}\r\nexpect: 100-continue\r\n"
            ));
            stream.write_all(head.as_bytes()).unwrap();
            // The 413 first: no `100 Continue` invites the body it refuses.
            let answer = read_answer(&mut stream);
            assert_body_too_large("Expect: 100-continue", &answer);
            // The body will never be read: hyper closes the connection, and nothing was left
            // unread in it to turn the close into a reset.
            assert!(closed_by_server(&mut stream), "the connection stayed open");
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lying_or_stalling_client_holds_the_connection_no_longer_than_the_bounds() {
        let grace = Duration::from_millis(300);
        let addr = serve(|s| s.body_timeout_ms = Some(grace.as_millis() as u64)).await;
        // (name, declared length, bytes sent before stalling, whether inlet waits for them)
        let cases = [
            (
                "declares 2 MiB, sends 1 KiB, stalls",
                TWO_MIB as u64,
                1024,
                true,
            ),
            ("declares 2 MiB, sends nothing", TWO_MIB as u64, 0, true),
            ("declares 1 GB, sends nothing", 1 << 30, 0, false),
        ];
        tokio::task::spawn_blocking(move || {
            for (name, declared, sent, waits) in cases {
                let started = Instant::now();
                let mut stream = connect(addr);
                let head = beacons_head(&format!("content-length: {declared}\r\n"));
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&vec![b'x'; sent]).unwrap();
                assert_body_too_large(name, &read_answer(&mut stream));
                assert!(closed_by_server(&mut stream), "{name}: still open");
                let took = started.elapsed();
                // Discarding gives up once the body falls behind its rate: at the grace here.
                assert!(took < grace * 10, "{name}: held for {took:?}");
                assert_eq!(took >= grace, waits, "{name}: answered after {took:?}");
            }
        })
        .await
        .unwrap();
    }

    /// By hand (needs python3 and curl): `cargo test --lib urllib -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "runs python3 and curl: by hand"]
    async fn python_urllib_and_curl_read_the_413() {
        let addr = serve(|_| {}).await;
        let url = format!("http://{addr}/v1/beacons");
        let urllib = r#"
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=b"x" * (2 << 20), headers={
    "Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json"})
try:
    urllib.request.urlopen(request, timeout=30)
    print("no error")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;
        let file = std::env::temp_dir().join(format!("inlet-2mib-{}", std::process::id()));
        std::fs::write(&file, vec![b'x'; TWO_MIB]).unwrap();
        let auth = format!("authorization: Bearer {SECRET}");
        let data = format!("@{}", file.display());
        let curl = |expect: &str| -> Vec<String> {
            [
                "-sS",
                "-H",
                &auth,
                "-H",
                "content-type: application/json",
                "-H",
                expect,
                "--data-binary",
                &data,
                "-w",
                " %{http_code}",
                &url,
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let runs = [
            (
                "python3 urllib",
                "python3",
                vec!["-c".into(), urllib.into(), url.clone(), SECRET.into()],
            ),
            (
                "curl (Expect: 100-continue)",
                "curl",
                curl("expect: 100-continue"),
            ),
            ("curl (no Expect)", "curl", curl("expect:")),
        ];
        tokio::task::spawn_blocking(move || {
            for (name, program, args) in runs {
                let out = std::process::Command::new(program)
                    .args(&args)
                    .output()
                    .unwrap_or_else(|e| panic!("{name}: cannot run {program}: {e}"));
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                println!("{name}: {stdout} {stderr}");
                assert!(stdout.contains("413"), "{name}: {stdout} {stderr}");
                assert!(
                    stdout.contains("body_too_large"),
                    "{name}: {stdout} {stderr}"
                );
            }
            let _ = std::fs::remove_file(&file);
        })
        .await
        .unwrap();
    }
}

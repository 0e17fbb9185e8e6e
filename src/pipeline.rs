//! The pipeline: what happens to a request's events once its endpoint has authenticated the
//! token and split what the client sent into events.
//!
//! ```text
//! endpoint (HTTP):   extract the token and the body → translate into a Batch
//! pipeline (here):   limit → validate → convert → key → produce → one typed Answer
//! endpoint (HTTP):   shape the Answer (or the ApiError) into the protocol's reply
//! ```
//!
//! Every endpoint calls [`Pipeline::ingest`], so every event reaches Kafka the same way: the
//! native JSON endpoints, the pixel, and each SDK adapter after them. Nothing here knows about
//! HTTP, so tests call it directly with an in-memory sink. [`Pipeline::admit`] holds the checks
//! that come before a body is read at all (shutdown, the token's kinds and origins).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;

use crate::auth::Token;
use crate::batch::{off_the_runtime_if, Batch, BLOCKING_PARSE_BYTES};
use crate::batch::{raw_text, validate};
use crate::config::{Delivery, IngestConfig};
use crate::error::{failure_retry_after_secs, ApiError, Refusal, Rejection};
use crate::event::{self, Invalid, Meta, Source};
use crate::fleet::dead_letters::{self, without_token};
use crate::fleet::dedupe::{self, Claim, Dedupe};
use crate::fleet::Fleet;
use crate::key::shard_key;
use crate::lane::Lane;
use crate::limit::Decision;
use crate::metrics::{self, count_events};
use crate::otlp::json::NotJson;
use crate::otlp::{self, NotOtlp, Signal};
use crate::proto::{envelope::Event, DeadLetter, Recording};
use crate::recording::{Chunker, Upload};
use crate::shutdown::Shutdown;
use crate::sink::{Failure, Outcome, Record, Sink};

/// User agents are kept up to this many bytes.
const MAX_USER_AGENT: usize = 512;

/// The way from validated events to Kafka, shared by every endpoint.
pub struct Pipeline {
    config: IngestConfig,
    sink: Arc<dyn Sink>,
    shutdown: Arc<Shutdown>,
    /// Shared quotas, deduplication and dead letters (fleet mode).
    fleet: Fleet,
}

/// Who sent a request, as the envelope records it.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address (behind trusted proxies), before any truncation.
    pub ip: IpAddr,
    /// The `User-Agent` as sent (cut to 512 bytes by the pipeline).
    pub user_agent: String,
}

/// What a request's events came to, when at least one was accepted.
#[derive(Debug)]
pub struct Answer {
    pub accepted: usize,
    /// The events not accepted, by index.
    pub rejected: Vec<Rejection>,
    /// How accepted events were accepted: acknowledged by the broker, or queued.
    pub delivery: Delivery,
    /// Set when an event was refused for a reason a retry may overcome.
    pub retry_after_secs: Option<u64>,
}

impl Answer {
    /// The answer to a request that carried no event (an SDK's envelope of other items alone).
    pub fn nothing(delivery: Delivery) -> Answer {
        Answer {
            accepted: 0,
            rejected: Vec::new(),
            delivery,
            retry_after_secs: None,
        }
    }

    /// Adds the answer for the request's events of another lane, which follow these: its
    /// refusals are numbered after this answer's events.
    pub fn add(&mut self, more: Answer) {
        let offset = self.accepted + self.rejected.len();
        self.rejected
            .extend(more.rejected.into_iter().map(|mut rejection| {
                rejection.index += offset;
                rejection
            }));
        self.accepted += more.accepted;
        self.retry_after_secs = self.retry_after_secs.max(more.retry_after_secs);
    }
}

/// What an OTLP request came to: its events accepted, and those refused with why (the first
/// reason; OTLP's `partial_success` has room for one message).
#[derive(Debug, Default)]
pub struct Exported {
    pub accepted: usize,
    pub rejected: usize,
    pub message: String,
}

impl Exported {
    fn refuse(&mut self, events: usize, why: &str) {
        self.rejected += events;
        if self.message.is_empty() {
            self.message = why.to_owned();
        }
    }
}

/// A batch's events as records for the sink, and the ones that did not validate.
struct Converted {
    records: Vec<Record>,
    /// Each record's index in the request.
    indices: Vec<usize>,
    /// Each record's client-chosen id as a deduplication key, when deduplicating.
    ids: Vec<Option<String>>,
    rejected: Vec<Rejection>,
    /// The invalid events as dead letters, when they are kept.
    letters: Vec<DeadLetter>,
}

/// What convert keeps besides the records, as the fleet settings ask.
#[derive(Clone, Copy)]
struct Keep {
    /// Dead letters of the invalid events.
    letters: bool,
    /// The records' client-chosen ids.
    ids: bool,
}

impl Pipeline {
    /// The pipeline to `sink`, with the `fleet` pieces.
    pub fn new(
        config: IngestConfig,
        fleet: Fleet,
        sink: Arc<dyn Sink>,
        shutdown: Arc<Shutdown>,
    ) -> Pipeline {
        Pipeline {
            config,
            sink,
            shutdown,
            fleet,
        }
    }

    /// The same pipeline with other fleet pieces.
    pub fn with_fleet(self, fleet: Fleet) -> Pipeline {
        Pipeline { fleet, ..self }
    }

    /// The checks every ingest request passes before its body is read: inlet is not draining,
    /// the token may send `kind`, and from the page `origin` (its `Origin` or `Referer`).
    pub fn admit(&self, token: &Token, kind: Lane, origin: Option<&str>) -> Result<(), ApiError> {
        if !self.shutdown.is_accepting() {
            return Err(ApiError::Unavailable(Failure::ShuttingDown));
        }
        if !token.allows(kind) {
            return Err(ApiError::KindNotAllowed {
                token_id: token.id.clone(),
                kind: kind.as_str(),
            });
        }
        if !token.allows_origin(origin) {
            return Err(ApiError::OriginNotAllowed);
        }
        Ok(())
    }

    /// Limits, validates, converts, keys and produces `batch`'s events, and answers per event.
    ///
    /// Fails as a whole exactly when nothing was accepted: 429 (or 413 past the burst) when the
    /// token's limit refuses the batch; 503 when an event could not be delivered for a reason
    /// worth a retry; 413 when every event was too large for the broker; else 400 (every event
    /// invalid, or invalid and too large), so an [`Answer`] always has `accepted` > 0.
    pub async fn ingest(
        &self,
        token: &Token,
        client: Client,
        batch: Batch,
    ) -> Result<Answer, ApiError> {
        let (kind, converted) = self.prepare(token, client, batch).await?;
        self.produce(kind, converted).await
    }

    /// One request's batches of several lanes (an SDK envelope's events, then its other items),
    /// answered as one, as [`ingest`](Pipeline::ingest) answers one batch. Each is charged and
    /// converted in order, and the first refusal refuses the request before anything is
    /// produced; a first batch of invalid events alone is answered so, its lanes after it not
    /// produced. The rest are handed to the sink together, in one call, so the request waits
    /// for the broker once, not once per lane. `batches` is not empty.
    pub async fn ingest_lanes(
        &self,
        token: &Token,
        client: Client,
        mut batches: Vec<Batch>,
    ) -> Result<Answer, ApiError> {
        if batches.len() == 1 {
            return self.ingest(token, client, batches.remove(0)).await;
        }
        let mut prepared = Vec::with_capacity(batches.len());
        for batch in batches {
            prepared.push(self.prepare(token, client.clone(), batch).await?);
        }
        if prepared[0].1.records.is_empty() {
            let (kind, first) = prepared.remove(0);
            return self.produce(kind, first).await;
        }
        let mut answers = self.produce_all(prepared).await.into_iter();
        let mut answer = answers.next().expect("one answer a batch")?;
        for more in answers {
            match more {
                Ok(more) => answer.add(more),
                // The first lane's events were accepted: a later lane's invalid ones are
                // refusals within the answer, not a refusal of the request.
                Err(ApiError::AllInvalid(rejected)) => answer.add(Answer {
                    rejected,
                    ..Answer::nothing(self.config.delivery)
                }),
                Err(error) => return Err(error),
            }
        }
        Ok(answer)
    }

    /// Starts producing a recording of `recording` (its session, type, media type and
    /// encoding) as its payload arrives: the token is charged one event for it, whatever its
    /// size, and the [`Upload`] takes the payload (see [`crate::recording`]).
    pub async fn upload(
        &self,
        token: &Token,
        client: Client,
        source: Source,
        recording: Recording,
    ) -> Result<Upload, ApiError> {
        self.routed(token, Lane::RECORDING).await?;
        self.charge(Lane::RECORDING, token, 1).await?;
        let meta = self.meta(Lane::RECORDING, source, token, client);
        let wait = self.config.delivery == Delivery::Ack;
        let chunks = self.config.recording_chunk_bytes;
        let chunker = Chunker::new(&meta, recording);
        Ok(Upload::new(chunker, chunks, Arc::clone(&self.sink), wait))
    }

    /// Produces an OTLP export request of `signal` (`body`, protobuf, or OTLP/JSON when `json`)
    /// as the Collector's records (see [`crate::otlp`]): checked and split (on the blocking
    /// pool when large), the token charged one event per span, log record or data point, each
    /// record produced with the gateway's metadata in its headers. A body that is no export
    /// request is refused 400 and kept as a dead letter; so is each item refused within it
    /// (counted in the answer). A record refused for a reason worth a retry refuses the whole
    /// request (503), so the exporter sends it again, as an SDK's request is.
    pub async fn export(
        &self,
        token: &Token,
        client: Client,
        signal: Signal,
        body: Bytes,
        json: bool,
    ) -> Result<Exported, ApiError> {
        let lane = signal.lane();
        self.routed(token, lane).await?;
        let meta = self.meta(lane, Source::Otlp, token, client);
        let large = body.len() >= BLOCKING_PARSE_BYTES;
        let read = Bytes::clone(&body);
        // The decoding check (and the JSON's conversion) is the costly part: off the runtime
        // when the body is large. Reading and cutting the bytes after it is not.
        let checked = off_the_runtime_if(large, "parsed", move || {
            let protobuf = match json {
                true => crate::otlp::json::to_protobuf(signal.request(), &read)
                    .map_err(|NotJson(why)| NotOtlp(why))?,
                false => read.to_vec(),
            };
            crate::otlp::check(signal, &protobuf).map(|()| protobuf)
        })
        .await?;
        let protobuf = checked.map_err(|why| self.malformed(&meta, lane, json, &body, why))?;
        let request = otlp::Request::read(signal, &protobuf)
            .map_err(|why| self.malformed(&meta, lane, json, &body, why))?;
        // Spans have ids: those accepted within the dedupe window are answered as accepted
        // and left out.
        let ids: Vec<Option<String>> = match &self.fleet.dedupe {
            Some(_) => (request.ids().into_iter())
                .map(|id| id.map(|id| dedupe::key(&meta.project_id, lane.as_str(), &id)))
                .collect(),
            None => Vec::new(),
        };
        let (claims, skip) = match &self.fleet.dedupe {
            Some(dedupe) => claim_items(dedupe, &ids).await,
            None => (Vec::new(), Vec::new()),
        };
        let split = request.split(self.config.otlp_max_message_bytes, &skip);
        let duplicates = skip.iter().filter(|s| **s).count();
        let events = split.events() + duplicates;
        if events > 0 {
            let charged = match self.charge(lane, token, events).await {
                Ok(()) => self.charge_bytes(lane, token, events, body.len()).await,
                refused => refused,
            };
            if let Err(refused) = charged {
                if let Some(dedupe) = &self.fleet.dedupe {
                    dedupe.release(claims.into_iter().flatten().collect());
                }
                return Err(refused);
            }
        }
        count_events(lane, "duplicate", duplicates);
        let mut exported = Exported {
            accepted: duplicates,
            ..Exported::default()
        };
        for (index, rejected) in split.rejected.iter().enumerate() {
            let outcome = match rejected.invalid.code {
                "event_too_large" => "too_large",
                _ => "invalid",
            };
            count_events(lane, outcome, rejected.events);
            exported.refuse(rejected.events, &rejected.invalid.message);
            if let Some(letters) = &self.fleet.dead_letters {
                let raw = &rejected.raw;
                letters.post(&dead_letters::binary_letter(
                    &meta,
                    lane,
                    index,
                    &rejected.invalid,
                    raw,
                ));
            }
        }
        let headers = meta.headers();
        let (records, kept): (Vec<Record>, Vec<(usize, Vec<usize>)>) = (split.parts.into_iter())
            .map(|part| {
                let record = Record {
                    kind: lane,
                    key: part.key,
                    value: part.value,
                    headers: headers.clone(),
                    topic: meta.topic.clone(),
                };
                (record, (part.events, part.items))
            })
            .unzip();
        // The claims of items in no record (refused) are let go at once.
        let mut unplaced = vec![true; claims.len()];
        for i in kept.iter().flat_map(|(_, items)| items) {
            if let Some(unplaced) = unplaced.get_mut(*i) {
                *unplaced = false;
            }
        }
        let claim = |i: &usize| claims.get(*i).cloned().flatten();
        let mut released: Vec<String> = (0..claims.len())
            .filter(|i| unplaced[*i])
            .filter_map(|i| claim(&i))
            .collect();
        let mut confirmed = Vec::new();
        let outcomes = self.send(records).await;
        let mut retriable = None;
        for ((events, items), outcome) in kept.into_iter().zip(outcomes) {
            let held = items.iter().filter_map(claim);
            match outcome {
                Ok(()) => {
                    exported.accepted += events;
                    confirmed.extend(held);
                }
                Err(failure) => {
                    released.extend(held);
                    let refusal = Refusal::Undelivered(failure);
                    count_events(lane, refusal.outcome(), events);
                    match refusal.is_retriable() {
                        true => retriable = Some(failure),
                        false => exported.refuse(events, refusal.message()),
                    }
                }
            }
        }
        if let Some(dedupe) = &self.fleet.dedupe {
            dedupe.confirm(confirmed).await;
            dedupe.release(released);
        }
        count_events(lane, "accepted", exported.accepted - duplicates);
        match retriable {
            Some(failure) => Err(ApiError::Unavailable(failure)),
            None => Ok(exported),
        }
    }

    /// The refusal of an OTLP body that is no export request (`why`), kept as a dead letter
    /// (as text when it is JSON).
    fn malformed(
        &self,
        meta: &Meta,
        lane: Lane,
        json: bool,
        body: &[u8],
        why: NotOtlp,
    ) -> ApiError {
        let NotOtlp(why) = why;
        let invalid = Invalid::new("malformed_body", why.clone());
        if let Some(letters) = &self.fleet.dead_letters {
            letters.post(&match json {
                true => {
                    let text = String::from_utf8_lossy(body);
                    dead_letters::letter(meta, lane, 0, &invalid, &text)
                }
                false => dead_letters::binary_letter(meta, lane, 0, &invalid, body),
            });
        }
        count_events(lane, "invalid", 1);
        ApiError::MalformedBody(why)
    }

    /// Charges the token for `batch`'s events and validates, converts and keys them (on the
    /// blocking pool when the batch is large): everything but producing them.
    async fn prepare(
        &self,
        token: &Token,
        client: Client,
        batch: Batch,
    ) -> Result<(Lane, Converted), ApiError> {
        let kind = batch.kind;
        self.routed(token, kind).await?;
        self.charge(kind, token, batch.len()).await?;
        self.charge_bytes(kind, token, batch.len(), batch.weight())
            .await?;
        let meta = self.meta(kind, batch.source, token, client);
        let large = batch.weight() >= BLOCKING_PARSE_BYTES;
        let keep = Keep {
            letters: self.fleet.dead_letters.is_some(),
            ids: self.fleet.dedupe.is_some(),
        };
        let chunk_bytes = self.config.recording_chunk_bytes;
        let converted = off_the_runtime_if(large, "parsed", move || {
            convert(batch, &meta, keep, chunk_bytes)
        })
        .await?;
        Ok((kind, converted))
    }

    /// Refuses (503 `topic_missing`) events of `kind` from a token whose registry entry names
    /// a topic for the lane that the broker says does not exist: a clear error at the token's
    /// first use, not events produced into nowhere. When no broker answers, the events go on
    /// (under `spool` they wait for it like any other).
    async fn routed(&self, token: &Token, kind: Lane) -> Result<(), ApiError> {
        let Some(topic) = token.topic(kind) else {
            return Ok(());
        };
        match self.sink.topic_exists(topic).await {
            Some(false) => Err(ApiError::TopicMissing {
                topic: topic.to_string(),
                token_id: token.id.clone(),
                lane: kind.as_str(),
            }),
            _ => Ok(()),
        }
    }

    /// Charges the token's quota for `events` events (all or nothing): through the fleet's
    /// Redis when there is one, else the token's own limiter.
    async fn charge(&self, kind: Lane, token: &Token, events: usize) -> Result<(), ApiError> {
        let refused = match self.fleet.quota.charge(token, events).await {
            Decision::Allowed => return Ok(()),
            Decision::Wait(wait) => ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            },
            Decision::TooBig => ApiError::BatchExceedsBurst {
                count: events,
                burst: token.limiter.burst,
            },
        };
        count_events(kind, "rate_limited", events);
        ::metrics::counter!(metrics::RATE_LIMITED, "token" => token.id.clone()).increment(1);
        Err(refused)
    }

    /// Charges the token's byte quota, when it has one, for `bytes` of a request of `kind`
    /// carrying `events` events (all or nothing): 429 with the wait, or 413 past its
    /// `bytes_burst`; a refusal counts the events as rate limited.
    pub async fn charge_bytes(
        &self,
        kind: Lane,
        token: &Token,
        events: usize,
        bytes: usize,
    ) -> Result<(), ApiError> {
        let refused = match self.fleet.quota.charge_bytes(token, bytes).await {
            Decision::Allowed => return Ok(()),
            Decision::Wait(wait) => ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            },
            Decision::TooBig => ApiError::BytesExceedBurst {
                bytes,
                burst: token.byte_limiter.as_ref().map_or(0, |l| l.burst),
            },
        };
        count_events(kind, "rate_limited", events);
        ::metrics::counter!(metrics::RATE_LIMITED, "token" => token.id.clone()).increment(1);
        Err(refused)
    }

    /// The gateway's metadata for a request's events.
    fn meta(&self, kind: Lane, source: Source, token: &Token, client: Client) -> Meta {
        let mut user_agent = client.user_agent;
        if user_agent.len() > MAX_USER_AGENT {
            let mut end = MAX_USER_AGENT;
            while !user_agent.is_char_boundary(end) {
                end -= 1;
            }
            user_agent.truncate(end);
        }
        let client_ip = if self.config.client_ip_truncation.applies_to(kind) {
            crate::client::truncate(client.ip)
        } else {
            client.ip
        };
        Meta {
            received_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            project_id: token.project_id.clone(),
            account_id: token.account_id.clone(),
            token_id: token.id.clone(),
            client_ip: client_ip.to_string(),
            user_agent,
            source,
            topic: token.topic(kind).cloned(),
        }
    }

    /// Hands the valid events to the sink and turns its outcomes into the answer.
    async fn produce(&self, kind: Lane, converted: Converted) -> Result<Answer, ApiError> {
        let mut staged = self.stage(kind, converted).await?;
        let records = std::mem::take(&mut staged.records);
        let outcomes = self.send(records).await;
        self.settle(staged, outcomes).await
    }

    /// Several lanes' batches of one request handed to the sink at once; one answer for each,
    /// in their order.
    async fn produce_all(&self, batches: Vec<(Lane, Converted)>) -> Vec<Result<Answer, ApiError>> {
        let mut staged = Vec::with_capacity(batches.len());
        for (kind, converted) in batches {
            staged.push(self.stage(kind, converted).await);
        }
        let mut records = Vec::new();
        let mut counts = Vec::with_capacity(staged.len());
        for stage in staged.iter_mut().flatten() {
            counts.push(stage.records.len());
            records.append(&mut stage.records);
        }
        let mut outcomes = self.send(records).await.into_iter();
        let mut counts = counts.into_iter();
        let mut answers = Vec::with_capacity(staged.len());
        for stage in staged {
            answers.push(match stage {
                Ok(stage) => {
                    let n = counts.next().unwrap_or(0);
                    let mine: Vec<_> = outcomes.by_ref().take(n).collect();
                    self.settle(stage, mine).await
                }
                Err(error) => Err(error),
            });
        }
        answers
    }

    /// The part of producing before the sink: counts the invalid events and posts their dead
    /// letters, refuses a batch of invalid events alone, and takes out the duplicates.
    async fn stage(&self, kind: Lane, converted: Converted) -> Result<Staged, ApiError> {
        let Converted {
            mut records,
            mut indices,
            ids,
            rejected,
            letters,
        } = converted;
        count_events(kind, "invalid", rejected.len());
        if let Some(dead_letters) = &self.fleet.dead_letters {
            letters.iter().for_each(|letter| dead_letters.post(letter));
        }
        if records.is_empty() {
            return Err(ApiError::AllInvalid(rejected));
        }
        let (claimed, duplicates) = match &self.fleet.dedupe {
            Some(dedupe) => drop_duplicates(dedupe, &mut records, &mut indices, ids).await,
            None => (Vec::new(), 0),
        };
        count_events(kind, "duplicate", duplicates);
        Ok(Staged {
            kind,
            records,
            indices,
            claimed,
            duplicates,
            rejected,
        })
    }

    /// Hands `records` to the sink: one outcome each, in order.
    async fn send(&self, records: Vec<Record>) -> Vec<Outcome> {
        match records.is_empty() {
            true => Vec::new(),
            false => {
                let wait = self.config.delivery == Delivery::Ack;
                self.sink.send(records, wait).await
            }
        }
    }

    /// The answer for a staged batch whose records the sink answered with `outcomes`.
    async fn settle(&self, staged: Staged, outcomes: Vec<Outcome>) -> Result<Answer, ApiError> {
        let Staged {
            kind,
            indices,
            claimed,
            duplicates,
            mut rejected,
            ..
        } = staged;
        let mut accepted = duplicates;
        let (mut confirmed, mut released) = (Vec::new(), Vec::new());
        let mut claimed = claimed.into_iter();
        let mut records = indices.into_iter().zip(outcomes).peekable();
        while let Some((index, mut outcome)) = records.next() {
            let mut claim = claimed.next().flatten();
            // A recording's chunks are one event: accepted when every chunk was.
            while let Some((_, more)) = records.next_if(|(next, _)| *next == index) {
                outcome = outcome.and(more);
                claim = claim.or(claimed.next().flatten());
            }
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    confirmed.extend(claim);
                }
                Err(failure) => {
                    released.extend(claim);
                    let refusal = Refusal::Undelivered(failure);
                    count_events(kind, refusal.outcome(), 1);
                    rejected.push(Rejection { index, refusal });
                }
            }
        }
        if let Some(dedupe) = &self.fleet.dedupe {
            dedupe.confirm(confirmed).await;
            dedupe.release(released);
        }
        count_events(kind, "accepted", accepted - duplicates);
        rejected.sort_by_key(|r| r.index);
        answer(accepted, rejected, self.config.delivery)
    }
}

/// A batch ready for the sink: its records (taken when handed over), where each is in the
/// request, their deduplication claims, and what was answered already.
struct Staged {
    kind: Lane,
    records: Vec<Record>,
    indices: Vec<usize>,
    claimed: Vec<Option<String>>,
    duplicates: usize,
    rejected: Vec<Rejection>,
}

/// Claims the ids of a request's items (`None` for an item without one): each item's claim
/// (the key to confirm or release once its outcome is known), and which are duplicates (ids
/// accepted within the window), to be left out and answered as accepted.
async fn claim_items(dedupe: &Dedupe, ids: &[Option<String>]) -> (Vec<Option<String>>, Vec<bool>) {
    let keys: Vec<String> = ids.iter().flatten().cloned().collect();
    let mut claims = dedupe.claim(&keys).await.into_iter();
    let mut held = Vec::with_capacity(ids.len());
    let mut skip = Vec::with_capacity(ids.len());
    for id in ids {
        let claim = id
            .as_ref()
            .map(|_| claims.next().unwrap_or(Claim::InFlight));
        skip.push(matches!(claim, Some(Claim::Seen)));
        held.push(match claim {
            Some(Claim::First) => id.clone(),
            _ => None,
        });
    }
    (held, skip)
}

/// Claims the records' client-chosen `ids` and takes out the duplicates (ids accepted within
/// the window). Returns each remaining record's claim (the key to confirm or release once its
/// outcome is known; `None` when it holds none) and how many duplicates were taken out, which
/// are answered as accepted.
async fn drop_duplicates(
    dedupe: &Dedupe,
    records: &mut Vec<Record>,
    indices: &mut Vec<usize>,
    ids: Vec<Option<String>>,
) -> (Vec<Option<String>>, usize) {
    let keys: Vec<String> = ids.iter().flatten().cloned().collect();
    let mut claims = dedupe.claim(&keys).await.into_iter();
    let mut held = Vec::with_capacity(records.len());
    let mut keep = Vec::with_capacity(records.len());
    for id in ids {
        let claim = id.map(|id| (claims.next().unwrap_or(Claim::InFlight), id));
        keep.push(!matches!(claim, Some((Claim::Seen, _))));
        match claim {
            Some((Claim::First, id)) => held.push(Some(id)),
            Some((Claim::Seen, _)) => {}
            _ => held.push(None),
        }
    }
    let mut flags = keep.iter();
    records.retain(|_| *flags.next().unwrap_or(&true));
    let mut flags = keep.iter();
    indices.retain(|_| *flags.next().unwrap_or(&true));
    let duplicates = keep.iter().filter(|k| !**k).count();
    (held, duplicates)
}

/// Validates each event of `batch`, and converts and keys the valid ones into records (with
/// their client ids and the invalid ones' dead letters, as `keep` asks).
fn convert(batch: Batch, meta: &Meta, keep: Keep, chunk_bytes: usize) -> Converted {
    let Batch {
        kind,
        text,
        events,
        mut trimmed,
        ..
    } = batch;
    // The text was checked to be UTF-8 when it was split (or came from a `&str`).
    let text = std::str::from_utf8(&text).unwrap_or_default();
    let mut converted = Converted {
        records: Vec::with_capacity(events.len()),
        indices: Vec::with_capacity(events.len()),
        ids: Vec::new(),
        rejected: Vec::new(),
        letters: Vec::new(),
    };
    for (index, event) in events.into_iter().enumerate() {
        // Where the event's text is, kept before validation consumes it (cheap: a slice).
        let raw = match (&event, keep.letters) {
            (Ok(raw), true) => Some(raw_text(text, raw)),
            _ => None,
        };
        match event.and_then(|raw| validate(kind, text, raw)) {
            Ok(valid) => {
                if keep.ids {
                    let id = valid.client_id.as_deref();
                    let key = id.map(|id| dedupe::key(&meta.project_id, kind.as_str(), id));
                    converted.ids.push(key);
                }
                if let Event::Recording(recording) = valid.body {
                    // One event, its chunks one record each.
                    let chunks = crate::recording::chunks(meta, recording, chunk_bytes);
                    converted
                        .indices
                        .extend(std::iter::repeat_n(index, chunks.len()));
                    if keep.ids {
                        converted
                            .ids
                            .extend(std::iter::repeat_n(None, chunks.len()));
                    }
                    converted.records.extend(chunks);
                    continue;
                }
                let key = shard_key(kind, &valid.body, &meta.account_id, &meta.token_id).to_owned();
                let mut envelope = event::envelope(valid, meta);
                if let Some(cut) = trimmed.get_mut(index) {
                    envelope.trimmed = std::mem::take(cut);
                }
                let value = envelope.encode_to_vec();
                let mut record = Record::new(kind, key, value);
                record.topic = meta.topic.clone();
                converted.records.push(record);
                converted.indices.push(index);
            }
            Err(invalid) => {
                if keep.letters {
                    let raw = dead_letter_text(raw.unwrap_or_default(), meta.source);
                    let letter = dead_letters::letter(meta, kind, index, &invalid, &raw);
                    converted.letters.push(letter);
                }
                converted.rejected.push(Rejection {
                    index,
                    refusal: Refusal::Invalid(invalid),
                })
            }
        }
    }
    converted
}

/// What a dead letter keeps of an event's text: all of it, but a pixel's query string loses its
/// `token` parameter (a dead letter never holds the secret).
fn dead_letter_text(raw: &str, source: Source) -> std::borrow::Cow<'_, str> {
    match source {
        Source::Pixel => without_token(raw).into(),
        _ => raw.into(),
    }
}

/// The answer for a request's events, or its error when none was accepted.
fn answer(
    accepted: usize,
    rejected: Vec<Rejection>,
    delivery: Delivery,
) -> Result<Answer, ApiError> {
    // The last event refused for a reason a retry may overcome decides the 503 and the wait.
    let retriable = rejected.iter().rev().find_map(|r| match r.refusal {
        Refusal::Undelivered(failure) if r.refusal.is_retriable() => Some(failure),
        _ => None,
    });
    if accepted == 0 {
        if let Some(failure) = retriable {
            return Err(ApiError::Unavailable(failure));
        }
        if !rejected
            .iter()
            .any(|r| matches!(r.refusal, Refusal::Invalid(_)))
        {
            return Err(ApiError::RejectedTooLarge);
        }
        // Some invalid, the others too large for the broker: nothing was accepted, so this is
        // the 400 with every event's reason, never a 207 with `accepted: 0`.
        return Err(ApiError::AllInvalid(rejected));
    }
    Ok(Answer {
        accepted,
        rejected,
        delivery,
        retry_after_secs: retriable.map(failure_retry_after_secs),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde_json::{json, Value};

    use bytes::Bytes;

    use super::*;
    use crate::batch::{Translated, Untranslated};
    use crate::event::{self, Invalid};
    use crate::sink::memory::MemorySink;
    use crate::testing;

    fn pipeline(sink: Arc<MemorySink>) -> Pipeline {
        Pipeline::new(
            testing::config(|_| {}).ingest,
            Fleet::local(),
            sink,
            Arc::new(Shutdown::new()),
        )
    }

    fn client() -> Client {
        Client {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: "unit".into(),
        }
    }

    /// Ingests `events` (a JSON array of beacons) through a sink that refuses, as too large for
    /// the broker, every event of session `big`; returns the answer and how many records the
    /// sink was handed.
    async fn ingest_to_picky_broker(events: Value) -> (Result<Answer, ApiError>, usize) {
        let sink = Arc::new(MemorySink::answering(|record| {
            if record.key == "big" {
                Err(Failure::TooLarge)
            } else {
                Ok(())
            }
        }));
        let body = Bytes::from(events.to_string());
        let batch = Batch::split(Lane::BEACON, body, 1000, 1 << 20).unwrap();
        let answer = pipeline(Arc::clone(&sink))
            .ingest(&testing::token(), client(), batch)
            .await;
        (answer, sink.records().len())
    }

    fn codes(rejected: &[Rejection]) -> Vec<&'static str> {
        rejected.iter().map(|r| r.refusal.code()).collect()
    }

    #[tokio::test]
    async fn translated_events_keep_their_source_indices_and_what_was_trimmed() {
        let sink = Arc::new(MemorySink::accepting());
        let translated = |json: Value, trimmed: &[&str]| Translated {
            event: event::parse(Lane::BEACON, &json.to_string()).unwrap(),
            trimmed: trimmed.iter().map(|t| t.to_string()).collect(),
        };
        let batch = Batch::translated(
            Lane::BEACON,
            Source::Segment,
            vec![
                Err(Untranslated {
                    invalid: Invalid::new("unsupported_message", "not translated"),
                    raw: r#"{"type":"x"}"#.into(),
                }),
                Ok(translated(json!({"session_id": "s", "event": "a"}), &[])),
                Err(Untranslated {
                    invalid: Invalid::missing("event"),
                    raw: r#"{"type":"track"}"#.into(),
                }),
                Ok(translated(
                    json!({"session_id": "s", "event": "b"}),
                    &["context (9 bytes)"],
                )),
            ],
        );
        let answer = pipeline(Arc::clone(&sink))
            .ingest(&testing::token(), client(), batch)
            .await
            .unwrap();
        assert_eq!(answer.accepted, 2);
        let rejected: Vec<_> = answer
            .rejected
            .iter()
            .map(|r| (r.index, r.refusal.code()))
            .collect();
        assert_eq!(rejected, [(0, "unsupported_message"), (2, "missing_field")]);
        let envelopes: Vec<_> = sink
            .records()
            .iter()
            .map(|r| crate::proto::Envelope::decode(&r.value[..]).unwrap())
            .collect();
        assert!(envelopes.iter().all(|e| e.source == "segment"));
        assert_eq!(envelopes[0].trimmed, Vec::<String>::new());
        assert_eq!(envelopes[1].trimmed, ["context (9 bytes)"]);
    }

    #[tokio::test]
    async fn invalid_events_become_dead_letters_with_their_text_and_never_the_token() {
        let meta = pipeline(Arc::new(MemorySink::accepting())).meta(
            Lane::BEACON,
            Source::Pixel,
            &testing::token(),
            client(),
        );
        let keep = Keep {
            letters: true,
            ids: false,
        };
        let converted = convert(Batch::query("token=secret&session_id=s"), &meta, keep, 1024);
        let letter = &converted.letters[0];
        assert_eq!(
            (letter.code.as_str(), letter.raw.as_str()),
            ("missing_field", "session_id=s")
        );
        let body = Bytes::from(r#"[{"session_id":"s","event":"e"},{"event":"e"}]"#);
        let batch = Batch::split(Lane::BEACON, body, 10, 1024).unwrap();
        let converted = convert(batch, &meta, keep, 1024);
        let letters: Vec<_> = converted
            .letters
            .iter()
            .map(|l| (l.index, l.raw.as_str()))
            .collect();
        assert_eq!(letters, [(1, r#"{"event":"e"}"#)]);
        assert_eq!(converted.records.len(), 1);
    }

    #[tokio::test]
    async fn dead_letters_are_posted_on_their_lane_keyed_by_token_and_never_sent() {
        let sink = Arc::new(MemorySink::accepting());
        let letters: Arc<dyn Sink> = Arc::clone(&sink) as Arc<dyn Sink>;
        let fleet = Fleet::new(&testing::config(|_| {}).fleet, Some(letters));
        let pipeline = pipeline(Arc::clone(&sink)).with_fleet(fleet);
        let body = Bytes::from(r#"[{"session_id":"s","event":"e"},{"event":"e"}]"#);
        let batch = Batch::split(Lane::BEACON, body, 10, 1024).unwrap();
        let token = testing::token();
        let answer = pipeline.ingest(&token, client(), batch).await.unwrap();
        assert_eq!((answer.accepted, answer.rejected.len()), (1, 1));
        let sent = sink.records();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, Lane::BEACON);
        let posted = sink.posted();
        assert_eq!(
            posted.len(),
            1,
            "the invalid event's letter, posted, not sent"
        );
        assert_eq!(
            (posted[0].kind, posted[0].key.as_str()),
            (Lane::DEAD_LETTER, token.id.as_str())
        );
        let letter = DeadLetter::decode(posted[0].value.as_slice()).unwrap();
        assert_eq!(
            (letter.code.as_str(), letter.raw.as_str(), letter.index),
            ("missing_field", r#"{"event":"e"}"#, 1)
        );
    }

    #[tokio::test]
    async fn a_duplicate_is_answered_accepted_and_not_produced_and_a_refused_copy_is_not_one() {
        let refuse = Arc::new(AtomicBool::new(true));
        let sink = Arc::new(MemorySink::answering({
            let refuse = Arc::clone(&refuse);
            move |_| match refuse.load(Ordering::SeqCst) {
                true => Err(Failure::QueueFull),
                false => Ok(()),
            }
        }));
        let fleet = Fleet {
            dedupe: Some(Dedupe::new(None, std::time::Duration::from_secs(60))),
            ..Fleet::local()
        };
        let pipeline = pipeline(Arc::clone(&sink)).with_fleet(fleet);
        let send = || async {
            let body = Bytes::from(r#"{"session_id":"s","event":"e","id":"once"}"#);
            let batch = Batch::split(Lane::BEACON, body, 10, 1024).unwrap();
            pipeline.ingest(&testing::token(), client(), batch).await
        };
        assert_eq!(send().await.unwrap_err().code(), "queue_full");
        refuse.store(false, Ordering::SeqCst);
        assert_eq!(
            send().await.unwrap().accepted,
            1,
            "the refused copy left its id free"
        );
        assert_eq!(
            send().await.unwrap().accepted,
            1,
            "a duplicate is answered accepted"
        );
        assert_eq!(sink.records().len(), 2, "and not handed to the sink");
    }

    #[tokio::test]
    async fn native_events_say_so_in_their_source() {
        let sink = Arc::new(MemorySink::accepting());
        let body = Bytes::from(r#"{"session_id":"s","event":"e"}"#);
        let batch = Batch::split(Lane::BEACON, body, 10, 1024).unwrap();
        let pipeline = pipeline(Arc::clone(&sink));
        pipeline
            .ingest(&testing::token(), client(), batch)
            .await
            .unwrap();
        let batch = Batch::query("session_id=s&event=view");
        pipeline
            .ingest(&testing::token(), client(), batch)
            .await
            .unwrap();
        let sources: Vec<_> = sink
            .records()
            .iter()
            .map(|r| crate::proto::Envelope::decode(&r.value[..]).unwrap().source)
            .collect();
        assert_eq!(sources, ["inlet", "pixel"]);
    }

    #[tokio::test]
    async fn nothing_accepted_is_never_a_partial_answer() {
        let big = json!({"session_id": "big", "event": "e"});
        let small = json!({"session_id": "small", "event": "e"});
        let invalid = json!({"session_id": "small"});
        // Invalid and too large for the broker, none accepted: 400, with every event's reason.
        match ingest_to_picky_broker(json!([invalid, big])).await.0 {
            Err(ApiError::AllInvalid(rejected)) => {
                assert_eq!(codes(&rejected), ["missing_field", "event_too_large"])
            }
            other => panic!("{other:?}"),
        }
        // Every event too large for the broker: 413.
        let (answer, produced) = ingest_to_picky_broker(json!([big, big])).await;
        assert!(
            matches!(answer, Err(ApiError::RejectedTooLarge)),
            "{answer:?}"
        );
        assert_eq!(produced, 2);
        // Every event invalid: 400, nothing handed to the sink.
        let (answer, produced) = ingest_to_picky_broker(json!([invalid, invalid])).await;
        assert!(matches!(answer, Err(ApiError::AllInvalid(_))), "{answer:?}");
        assert_eq!(produced, 0);
        // One accepted: a partial answer naming the others.
        let answer = ingest_to_picky_broker(json!([invalid, big, small]))
            .await
            .0
            .unwrap();
        assert_eq!(answer.accepted, 1);
        assert_eq!(
            codes(&answer.rejected),
            ["missing_field", "event_too_large"]
        );
        assert_eq!(answer.retry_after_secs, None, "nothing worth a retry");
    }

    #[tokio::test]
    async fn a_retriable_failure_is_a_503_when_nothing_was_accepted() {
        let sink = Arc::new(MemorySink::answering(|_| Err(Failure::QueueFull)));
        let batch = Batch::split(
            Lane::BEACON,
            r#"{"session_id":"s","event":"e"}"#.into(),
            10,
            1000,
        )
        .unwrap();
        let answer = pipeline(sink)
            .ingest(&testing::token(), client(), batch)
            .await;
        let error = answer.unwrap_err();
        assert_eq!(error.code(), "queue_full");
        assert_eq!(error.retry_after_secs(), Some(1));
    }

    #[tokio::test]
    async fn a_query_string_beacon_is_keyed_by_its_session() {
        let sink = Arc::new(MemorySink::accepting());
        let answer = pipeline(Arc::clone(&sink))
            .ingest(
                &testing::token(),
                client(),
                Batch::query("token=t&session_id=s-1&event=view"),
            )
            .await
            .unwrap();
        assert_eq!(answer.accepted, 1);
        let records = sink.records();
        assert_eq!(records[0].key, "s-1");
        assert_eq!(records[0].kind, Lane::BEACON);
    }

    #[tokio::test]
    async fn admission_refuses_a_draining_replica_a_kind_and_an_origin() {
        let shutdown = Arc::new(Shutdown::new());
        let pipeline = Pipeline::new(
            testing::config(|_| {}).ingest,
            Fleet::local(),
            Arc::new(MemorySink::accepting()),
            Arc::clone(&shutdown),
        );
        let token = testing::token();
        assert!(pipeline.admit(&token, Lane::OCCURRENCE, None).is_ok());
        shutdown.enter(crate::shutdown::Phase::Draining);
        let error = pipeline.admit(&token, Lane::BEACON, None).unwrap_err();
        assert_eq!(error.code(), "shutting_down");
    }
}

//! Edge deduplication of the ids clients choose (a beacon's `id`, an occurrence's `uuid`, an
//! SDK's message id): an event whose id was accepted within the window is answered as accepted
//! and not produced again.
//!
//! Each id goes through two states. A request *claims* its ids before producing (`pending`);
//! once its events are accepted it *confirms* them (`done`, for the window), and *releases* the
//! claims of events that were not accepted, so a refused first copy never swallows its retry.
//! A copy that finds its id `done` is a duplicate. A copy that finds it `pending` (its twin is
//! being produced right now, maybe on another replica) is produced anyway: its twin may yet
//! fail, and an event is never lost to save a duplicate.
//!
//! Through Redis (per request that carries client ids: one pipelined round trip to claim them
//! all before producing, one to confirm them after) every replica sharing it sees every id; without Redis, or while it is unreachable, a bounded
//! in-memory cache per replica does the same for the ids this replica saw.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::backend::Backend;

/// Most ids the in-memory cache holds; past it the oldest are forgotten before their window.
pub const MEMORY_CAPACITY: usize = 1 << 20;
/// How long a claim holds without being confirmed or released (a replica that died mid-request).
const PENDING_FOR: Duration = Duration::from_secs(60);

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id is new: this copy holds it and is produced.
    First,
    /// Another copy is being produced now: this one is produced too, without holding the id.
    InFlight,
    /// A copy was accepted within the window: this one is a duplicate.
    Seen,
}

/// Deduplicates ids within a window, across the fleet when Redis is configured.
pub struct Dedupe {
    backend: Option<Arc<Backend>>,
    window: Duration,
    memory: Mutex<Memory>,
}

impl Dedupe {
    /// Deduplication within `window`, through `backend` when there is one.
    pub fn new(backend: Option<Arc<Backend>>, window: Duration) -> Dedupe {
        Dedupe {
            backend,
            window,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// Claims each of `ids` (already scoped: see [`key`]), in order.
    pub async fn claim(&self, ids: &[String]) -> Vec<Claim> {
        if ids.is_empty() {
            return Vec::new();
        }
        if let Some(claims) = self.claim_shared(ids).await {
            return claims;
        }
        let now = Instant::now();
        let mut memory = self.memory();
        ids.iter().map(|id| memory.claim(id, now)).collect()
    }

    /// Marks `ids`, claimed and accepted, as seen for the window, before the request is
    /// answered: a retry sent after the answer must find them seen, on any replica.
    pub async fn confirm(&self, ids: Vec<String>) {
        if let Some(backend) = self.remember(&ids, true) {
            settle_shared(&backend, &ids, true, self.window).await;
        }
    }

    /// Lets go of `ids`, claimed and not accepted, so that a retry is produced. Not awaited: a
    /// retry that comes first finds them pending, and is produced anyway.
    pub fn release(&self, ids: Vec<String>) {
        if let Some(backend) = self.remember(&ids, false) {
            let window = self.window;
            tokio::spawn(async move { settle_shared(&backend, &ids, false, window).await });
        }
    }

    /// Settles `ids` in memory (kept for a fallback); the backend to settle them in too.
    fn remember(&self, ids: &[String], accepted: bool) -> Option<Arc<Backend>> {
        if ids.is_empty() {
            return None;
        }
        let until = Instant::now() + self.window;
        let mut memory = self.memory();
        for id in ids {
            memory.settle(id, accepted.then_some(until));
        }
        self.backend.clone()
    }

    /// Claims through Redis in one pipelined round trip: `SET id pending NX EX .. GET` per id
    /// answers what was there (nothing, `pending` or `done`) and claims it if nothing was.
    /// `None` when Redis is unreachable. The claims are also kept in memory, for a fallback.
    async fn claim_shared(&self, ids: &[String]) -> Option<Vec<Claim>> {
        let backend = self.backend.as_ref()?;
        let found = backend
            .call(|mut connection| async move {
                let mut pipe = redis::pipe();
                for id in ids {
                    pipe.cmd("SET")
                        .arg(id)
                        .arg("pending")
                        .arg("NX")
                        .arg("EX")
                        .arg(PENDING_FOR.as_secs())
                        .arg("GET");
                }
                pipe.query_async::<Vec<Option<String>>>(&mut connection)
                    .await
            })
            .await?;
        Some(
            found
                .iter()
                .map(|was| match was.as_deref() {
                    None => Claim::First,
                    Some("pending") => Claim::InFlight,
                    Some(_) => Claim::Seen,
                })
                .collect(),
        )
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks `ids` `done` for `window` (`accepted`), or deletes their claims, in one pipelined
/// round trip.
async fn settle_shared(backend: &Backend, ids: &[String], accepted: bool, window: Duration) {
    let window = window.as_secs().max(1);
    backend
        .call(|mut connection| async move {
            let mut pipe = redis::pipe();
            for id in ids {
                if accepted {
                    pipe.set_ex(id, "done", window).ignore();
                } else {
                    pipe.del(id).ignore();
                }
            }
            pipe.query_async::<()>(&mut connection).await
        })
        .await;
}

/// The key of a client's event id: scoped to the token's project and the event's kind, since
/// ids are only unique within what one client sends.
pub fn key(project_id: &str, kind: &str, id: &str) -> String {
    format!("inlet:seen:{project_id}:{kind}:{id}")
}

/// The in-memory cache: each id's state until its expiry, oldest first for eviction.
#[derive(Default)]
struct Memory {
    ids: HashMap<String, Entry>,
    /// Ids in the order their entries were written, with that expiry: an entry is dropped
    /// when its turn comes and it was not written again since.
    order: VecDeque<(String, Instant)>,
}

#[derive(Clone, Copy)]
struct Entry {
    done: bool,
    until: Instant,
}

impl Memory {
    fn claim(&mut self, id: &str, now: Instant) -> Claim {
        self.expire(now);
        match self.ids.get(id) {
            Some(entry) if entry.until > now && entry.done => Claim::Seen,
            Some(entry) if entry.until > now => Claim::InFlight,
            _ => {
                self.write(id, false, now + PENDING_FOR);
                Claim::First
            }
        }
    }

    /// Confirms `id` until `done_until`, or releases it (`None`).
    fn settle(&mut self, id: &str, done_until: Option<Instant>) {
        match done_until {
            Some(until) => self.write(id, true, until),
            None => {
                self.ids.remove(id);
            }
        }
    }

    fn write(&mut self, id: &str, done: bool, until: Instant) {
        self.ids.insert(id.to_owned(), Entry { done, until });
        self.order.push_back((id.to_owned(), until));
    }

    /// Drops expired entries, and the oldest past [`MEMORY_CAPACITY`].
    fn expire(&mut self, now: Instant) {
        while let Some((id, until)) = self.order.front() {
            let over = self.order.len() > MEMORY_CAPACITY;
            if !over && *until > now {
                break;
            }
            if self.ids.get(id).is_some_and(|e| e.until == *until) {
                self.ids.remove(id);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_confirmed_id_is_seen_a_released_one_is_new_again() {
        let dedupe = Dedupe::new(None, Duration::from_secs(60));
        let ids = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(
            dedupe.claim(&ids).await,
            [Claim::First, Claim::First, Claim::InFlight]
        );
        dedupe.confirm(vec!["a".into()]).await;
        dedupe.release(vec!["b".into()]);
        assert_eq!(dedupe.claim(&ids[..2]).await, [Claim::Seen, Claim::First]);
    }

    #[test]
    fn memory_forgets_after_the_window_and_past_its_capacity() {
        let mut memory = Memory::default();
        let now = Instant::now();
        assert_eq!(memory.claim("a", now), Claim::First);
        memory.settle("a", Some(now + Duration::from_secs(1)));
        assert_eq!(memory.claim("a", now), Claim::Seen);
        let later = now + Duration::from_secs(2);
        assert_eq!(memory.claim("a", later), Claim::First);
        for i in 0..=MEMORY_CAPACITY {
            memory.write(&i.to_string(), true, later + PENDING_FOR);
        }
        memory.expire(later);
        assert!(memory.order.len() <= MEMORY_CAPACITY);
        assert!(!memory.ids.contains_key("a"), "the oldest went first");
    }
}

//! An in-memory [`Sink`] for unit tests: keeps every record it is handed and answers each with
//! an outcome the test chooses, so HTTP behaviour is tested without a broker.

use std::sync::Mutex;
use std::time::Duration;

use super::{BoxFuture, Outcome, Record, Sink};

type Answer = Box<dyn Fn(&Record) -> Outcome + Send + Sync>;

/// Records what it is given; answers with `answer`.
pub struct MemorySink {
    records: Mutex<Vec<Record>>,
    posted: Mutex<Vec<Record>>,
    answer: Answer,
}

impl MemorySink {
    /// A sink that accepts every record.
    pub fn accepting() -> MemorySink {
        MemorySink::answering(|_| Ok(()))
    }

    /// A sink that answers each record with `answer(record)`.
    pub fn answering(answer: impl Fn(&Record) -> Outcome + Send + Sync + 'static) -> MemorySink {
        MemorySink {
            records: Mutex::new(Vec::new()),
            posted: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        }
    }

    /// Every record handed over so far, whatever its outcome.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Every record posted so far (dead letters).
    pub fn posted(&self) -> Vec<Record> {
        self.posted.lock().unwrap().clone()
    }
}

impl Sink for MemorySink {
    fn send(&self, records: Vec<Record>, _wait_for_ack: bool) -> BoxFuture<'_, Vec<Outcome>> {
        let outcomes = records.iter().map(|r| (self.answer)(r)).collect();
        self.records.lock().unwrap().extend(records);
        Box::pin(async move { outcomes })
    }

    fn post(&self, record: Record) {
        self.posted.lock().unwrap().push(record);
    }

    fn ready(&self) -> bool {
        true
    }

    fn close(&self, _timeout: Duration) -> usize {
        0
    }

    fn in_flight(&self) -> usize {
        0
    }
}

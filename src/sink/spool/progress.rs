//! How a spool's backlog moves, as an operator watches it: records left, the rate the broker
//! takes them at, and the time left at that rate. `inlet drain` prints it (a bar on a
//! terminal, a line every `--progress-every-ms` otherwise), and a replica logs it while a
//! backlog is replayed after an outage.

use std::fmt;
use std::time::{Duration, Instant};

/// Samples of a backlog: records left and records delivered so far, over time.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// The first sample's records left, the whole of the backlog.
    total: u64,
    delivered_at_start: u64,
    last: Option<(Instant, u64)>,
    /// Records delivered a second, smoothed over the samples.
    rate: Option<f64>,
}

/// Where a backlog stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub left: u64,
    /// Records delivered a second, lately.
    pub per_sec: f64,
    /// The time left at that rate; `None` while nothing is delivered.
    pub eta: Option<Duration>,
    /// The share of the first sample's backlog delivered, 0 to 1.
    pub done: f64,
}

impl Progress {
    /// A backlog of `left` records when `delivered` were delivered already.
    pub fn new(now: Instant, left: u64, delivered: u64) -> Progress {
        Progress {
            started: now,
            total: left,
            delivered_at_start: delivered,
            last: Some((now, delivered)),
            rate: None,
        }
    }

    /// The backlog at `now`: `left` records, `delivered` delivered since the spool opened.
    pub fn sample(&mut self, now: Instant, left: u64, delivered: u64) -> Snapshot {
        if let Some((then, before)) = self.last {
            let secs = now.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                let rate = delivered.saturating_sub(before) as f64 / secs;
                // Smoothed, so one slow window does not swing the estimate.
                self.rate = Some(self.rate.map_or(rate, |r| 0.5 * r + 0.5 * rate));
                self.last = Some((now, delivered));
            }
        }
        let per_sec = self.rate.unwrap_or(0.0);
        let eta = (per_sec > 0.0).then(|| Duration::from_secs_f64(left as f64 / per_sec));
        let done = match self.total {
            0 => 1.0,
            total => 1.0 - (left.min(total) as f64 / total as f64),
        };
        Snapshot {
            left,
            per_sec,
            eta,
            done,
        }
    }

    /// Records delivered since the first sample, and the time from it to `now`.
    pub fn so_far(&self, now: Instant, delivered: u64) -> (u64, Duration) {
        let records = delivered.saturating_sub(self.delivered_at_start);
        (records, now.saturating_duration_since(self.started))
    }
}

impl fmt::Display for Snapshot {
    /// `1,234 records left, 567 records/s, about 2s left`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} records left, ", thousands(self.left))?;
        match self.eta {
            Some(eta) => write!(
                f,
                "{} records/s, about {} left",
                thousands(self.per_sec.round() as u64),
                duration(eta)
            ),
            None => f.write_str("none delivered lately"),
        }
    }
}

impl Snapshot {
    /// The snapshot as a terminal's progress bar, 30 cells wide.
    pub fn bar(&self) -> String {
        let cells = (self.done * 30.0).round() as usize;
        format!(
            "[{}{}] {:>3}% {self}",
            "#".repeat(cells),
            ".".repeat(30 - cells.min(30)),
            (self.done * 100.0).floor() as u64
        )
    }
}

/// A replica's watch over its backlog: what to log as [`observe`](Watch::observe) sees the
/// spool, sample by sample.
#[derive(Debug, Default)]
pub struct Watch {
    backlog: Option<(Progress, Instant)>,
}

/// What a [`Watch`] has to say: a backlog that began, how it moves, or that it is delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Began { left: u64 },
    Moving(Snapshot),
    Delivered { records: u64, took: Duration },
}

impl Watch {
    /// The spool at `now`: `left` records, `delivered` so far, and whether its oldest record is
    /// `behind` (older than `every`). A backlog begins when it falls behind, is reported every
    /// `every` while it stays behind, and ends when it catches up.
    pub fn observe(
        &mut self,
        now: Instant,
        left: u64,
        delivered: u64,
        behind: bool,
        every: Duration,
    ) -> Option<Seen> {
        match (&mut self.backlog, behind) {
            (None, true) => {
                self.backlog = Some((Progress::new(now, left, delivered), now));
                Some(Seen::Began { left })
            }
            (Some((progress, reported)), true) => {
                let snapshot = progress.sample(now, left, delivered);
                (now.duration_since(*reported) >= every).then(|| {
                    *reported = now;
                    Seen::Moving(snapshot)
                })
            }
            (Some((progress, _)), false) => {
                let (records, took) = progress.so_far(now, delivered);
                self.backlog = None;
                Some(Seen::Delivered { records, took })
            }
            (None, false) => None,
        }
    }
}

/// `n` with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `d` as a person reads it: `42s`, `3m 05s`, `2h 10m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_s_rate_and_time_left_follow_its_deliveries() {
        let start = Instant::now();
        let mut progress = Progress::new(start, 100_000, 500);
        let first = progress.sample(start, 100_000, 500);
        assert_eq!(first.eta, None);
        assert_eq!(
            first.to_string(),
            "100,000 records left, none delivered lately"
        );
        let later = progress.sample(start + Duration::from_secs(10), 70_000, 30_500);
        assert_eq!(later.per_sec, 3_000.0);
        assert_eq!(later.eta, Some(Duration::from_secs_f64(70_000.0 / 3_000.0)));
        assert_eq!(
            later.to_string(),
            "70,000 records left, 3,000 records/s, about 23s left"
        );
        assert!((later.done - 0.3).abs() < 1e-9);
        assert!(later
            .bar()
            .starts_with("[#########.....................]  30% 70,000"));
        assert_eq!(progress.so_far(start, 30_500).0, 30_000);
        // A slow window moves the rate half-way, not all the way.
        let slow = progress.sample(start + Duration::from_secs(20), 69_000, 31_500);
        assert_eq!(slow.per_sec, 1_550.0);
    }

    #[test]
    fn a_watch_reports_a_backlog_when_it_falls_behind_as_it_moves_and_when_it_is_delivered() {
        let every = Duration::from_secs(10);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut watch = Watch::default();
        assert_eq!(
            watch.observe(at(0), 5, 0, false, every),
            None,
            "in step with Kafka"
        );
        assert_eq!(
            watch.observe(at(1), 9_000, 0, true, every),
            Some(Seen::Began { left: 9_000 })
        );
        assert_eq!(
            watch.observe(at(2), 9_000, 0, true, every),
            None,
            "not every sample"
        );
        let Some(Seen::Moving(snapshot)) = watch.observe(at(11), 4_000, 5_000, true, every) else {
            panic!("a report after 10 s")
        };
        assert_eq!(snapshot.left, 4_000);
        assert!(snapshot.per_sec > 0.0 && snapshot.eta.is_some());
        assert_eq!(
            watch.observe(at(15), 0, 9_000, false, every),
            Some(Seen::Delivered {
                records: 9_000,
                took: Duration::from_secs(14)
            })
        );
        assert_eq!(watch.observe(at(16), 0, 9_000, false, every), None);
    }

    #[test]
    fn durations_and_counts_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(duration(Duration::from_secs(7_800)), "2h 10m");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(3_500_000), "3,500,000");
    }
}

//! Shard keys: which Kafka key an event carries, so each key's events stay in order on one
//! partition.
//!
//! Beacons are keyed by their `session_id` (a session replays in order), occurrences by the
//! token's `account_id` (an account's errors are grouped by one consumer). The producer uses
//! librdkafka's `murmur2_random` partitioner, which is the Java client's default: the same key
//! lands on the same partition whichever client wrote it. [`partition`] computes that choice.

use crate::lane::{KeyRule, Lane};
use crate::proto::envelope::Event;

/// The Kafka key of an event of `lane` sent with the token `token_id` of the account
/// `account_id`, by the lane's [`KeyRule`].
pub fn shard_key<'a>(
    lane: Lane,
    event: &'a Event,
    account_id: &'a str,
    token_id: &'a str,
) -> &'a str {
    match (lane.spec().key, event) {
        (KeyRule::Session, Event::Beacon(b)) => &b.session_id,
        (KeyRule::Session, Event::Recording(r)) => &r.session_id,
        (KeyRule::Token, _) => token_id,
        _ => account_id,
    }
}

/// Kafka's murmur2 hash of `data` (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition `murmur2_random` (and the Java client) picks for a non-empty `key`.
pub fn partition(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        for key in ["a", "session-1", "acct-42", "ünïcode"] {
            let p = partition(key.as_bytes(), 512);
            assert!(p < 512);
            assert_eq!(p, partition(key.as_bytes(), 512));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partitions_are_in_range_and_stable(key in proptest::collection::vec(any::<u8>(), 1..256), n in 1u32..4096) {
            let p = partition(&key, n);
            prop_assert!(p < n);
            prop_assert_eq!(p, partition(&key, n));
        }

        #[test]
        fn a_beacon_is_keyed_by_its_session(session in "[ -~]{1,128}", account in "[ -~]{1,64}") {
            let beacon = Event::Beacon(crate::proto::Beacon { session_id: session.clone(), ..Default::default() });
            prop_assert_eq!(shard_key(Lane::BEACON, &beacon, &account, "t"), session.as_str());
            let occurrence = Event::Occurrence(crate::proto::Occurrence::default());
            prop_assert_eq!(shard_key(Lane::OCCURRENCE, &occurrence, &account, "t"), account.as_str());
            prop_assert_eq!(shard_key(Lane::DEAD_LETTER, &occurrence, &account, "t"), "t");
        }
    }
}

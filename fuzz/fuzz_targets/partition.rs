//! `inlet::key::partition` (Kafka's murmur2, the Java client's and librdkafka's choice).
//!
//! Input: bytes 0..4 are the partition count (little-endian u32), the rest is the key.
//! Checks: no panic; the partition is below the count and stable; and it is the partition
//! librdkafka itself computes (`rd_kafka_msg_partitioner_murmur2`, linked through inlet), so
//! a key inlet reasons about lands where the producer really sends it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (count, key) = data.split_at(4);
    let partitions = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
    if partitions == 0 {
        return; // a topic has at least one partition; `% 0` is not a case inlet meets
    }
    let p = inlet::key::partition(key, partitions);
    assert!(p < partitions, "partition {p} of {partitions}");
    assert_eq!(p, inlet::key::partition(key, partitions), "unstable");
    if let Ok(cnt) = i32::try_from(partitions) {
        // SAFETY: this partitioner reads only `key[..keylen]` and never touches the topic
        // or the opaques (rdkafka_msg.c), so null pointers are fine there.
        let theirs = unsafe {
            rdkafka_sys::bindings::rd_kafka_msg_partitioner_murmur2(
                std::ptr::null(),
                key.as_ptr().cast(),
                key.len(),
                cnt,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(
            i64::from(p),
            i64::from(theirs),
            "inlet and librdkafka disagree on {key:?} over {partitions}"
        );
    }
});

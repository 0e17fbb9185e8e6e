//! `inlet::decode::decompress` on arbitrary bodies in every encoding.
//!
//! Input: byte 0 picks the encoding (`% 5`: identity, gzip, deflate, br, zstd) and the cap
//! (`/ 5 % 4`: 1 MiB, 4096, 64, 0 bytes); the rest is the body.
//! Checks: no panic, no hang, bounded memory (a bomb stops at the cap); the output never exceeds
//! the cap; identity returns the body unchanged; errors are `malformed_encoding` or
//! `decoded_body_too_large`; and the cap is exact: a body that decodes to N bytes decodes the
//! same at a cap of exactly N, and is refused as too large at N - 1.
#![no_main]

use bytes::Bytes;
use inlet::decode::{decompress, Encoding};
use libfuzzer_sys::fuzz_target;

const ENCODINGS: [Encoding; 5] = [
    Encoding::Identity,
    Encoding::Gzip,
    Encoding::Deflate,
    Encoding::Brotli,
    Encoding::Zstd,
];
const LIMITS: [usize; 4] = [1 << 20, 4096, 64, 0];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(selector) % 5];
    let limit = LIMITS[usize::from(selector) / 5 % 4];
    let body = Bytes::copy_from_slice(body);
    match decompress(encoding, body.clone(), limit) {
        Ok(out) => {
            assert!(
                out.len() <= limit,
                "{encoding:?}: {} bytes over the cap {limit}",
                out.len()
            );
            if encoding == Encoding::Identity {
                assert_eq!(out, body);
            }
            let exact = decompress(encoding, body.clone(), out.len()).unwrap_or_else(|e| {
                panic!(
                    "{encoding:?}: {} bytes refused at cap {}: {e:?}",
                    out.len(),
                    out.len()
                )
            });
            assert_eq!(exact, out, "{encoding:?}: output differs at the exact cap");
            if !out.is_empty() {
                let under = decompress(encoding, body, out.len() - 1);
                assert!(
                    matches!(under, Err(ref e) if e.code() == "decoded_body_too_large"),
                    "{encoding:?}: {} bytes at cap {}: {under:?}",
                    out.len(),
                    out.len() - 1
                );
            }
        }
        Err(e) => assert!(
            matches!(e.code(), "malformed_encoding" | "decoded_body_too_large"),
            "{encoding:?}: unexpected error {e:?}"
        ),
    }
});

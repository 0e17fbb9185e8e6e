//! Content encodings for request bodies, as clients compress them.
#![allow(dead_code)]

use std::io::Write;

/// `data` gzip-compressed (best compression: a compression bomb stays small).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `data` brotli-compressed (quality 5, a 4 MiB window).
pub fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
    w.write_all(data).unwrap();
    drop(w);
    out
}

/// `data` zstd-compressed (level 3).
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).unwrap()
}

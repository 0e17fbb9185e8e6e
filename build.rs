//! Generates the protobuf types from `proto/` at build time with protox (a pure-Rust protobuf
//! compiler), so building inlet needs no system `protoc`: inlet's own messages, and the
//! OpenTelemetry protocol's (`proto/opentelemetry/`, the official files as released), whose
//! descriptors are also kept (`otlp.bin`) for reading OTLP/JSON by them.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inlet = [
        "proto/inlet/v1/envelope.proto",
        "proto/inlet/v1/dead_letter.proto",
    ];
    let otlp = [
        "proto/opentelemetry/proto/collector/trace/v1/trace_service.proto",
        "proto/opentelemetry/proto/collector/logs/v1/logs_service.proto",
        "proto/opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(inlet, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    let descriptors = protox::compile(otlp, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("otlp.bin"), descriptors.encode_to_vec())?;
    // Their comments are the specification's prose, with diagrams rustdoc would take for code.
    prost_build::Config::new()
        .disable_comments(["."])
        .compile_fds(descriptors)?;
    Ok(())
}

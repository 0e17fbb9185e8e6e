//! Generates the protobuf types from `proto/` at build time with protox (a pure-Rust protobuf
//! compiler), so building inlet needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/inlet/v1/envelope.proto",
        "proto/inlet/v1/dead_letter.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}

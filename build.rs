//! Compiles `proto/` without a system `protoc`: `protox` parses the files in pure Rust and
//! `tonic-prost-build` generates the code from the resulting descriptor set. The encoded
//! descriptor set is also written to `OUT_DIR` for gRPC server reflection, because
//! `compile_fds` ignores `file_descriptor_set_path`.

use std::{env, fs, path::PathBuf};

use protox::prost::Message as _;

const PROTOS: &[&str] = &["proto/order/v1/order.proto", "proto/pay/v1/pay.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("paynotify_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}

//! Generated gRPC code (see `build.rs` and `proto/`).

// Generated code: its doc comments come from the .proto files and are not held to clippy.
#[allow(clippy::all)]
pub mod order {
    pub mod v1 {
        tonic::include_proto!("order.v1");
    }
}

#[allow(clippy::all)]
pub mod pay {
    pub mod v1 {
        tonic::include_proto!("pay.v1");
    }
}

/// The encoded descriptor set of every proto in `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/paynotify_descriptor.bin"));

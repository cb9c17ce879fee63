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

/// The gRPC metadata entry order-svc puts on every FAILED_PRECONDITION, naming which refusal
/// it is so that callers (pay-svc) need not parse the message.
pub mod order_refusal {
    pub const KEY: &str = "x-order-refusal";
    /// The payment's amount is not the order's pay_money.
    pub const AMOUNT_MISMATCH: &str = "amount_mismatch";
    /// The WeChat transaction already paid another order.
    pub const TRANSACTION_REUSED: &str = "transaction_reused";
    /// The order is in a state the call does not move it from.
    pub const UNEXPECTED_STATE: &str = "unexpected_state";
}

/// The encoded descriptor set of every proto in `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/paynotify_descriptor.bin"));

//! The shared library of the payment-callback services.
//!
//! - [`proto`]: the generated gRPC code for `order.v1` and `pay.v1`.
//! - [`wxpay`]: WeChat Pay API v2 — XML, signatures, ack replies (pure functions), and the
//!   HTTP client for WeChat's merchant API.
//! - [`auth`]: bearer-token authentication of the internal gRPC calls.
//! - [`config`]: defaults → TOML file → environment → flags, for every binary.
//! - [`replicas`]: calls spread over several replicas of a downstream service.
//! - [`tls`]: optional TLS on the internal gRPC hops (server identity, client trust).
//! - [`runtime`]: telemetry, shutdown signal, gRPC reflection: what every service shares.
//! - [`error_chain`]: an error and its sources on one line, for logs.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod proto;
pub mod replicas;
pub mod runtime;
pub mod tls;
pub mod wxpay;

/// An error and its sources on one line (`outer: cause: root cause`), for log lines and
/// messages that must say why, not only what.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

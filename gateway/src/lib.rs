//! gateway: the thin HTTP front WeChat Pay calls.
//!
//! WeChat POSTs a signed XML notification to `/wxpay/notify`; the gateway parses it, hands
//! every field to pay-svc `ConfirmPayment` over gRPC, and maps the verdict to WeChat's ack
//! XML. It holds no merchant key: verification is pay-svc's job.

mod config;
mod http;
mod metrics;
mod notify;
mod pay_client;

pub use config::{Config, ConfigError};
pub use http::{Server, bind, serve_on};

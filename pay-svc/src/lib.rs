//! pay-svc: the service that talks to WeChat Pay (API v2) on behalf of the order system.
//!
//! It serves `pay.v1.PayService` over gRPC:
//! - `CreateNativePay`: unifiedorder (NATIVE) for an unpaid order, priced by order-svc.
//! - `ConfirmPayment`: a notification forwarded by the gateway is screened
//!   ([`notification`]), checked against the order and confirmed with orderquery ([`claim`],
//!   [`confirm`]), then order-svc marks the order paid ([`orders`]). The answer is a
//!   [`verdict`]; only a failure to reach one is an error status ([`error`]).
//! - `QueryOrder`: orderquery, typed.
//!
//! In the background, [`reconcile`] finds orders whose notification never came.
//! [`config`] holds the settings and [`server`] starts and stops it all.

pub mod claim;
pub mod config;
pub mod confirm;
pub mod error;
pub mod metrics;
pub mod notification;
pub mod orders;
pub mod paid_orders;
pub mod reconcile;
pub mod request_id;
pub mod server;
pub mod service;
pub mod verdict;
pub mod wechat;

pub use config::{Config, ConfigError};
pub use error::PayError;
pub use server::{Server, bind};

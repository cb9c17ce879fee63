//! order-svc: owns the orders (`tb_order`), their log (`tb_order_log`) and the payment
//! anomalies (`pay_anomaly`), and serves them as the gRPC `order.v1.OrderService`.
//!
//! pay-svc calls [`MarkPaid`](paynotify::proto::order::v1::MarkPaidRequest) once WeChat has
//! confirmed a payment; this crate makes that state change atomic and exactly-once with
//! conditional updates inside one database transaction, so any number of calls and any number
//! of order-svc processes on one database agree.
//!
//! - [`config`]: the typed [`Config`] and its command line / environment.
//! - [`server`]: [`bind`] and [`Server::run_until`].
//! - [`service`]: the gRPC mapping; [`store`]: the transactions; [`db`]: connection, entities,
//!   migrations and schema checks; [`domain`]: validated requests and outcomes.
//! - [`testing`]: fresh databases and in-process servers for tests of this and other crates.

pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod testing;

pub use config::{Config, SchemaMode};
pub use error::OrderError;
pub use server::{Server, bind};

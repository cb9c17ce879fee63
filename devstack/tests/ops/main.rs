#![allow(clippy::unwrap_used)]
//! Operability tests, in their own binary: the log test installs this process's global
//! `tracing` subscriber, and the metrics test reads the process-wide registry, so neither may
//! share a process with unrelated traffic. Tests that send notifications run one at a time
//! ([`support::serial`]).
//!
//! - `grpcurl`: the README's grpcurl examples, with the real grpcurl binary.
//! - `logs`: every JSON log line about one notification carries its request id and
//!   out_trade_no, from the gateway through pay-svc to order-svc.
//! - `metrics`: after a known sequence of notifications the gateway's `/metrics` and the
//!   admin ports of pay-svc and order-svc show the expected counts.
//! - `startup`: the devstack binary's `--help` and bad-setting errors.

mod grpcurl;
mod logs;
mod metrics;
mod startup;
mod support;

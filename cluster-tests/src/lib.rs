//! cluster-tests: the services as they run in production — separate OS processes of the real
//! binaries, talking over real sockets — started, killed, restarted and stopped by a test.
//!
//! The in-process stacks of devstack and the per-crate tests share one runtime and one
//! address space; they cannot show what a `kill -9`, a SIGTERM during a deploy, or two
//! replicas of every service over one database do. This crate's harness can:
//!
//! - [`binaries`]: builds `order-svc`, `pay-svc`, `gateway` and `wxpay-sim` once per test run
//!   as `cargo test` builds them (a no-op inside a `cargo test` of the workspace) and finds
//!   them next to the test executable;
//! - [`Process`]: one binary on a free port of 127.0.0.1 with its own environment and log
//!   file, waited on until ready, SIGKILLed or SIGTERMed, restarted on the same port, and
//!   killed when dropped;
//! - [`Cluster`]: N order-svc over one database, N pay-svc, N gateways and one simulator,
//!   optionally behind a [`Balancer`] standing in for the reverse proxy in front of the
//!   gateways; on a panic it prints every process's log tail and keeps the logs;
//! - [`Ledger`]: what the database says afterwards, read with plain SQL, and the
//!   exactly-once checks over it.
//!
//! The tests themselves are in `tests/it/` (see `docs/DEPLOYMENT.md` for running them
//! against other database servers).

pub mod balancer;
pub mod binaries;
pub mod cluster;
pub mod ledger;
pub mod process;

pub use balancer::Balancer;
pub use cluster::{Cluster, ClusterConfig, OrderClient};
pub use ledger::Ledger;
pub use process::{Process, Service};

/// Writes a line to the real stderr, past the test harness's output capture, so that counts
/// and timings of a passing run show in CI logs too.
pub fn report(line: impl AsRef<str>) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", line.as_ref());
}

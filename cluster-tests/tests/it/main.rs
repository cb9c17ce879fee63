//! The multi-process suites: every test starts the real binaries as separate processes
//! (cluster_tests::Cluster) over a fresh database of its own. They run one at a time (a
//! cluster is six or more processes on a two-core machine), each bounded in time.
//!
//! - `replicas`: two of every service over one PostgreSQL / MariaDB, 500 orders × 5
//!   concurrent notifications over both gateways → each paid exactly once (issue 3);
//! - `replica_killed`: one order-svc, pay-svc and gateway `kill -9`ed while WeChat (the
//!   simulator) delivers; its retries complete every payment (issue 3);
//! - `chaos`: faults in WeChat, order-svc killed and restarted, reconciliation (issue 4);
//! - `gateway_restart`: the gateway SIGTERMed and started again under load (issue 4);
//! - `shutdown`: SIGTERM when idle and with a request in flight (issue 4);
//! - `reconcile_backlog`, `cancelled_begin`: bugs found here, now fixed, and guarded;
//! - `allocator`: the services' binaries allocate with jemalloc (issue 6).

#![allow(clippy::unwrap_used)]

mod allocator;
mod cancelled_begin;
mod chaos;
mod gateway_restart;
mod reconcile_backlog;
mod replica_killed;
mod replicas;
mod shutdown;
mod support;

//! The load tool of issue 6: the real stack as separate release processes on 127.0.0.1,
//! correctly signed notifications posted to the gateway at a chosen concurrency and duplicate
//! ratio, the two floors measured in the same run (MarkPaid straight into order-svc, and a
//! bare HTTP server that only acks), every process's peak memory and CPU from `/proc`, and a
//! database check at the end. `docs/PERFORMANCE.md` has the figures and how to reproduce them.
//!
//! - [`stack`]: spawning the services; [`ack_server`]: the HTTP floor;
//! - [`orders`], [`seed`]: orders for a run, through order-svc or bulk into the table;
//! - [`load`]: the bounded load loop and its callers; [`report`]: what is printed;
//! - [`check`]: the database invariants; [`run`]: the scenarios, in order;
//! - [`procfs`]: memory and CPU of each process; [`profile`]: optional `perf record` per phase;
//! - [`stages`]: where a phase's time went, from pay-svc's and order-svc's own metrics.

pub mod ack_server;
pub mod check;
pub mod cli;
pub mod load;
pub mod orders;
pub mod procfs;
pub mod profile;
pub mod report;
pub mod run;
pub mod seed;
pub mod stack;
pub mod stages;

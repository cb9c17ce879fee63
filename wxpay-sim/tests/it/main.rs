//! wxpay-sim's integration tests: each starts its own simulator (and receivers) on port 0.
// The harness in `support` panics on setup failures like the tests themselves do.
#![allow(clippy::unwrap_used)]

mod cli;
mod delivery;
mod faults;
mod fidelity;
mod startup;
mod support;
mod wechat_api;

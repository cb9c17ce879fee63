//! pay-svc's integration tests: each starts its own order-svc (fresh SQLite database), WeChat
//! simulator and pay-svc in-process on port 0, and talks to pay-svc over gRPC.

mod closing;
mod confirm;
mod faults;
mod lost_paid_write;
mod measure;
// The test CA and server certificate of order-svc's tests.
#[path = "../../../order-svc/tests/it/pki.rs"]
mod pki;
mod reconcile;
mod rotation;
mod server;
mod sim_fidelity;
mod startup;
mod support;
mod tls;
mod wechat;

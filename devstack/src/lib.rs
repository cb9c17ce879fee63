//! devstack: the whole system in one process, for a local demo and for end-to-end tests.
//!
//! [`Stack::start`] runs order-svc, pay-svc, the gateway and the WeChat Pay simulator on real
//! sockets (their default ports, or free ones for tests) and wires them together the way a
//! deployment would: pay-svc calls the simulator as WeChat, the simulator posts notifications
//! to the gateway.

pub mod demo;
pub mod stack;

pub use stack::{DEMO_GATEWAY_TOKEN, DEMO_GRPC_TOKEN, DEMO_ORDER_SVC_TOKEN, Stack, StackConfig};

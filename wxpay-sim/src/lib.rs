//! wxpay-sim: a local stand-in for WeChat Pay API v2 and its notification delivery, so the
//! whole payment-callback flow runs and is tested on one machine with no public domain.
//!
//! - WeChat's endpoints: `/pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder` (XML,
//!   checked and signed as WeChat does).
//! - the control API under `/sim` (JSON; shapes in [`model`], typed client [`SimClient`]):
//!   pay an order (partly with a coupon if asked), move it to USERPAYING, ACCEPT, PAYERROR or
//!   REVOKED, inspect, read and replay its notifications, read counters.
//! - delivery: the signed payment notification POSTed to the order's notify_url on WeChat's
//!   retry schedule, scaled by [`Config::time_scale`].
//! - [`Faults`]: a slow or failing orderquery, lost, duplicated or reordered notifications, a
//!   signed field no receiver knows ([`UNKNOWN_FIELD`]), set at start or at run time through
//!   `PUT /sim/faults`.
//!
//! - [`cli`]: the `wxpay-sim` binary's commands (`serve`, `pay`, `trade-state`, `attempts`,
//!   `replay`, `stats`, `notify`).
//!
//! Start one in a test with [`bind`] on `127.0.0.1:0` and [`Server::run_until`].

mod api;
pub mod cli;
mod client;
pub mod config;
mod control;
mod delivery;
mod faults;
mod ids;
pub mod model;
mod notification;
mod server;
mod state;
mod stats;

pub use client::{ClientError, SimClient};
pub use config::{
    Config, DEFAULT_ADDR, DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID, Merchant, SignAlgorithm,
};
pub use delivery::{NotifyReply, RETRY_INTERVALS, is_exact_success_ack, post_notification};
pub use faults::{FailMode, Faults, FaultsError, MAX_DUPLICATES};
pub use model::{
    Attempt, NewOrder, PayRequest, PayResult, ReplayResult, SignedNotification, SimOrder, SimStats,
    TradeState,
};
pub use notification::{Coupon, Notification, UNKNOWN_FIELD, signed_notification, signed_xml};
pub use server::{Server, bind};

pub(crate) use paynotify::error_chain;

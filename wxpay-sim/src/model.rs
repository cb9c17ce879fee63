//! The control API's JSON shapes, shared by the server side (`control`) and [`crate::SimClient`],
//! so the two cannot drift apart. Field names are the wire names; keep them stable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An order's state in WeChat's records: `trade_state` of orderquery (SPEC §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
    Accept,
}

impl TradeState {
    /// The wire value, e.g. `NOTPAY`.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
            TradeState::Accept => "ACCEPT",
        }
    }

    /// The `trade_state_desc` WeChat sends with it.
    pub fn description(self) -> &'static str {
        match self {
            TradeState::Success => "支付成功",
            TradeState::Refund => "转入退款",
            TradeState::NotPay => "订单未支付",
            TradeState::Closed => "订单已关闭",
            TradeState::Revoked => "已撤销（付款码支付）",
            TradeState::UserPaying => "用户支付中（付款码支付）",
            TradeState::PayError => "支付失败，请重新下单支付",
            TradeState::Accept => "已接收，等待扣款",
        }
    }

    /// Every state, in SPEC §3.3's order.
    pub const ALL: [TradeState; 8] = [
        TradeState::Success,
        TradeState::Refund,
        TradeState::NotPay,
        TradeState::Closed,
        TradeState::Revoked,
        TradeState::UserPaying,
        TradeState::PayError,
        TradeState::Accept,
    ];
}

impl std::fmt::Display for TradeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the wire value (`USERPAYING`), as the CLI takes it.
impl std::str::FromStr for TradeState {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        TradeState::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<_> = TradeState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown trade_state `{value}`; one of {}", names.join(", "))
            })
    }
}

/// One delivery of a notification to the order's notify_url.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the request was sent (or, for a dropped attempt, when it would have been).
    pub at: DateTime<Utc>,
    /// The reply's HTTP status; `null` when there was no reply (timeout, refused, dropped).
    pub http_status: Option<u16>,
    /// Whether WeChat would count the reply as SUCCESS (2xx and the exact SUCCESS ack).
    pub success: bool,
    /// Why the attempt failed; `null` on success.
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// `GET /sim/orders/{out_trade_no}`: WeChat's record of an order and its notifications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimOrder {
    pub out_trade_no: String,
    pub trade_state: TradeState,
    pub transaction_id: Option<String>,
    pub total_fee: i64,
    /// What the payment's coupons covered, in fen; `null` when unpaid or paid in cash only.
    #[serde(default)]
    pub coupon_fee: Option<i64>,
    pub notify_url: String,
    /// Every notification attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// Whether a SUCCESS ack has been received since the notification schedule last started.
    pub delivered: bool,
}

/// `POST /sim/pay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayRequest {
    pub out_trade_no: String,
    /// Start delivering the payment notification (default true).
    #[serde(default = "yes")]
    pub notify: bool,
    /// The payment's transaction_id; a fresh one when absent. Lets a hand-signed
    /// notification (e.g. the README's grpcurl ConfirmPayment) match WeChat's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Part of the order paid with a coupon, in fen (1 to total_fee): the notification and
    /// orderquery then carry `cash_fee` = total_fee − coupon_fee and the `coupon_*` fields
    /// (SPEC §1.2). Absent: paid in cash, `cash_fee` = total_fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_fee: Option<i64>,
}

impl PayRequest {
    /// Pay `out_trade_no` in cash with a fresh transaction_id, notifying.
    pub fn new(out_trade_no: impl Into<String>) -> Self {
        PayRequest {
            out_trade_no: out_trade_no.into(),
            notify: true,
            transaction_id: None,
            coupon_fee: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// The answer to `POST /sim/pay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayResult {
    pub transaction_id: String,
    pub total_fee: i64,
    /// What the user paid in cash: total_fee less any coupon.
    #[serde(default)]
    pub cash_fee: i64,
}

/// `POST /sim/orders/{out_trade_no}/trade_state`: an unpaid order moves to a state only a
/// real user's bank or terminal would cause (SPEC §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeStateRequest {
    /// One of USERPAYING, ACCEPT, PAYERROR, REVOKED, or NOTPAY (the user gave up).
    pub trade_state: TradeState,
}

/// `POST /sim/orders`: an order placed directly in WeChat's records, without unifiedorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub out_trade_no: String,
    pub total_fee: i64,
    pub notify_url: String,
    /// Defaults to a fixed description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Echoed in the notification, as if given at unifiedorder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
}

/// `GET /sim/orders/{out_trade_no}/notification`: the payment notification of a paid order
/// as the next attempt would POST it (a fresh nonce_str and signature each time), without
/// sending it: for feeding WeChat's exact message to a handler directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNotification {
    pub notify_url: String,
    /// The XML body.
    pub body: String,
}

/// `POST /sim/orders/{out_trade_no}/notify` (the body is optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Restart WeChat's whole retry schedule instead of delivering once now.
    #[serde(default)]
    pub restart_schedule: bool,
}

/// The answer to a replay: the attempts it made (one per copy sent), or that a fresh schedule
/// started in the background.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayResult {
    pub scheduled: bool,
    pub attempts: Vec<Attempt>,
}

/// `GET /sim/stats`: counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub unifiedorder_calls: u64,
    pub orderquery_calls: u64,
    pub closeorder_calls: u64,
    /// Notification requests actually sent (each duplicate copy counts).
    pub notifications_sent: u64,
    /// Replies that WeChat would count as SUCCESS.
    pub notifications_acked: u64,
    /// Attempts dropped by the `notify_drop_ratio` fault (not sent, not in `notifications_sent`).
    pub notifications_dropped: u64,
}

/// Every control-API error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_states_use_wechat_spelling() {
        for state in TradeState::ALL {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert_eq!(
            serde_json::from_str::<TradeState>("\"ACCEPT\"").unwrap(),
            TradeState::Accept
        );
        assert!("accept".parse::<TradeState>().is_err());
    }

    #[test]
    fn pay_notifies_unless_told_not_to() {
        let request: PayRequest = serde_json::from_str(r#"{"out_trade_no": "A1"}"#).unwrap();
        assert!(request.notify);
        let request: PayRequest =
            serde_json::from_str(r#"{"out_trade_no": "A1", "notify": false}"#).unwrap();
        assert!(!request.notify);
        assert_eq!(request.coupon_fee, None);
        let request: PayRequest =
            serde_json::from_str(r#"{"out_trade_no": "A1", "coupon_fee": 30}"#).unwrap();
        assert_eq!(request.coupon_fee, Some(30));
    }
}

//! What a valid request is, and what the store answers: plain types between the gRPC mapping
//! ([`crate::service`]) and the transactions ([`crate::store`]). Validation happens here, once,
//! so the store only ever sees values that fit the original columns.

use chrono::{Duration, NaiveDateTime, SubsecRound, Utc};
use paynotify::wxpay::time::parse_time_end;

use crate::db::entities::{order, order_status, pay_anomaly, pay_status};
use crate::error::OrderError;

/// WeChat's limit for `out_trade_no` and `transaction_id`.
pub const MAX_ID_CHARS: usize = 32;
/// `tb_order_log.remarks` is `varchar(100)`.
pub const MAX_REMARKS_CHARS: usize = 100;
/// `tb_order.username` is `varchar(50)`.
pub const MAX_USERNAME_CHARS: usize = 50;
pub const DEFAULT_PENDING_LIMIT: u64 = 100;
pub const MAX_PENDING_LIMIT: u64 = 1000;

/// "Now" as stored: UTC, whole seconds, like the original `datetime` columns keep it, so every
/// backend stores and compares the same value.
pub fn now_utc() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(0)
}

/// A payment WeChat has confirmed, checked: the input of `MarkPaid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotice {
    pub order_id: String,
    pub transaction_id: String,
    /// Fits the `int` money columns.
    pub amount_fen: i32,
    /// WeChat's `time_end`, converted to UTC.
    pub paid_at: NaiveDateTime,
}

impl PaymentNotice {
    pub fn new(
        order_id: &str,
        transaction_id: &str,
        amount_fen: i64,
        time_end: &str,
    ) -> Result<Self, OrderError> {
        Ok(PaymentNotice {
            order_id: check_id("order_id", order_id)?,
            transaction_id: check_id("transaction_id", transaction_id)?,
            amount_fen: check_money("amount_fen", amount_fen)?,
            paid_at: time_end_to_utc(time_end)?,
        })
    }
}

/// WeChat's `time_end` (`yyyyMMddHHmmss`, Beijing time) as naive UTC.
pub fn time_end_to_utc(time_end: &str) -> Result<NaiveDateTime, OrderError> {
    if time_end.len() != 14 || !time_end.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OrderError::invalid(
            "time_end",
            "expected 14 digits yyyyMMddHHmmss",
        ));
    }
    parse_time_end(time_end)
        .map(|utc| utc.naive_utc())
        .map_err(|_| OrderError::invalid("time_end", "not a valid date and time"))
}

/// An order to create, checked: the input of `CreateOrder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// `None`: draw a snowflake id.
    pub id: Option<String>,
    pub pay_money: i32,
    pub total_money: i32,
    pub total_num: i32,
    pub username: Option<String>,
}

impl NewOrder {
    /// Zero `total_money` / `total_num` mean "not given" (proto3 defaults).
    pub fn new(
        id: &str,
        pay_money: i64,
        total_money: i64,
        total_num: i64,
        username: &str,
    ) -> Result<Self, OrderError> {
        let id = if id.is_empty() {
            None
        } else {
            Some(check_out_trade_no(id)?)
        };
        let pay_money = check_money("pay_money", pay_money)?;
        let total_money = match total_money {
            0 => pay_money,
            given => check_money("total_money", given)?,
        };
        let total_num = match total_num {
            0 => 1,
            given => i32::try_from(given)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| OrderError::invalid("total_num", "must be > 0"))?,
        };
        if username.chars().count() > MAX_USERNAME_CHARS {
            return Err(OrderError::invalid(
                "username",
                format!("at most {MAX_USERNAME_CHARS} characters"),
            ));
        }
        Ok(NewOrder {
            id,
            pay_money,
            total_money,
            total_num,
            username: (!username.is_empty()).then(|| username.to_owned()),
        })
    }
}

/// Which unpaid orders `ListPendingOrders` wants, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingQuery {
    pub min_age: Duration,
    pub max_age: Option<Duration>,
    pub limit: u64,
    /// Only orders after this one in (create_time, id) order; `None`: from the oldest.
    pub after: Option<PageCursor>,
}

/// Where a page of pending orders ended: the last order's `(create_time, id)`, the key the
/// listing is sorted by. Sent to the caller as an opaque `next_page_token`,
/// `<unix seconds>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub create_time: NaiveDateTime,
    pub id: String,
}

impl PageCursor {
    /// `tb_order.id` is `varchar(200)`. A token carries the id of a row order-svc listed, and
    /// the original system's rows may have ids longer than WeChat's 32 (UUIDs, say): holding
    /// the token's id to [`MAX_ID_CHARS`] would refuse the next page after such a row for good.
    const MAX_TOKEN_ID_CHARS: usize = 200;

    /// The cursor after `order`, if it has a creation time (every order order-svc created has).
    pub fn after(order: &order::Model) -> Option<PageCursor> {
        Some(PageCursor {
            create_time: order.create_time?,
            id: order.id.clone(),
        })
    }

    pub fn to_token(&self) -> String {
        format!("{}:{}", self.create_time.and_utc().timestamp(), self.id)
    }

    pub fn from_token(token: &str) -> Result<PageCursor, OrderError> {
        let bad = || OrderError::invalid("page_token", "not a token this service returned");
        let (seconds, id) = token.split_once(':').ok_or_else(bad)?;
        let create_time = seconds
            .parse::<i64>()
            .ok()
            .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
            .ok_or_else(bad)?
            .naive_utc();
        if id.is_empty() || id.chars().count() > Self::MAX_TOKEN_ID_CHARS {
            return Err(bad());
        }
        Ok(PageCursor {
            create_time,
            id: id.to_owned(),
        })
    }
}

impl PendingQuery {
    pub fn new(
        min_age_seconds: i64,
        max_age_seconds: i64,
        limit: i32,
        page_token: &str,
    ) -> Result<Self, OrderError> {
        if min_age_seconds < 0 {
            return Err(OrderError::invalid("min_age_seconds", "must be >= 0"));
        }
        if max_age_seconds < 0 || (max_age_seconds > 0 && max_age_seconds < min_age_seconds) {
            return Err(OrderError::invalid(
                "max_age_seconds",
                "must be 0 (no limit) or >= min_age_seconds",
            ));
        }
        let limit = match u64::try_from(limit) {
            Ok(0) => DEFAULT_PENDING_LIMIT,
            Ok(limit) => limit.min(MAX_PENDING_LIMIT),
            Err(_) => return Err(OrderError::invalid("limit", "must be >= 0")),
        };
        // Ages beyond a century say "everything"; capping keeps the date arithmetic in range.
        let century = 100 * 366 * 24 * 3600;
        Ok(PendingQuery {
            min_age: Duration::seconds(min_age_seconds.min(century)),
            max_age: (max_age_seconds > 0).then(|| Duration::seconds(max_age_seconds.min(century))),
            limit,
            after: match page_token {
                "" => None,
                token => Some(PageCursor::from_token(token)?),
            },
        })
    }
}

/// A `CloseOrder` request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub order_id: String,
    /// Already cut to fit `tb_order_log.remarks`.
    pub remarks: String,
}

impl CloseRequest {
    pub fn new(order_id: &str, reason: &str) -> Result<Self, OrderError> {
        let reason = reason.trim();
        Ok(CloseRequest {
            order_id: check_id("order_id", order_id)?,
            remarks: fit_remarks(if reason.is_empty() {
                "订单关闭"
            } else {
                reason
            }),
        })
    }
}

/// An order's state, read from the original status columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Unpaid,
    Paid,
    Closed,
    /// A combination this service never writes (the original system has more states).
    Other,
}

impl OrderState {
    pub fn of(order: &order::Model) -> Self {
        let pay = order.pay_status.as_deref();
        let status = order.order_status.as_deref();
        match (pay, status) {
            (Some(pay_status::PAID), _) => OrderState::Paid,
            (Some(pay_status::UNPAID), Some(order_status::CREATED)) => OrderState::Unpaid,
            (Some(pay_status::UNPAID), Some(order_status::CLOSED)) => OrderState::Closed,
            _ => OrderState::Other,
        }
    }
}

/// What `MarkPaid` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidOutcome {
    MarkedPaid,
    AlreadyPaid,
    PaymentConflict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkPaidResult {
    pub outcome: PaidOutcome,
    /// The order after the call.
    pub order: order::Model,
    pub detail: String,
}

/// What `CloseOrder` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    AlreadyClosed,
    AlreadyPaid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseResult {
    pub outcome: CloseOutcome,
    pub order: order::Model,
}

/// The log remark of a payment, as the original system writes it.
pub fn paid_remarks(transaction_id: &str) -> String {
    fit_remarks(&format!("交易流水号：{transaction_id}"))
}

/// The log remark of a payment that could not be applied; names the payment's transaction and,
/// for an order paid by another, that one too.
pub fn conflict_remarks(
    kind: pay_anomaly::Kind,
    notice: &PaymentNotice,
    order: &order::Model,
) -> String {
    let remark = match kind {
        pay_anomaly::Kind::PaidByOtherTransaction => format!(
            "重复支付：交易流水号：{} 金额{}分，订单已由{}支付",
            notice.transaction_id,
            notice.amount_fen,
            order.transaction_id.as_deref().unwrap_or("")
        ),
        pay_anomaly::Kind::PaidAfterClose => format!(
            "关闭后支付：交易流水号：{} 金额{}分，订单已关闭",
            notice.transaction_id, notice.amount_fen
        ),
        pay_anomaly::Kind::PaidInUnexpectedState => format!(
            "状态异常时支付：交易流水号：{} 金额{}分，支付状态{}订单状态{}",
            notice.transaction_id,
            notice.amount_fen,
            order.pay_status.as_deref().unwrap_or("空"),
            order.order_status.as_deref().unwrap_or("空")
        ),
        pay_anomaly::Kind::TransactionReused => format!(
            "流水号重复：交易流水号：{} 金额{}分，已支付其他订单",
            notice.transaction_id, notice.amount_fen
        ),
    };
    fit_remarks(&remark)
}

/// Cut to `varchar(100)`: MySQL and PostgreSQL count characters, not bytes.
pub fn fit_remarks(text: &str) -> String {
    text.chars().take(MAX_REMARKS_CHARS).collect()
}

/// A non-empty id of at most 32 characters.
pub fn check_id(field: &'static str, value: &str) -> Result<String, OrderError> {
    if value.is_empty() {
        return Err(OrderError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_ID_CHARS {
        return Err(OrderError::invalid(
            field,
            format!("at most {MAX_ID_CHARS} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An `out_trade_no`: WeChat allows `[0-9A-Za-z_-|*@]`, at most 32.
fn check_out_trade_no(value: &str) -> Result<String, OrderError> {
    let id = check_id("id", value)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-|*@".contains(c);
    if !id.chars().all(allowed) {
        return Err(OrderError::invalid(
            "id",
            "only 0-9 A-Z a-z and _ - | * @ are allowed",
        ));
    }
    Ok(id)
}

/// Fen, > 0, and small enough for the original `int(11)` columns.
fn check_money(field: &'static str, fen: i64) -> Result<i32, OrderError> {
    if fen <= 0 {
        return Err(OrderError::invalid(field, "must be > 0 fen"));
    }
    i32::try_from(fen).map_err(|_| OrderError::invalid(field, "too large for the int column"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, s))
            .unwrap_or_default()
    }

    #[test]
    fn time_end_is_beijing_time() -> Result<(), OrderError> {
        // WeChat's documented example.
        assert_eq!(
            time_end_to_utc("20140903131540")?,
            utc(2014, 9, 3, 5, 15, 40)
        );
        // Early morning in Beijing is the previous day in UTC.
        assert_eq!(
            time_end_to_utc("20250101070000")?,
            utc(2024, 12, 31, 23, 0, 0)
        );
        Ok(())
    }

    #[test]
    fn malformed_time_end_is_refused() {
        for bad in [
            "",
            "2014090313154",
            "201409031315400",
            "2014-09-03 13:1",
            "20140231131540",
            "20141303131540",
            "20140903251540",
            "２０140903131540",
        ] {
            assert!(
                matches!(
                    time_end_to_utc(bad),
                    Err(OrderError::InvalidArgument {
                        field: "time_end",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn payment_notice_checks_every_field() {
        let ok = PaymentNotice::new("o1", "4200001", 100, "20140903131540");
        assert!(ok.is_ok());
        let field = |r: Result<PaymentNotice, OrderError>| match r {
            Err(OrderError::InvalidArgument { field, .. }) => field,
            _ => "accepted",
        };
        assert_eq!(
            field(PaymentNotice::new("", "t", 1, "20140903131540")),
            "order_id"
        );
        assert_eq!(
            field(PaymentNotice::new(
                &"9".repeat(33),
                "t",
                1,
                "20140903131540"
            )),
            "order_id"
        );
        assert_eq!(
            field(PaymentNotice::new("o", "", 1, "20140903131540")),
            "transaction_id"
        );
        assert_eq!(
            field(PaymentNotice::new("o", "t", 0, "20140903131540")),
            "amount_fen"
        );
        assert_eq!(
            field(PaymentNotice::new("o", "t", -5, "20140903131540")),
            "amount_fen"
        );
        assert_eq!(
            field(PaymentNotice::new("o", "t", 1 << 40, "20140903131540")),
            "amount_fen"
        );
        // 32 characters is the limit, not 31.
        assert!(PaymentNotice::new(&"9".repeat(32), &"4".repeat(32), 1, "20140903131540").is_ok());
    }

    #[test]
    fn new_order_defaults_and_charset() -> Result<(), OrderError> {
        let order = NewOrder::new("", 990, 0, 0, "")?;
        assert_eq!(order.id, None);
        assert_eq!((order.total_money, order.total_num), (990, 1));
        assert_eq!(order.username, None);
        assert!(NewOrder::new("A-b_c|d*e@1", 1, 0, 0, "alice").is_ok());
        for bad in ["a b", "订单", "a/b", "a.b"] {
            assert!(NewOrder::new(bad, 1, 0, 0, "").is_err(), "{bad}");
        }
        assert!(NewOrder::new("x", 0, 0, 0, "").is_err());
        assert!(NewOrder::new("x", 1, 0, -1, "").is_err());
        Ok(())
    }

    #[test]
    fn pending_limit_defaults_and_caps() -> Result<(), OrderError> {
        assert_eq!(PendingQuery::new(0, 0, 0, "")?.limit, 100);
        assert_eq!(PendingQuery::new(0, 0, 5000, "")?.limit, 1000);
        assert_eq!(PendingQuery::new(60, 0, 7, "")?.max_age, None);
        assert!(PendingQuery::new(-1, 0, 0, "").is_err());
        assert!(PendingQuery::new(0, 0, -1, "").is_err());
        assert!(PendingQuery::new(600, 60, 0, "").is_err());
        assert!(PendingQuery::new(i64::MAX, i64::MAX, 0, "").is_ok());
        Ok(())
    }

    #[test]
    fn page_tokens_round_trip_and_junk_is_refused() -> Result<(), OrderError> {
        let cursor = PageCursor {
            create_time: now_utc(),
            id: "o:1".to_owned(),
        };
        let query = PendingQuery::new(0, 0, 0, &cursor.to_token())?;
        assert_eq!(query.after, Some(cursor));
        for junk in [
            "x",
            "abc:o1",
            "1700000000:",
            &format!("1:{}", "9".repeat(201)),
        ] {
            assert!(PendingQuery::new(0, 0, 0, junk).is_err(), "{junk}");
        }
        Ok(())
    }

    #[test]
    fn page_tokens_carry_ids_as_long_as_the_column() -> Result<(), OrderError> {
        // A row of the original system, keyed by a UUID: longer than an out_trade_no may be.
        let uuid = order::Model {
            id: "3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b".into(),
            create_time: Some(now_utc()),
            ..blank_order()
        };
        let Some(cursor) = PageCursor::after(&uuid) else {
            panic!("an order with a create_time has a cursor");
        };
        let query = PendingQuery::new(0, 0, 0, &cursor.to_token())?;
        assert_eq!(query.after, Some(cursor));
        let widest = PageCursor {
            create_time: now_utc(),
            id: "长".repeat(200),
        };
        let query = PendingQuery::new(0, 0, 0, &widest.to_token())?;
        assert_eq!(query.after, Some(widest));
        Ok(())
    }

    #[test]
    fn remarks_fit_varchar_100_even_at_the_longest() -> Result<(), OrderError> {
        let notice = PaymentNotice::new("o", &"4".repeat(32), i32::MAX.into(), "20140903131540")?;
        let order = order::Model {
            transaction_id: Some("9".repeat(32)),
            ..blank_order()
        };
        let remark = conflict_remarks(pay_anomaly::Kind::PaidByOtherTransaction, &notice, &order);
        assert!(remark.chars().count() <= MAX_REMARKS_CHARS, "{remark}");
        assert!(remark.contains(&"4".repeat(32)) && remark.contains(&"9".repeat(32)));
        let failed = order::Model {
            pay_status: Some("2".into()),
            order_status: Some("0".into()),
            ..blank_order()
        };
        let remark = conflict_remarks(pay_anomaly::Kind::PaidInUnexpectedState, &notice, &failed);
        assert!(remark.chars().count() <= MAX_REMARKS_CHARS, "{remark}");
        assert!(remark.contains("支付状态2订单状态0"), "{remark}");
        let remark = conflict_remarks(
            pay_anomaly::Kind::TransactionReused,
            &notice,
            &blank_order(),
        );
        assert!(remark.chars().count() <= MAX_REMARKS_CHARS, "{remark}");
        assert!(remark.contains(&"4".repeat(32)), "{remark}");
        assert_eq!(paid_remarks("4200"), "交易流水号：4200");
        assert_eq!(fit_remarks(&"长".repeat(150)).chars().count(), 100);
        Ok(())
    }

    #[test]
    fn states_follow_the_original_columns() {
        let with = |pay: &str, status: &str| order::Model {
            pay_status: Some(pay.into()),
            order_status: Some(status.into()),
            ..blank_order()
        };
        assert_eq!(OrderState::of(&with("0", "0")), OrderState::Unpaid);
        assert_eq!(OrderState::of(&with("1", "1")), OrderState::Paid);
        assert_eq!(OrderState::of(&with("0", "2")), OrderState::Closed);
        assert_eq!(OrderState::of(&with("2", "0")), OrderState::Other);
    }

    fn blank_order() -> order::Model {
        order::Model {
            id: "o".into(),
            total_num: None,
            total_money: None,
            pre_money: None,
            post_fee: None,
            pay_money: None,
            pay_type: None,
            create_time: None,
            update_time: None,
            pay_time: None,
            consign_time: None,
            end_time: None,
            close_time: None,
            shipping_name: None,
            shipping_code: None,
            username: None,
            buyer_message: None,
            buyer_rate: None,
            receiver_contact: None,
            receiver_mobile: None,
            receiver_address: None,
            source_type: None,
            transaction_id: None,
            order_status: None,
            pay_status: None,
            consign_status: None,
            is_delete: None,
        }
    }
}

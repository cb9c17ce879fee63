//! A payment claim — "transaction T paid total_fee F for order O at time_end E" — and the pure
//! checks it must pass before an order is marked paid: against the order in order-svc (step 4)
//! and against WeChat's own record from orderquery (step 5). A claim comes from a verified
//! notification or, in reconciliation, from orderquery itself; both go through these checks.

use paynotify::{
    proto::{
        order::v1::{Order, OrderState},
        pay::v1::NotifyOutcome,
    },
    wxpay::{
        Fields,
        client::{OrderQuery, TradeState, parse_fen},
        time::parse_time_end,
    },
};

use crate::verdict::Verdict;

/// Limits of WeChat's field table (String(32)); order-svc rejects longer ids too.
const MAX_ID_CHARS: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentClaim {
    pub out_trade_no: String,
    pub transaction_id: String,
    /// The order total in fen, > 0.
    pub total_fee: i64,
    /// ISO 4217; WeChat omits it for CNY.
    pub fee_type: String,
    /// `yyyyMMddHHmmss`, Beijing time, checked to be a real time.
    pub time_end: String,
}

impl PaymentClaim {
    /// The claim a notification makes; `Err` says which field is missing or malformed.
    pub fn from_notification(fields: &Fields) -> Result<PaymentClaim, String> {
        let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
        PaymentClaim::validated(
            get("out_trade_no"),
            get("transaction_id"),
            get("total_fee"),
            get("fee_type"),
            get("time_end"),
        )
    }

    /// The claim WeChat's own record makes (reconciliation, where no notification came).
    pub fn from_query(query: &OrderQuery) -> Result<PaymentClaim, String> {
        let total_fee = query
            .total_fee
            .map(|fee| fee.to_string())
            .unwrap_or_default();
        PaymentClaim::validated(
            &query.out_trade_no,
            &query.transaction_id,
            &total_fee,
            &query.fee_type,
            &query.time_end,
        )
    }

    fn validated(
        out_trade_no: &str,
        transaction_id: &str,
        total_fee: &str,
        fee_type: &str,
        time_end: &str,
    ) -> Result<PaymentClaim, String> {
        for (name, value) in [
            ("out_trade_no", out_trade_no),
            ("transaction_id", transaction_id),
        ] {
            if value.is_empty() {
                return Err(format!("{name} is missing"));
            }
            if value.chars().count() > MAX_ID_CHARS {
                return Err(format!("{name} is longer than {MAX_ID_CHARS} characters"));
            }
        }
        let total_fee = match parse_fen(total_fee) {
            Some(fee) if fee > 0 => fee,
            Some(_) => return Err("total_fee must be greater than 0".into()),
            None if total_fee.is_empty() => return Err("total_fee is missing".into()),
            None => return Err("total_fee is not an amount in fen".into()),
        };
        parse_time_end(time_end).map_err(|e| e.to_string())?;
        Ok(PaymentClaim {
            out_trade_no: out_trade_no.to_owned(),
            transaction_id: transaction_id.to_owned(),
            total_fee,
            fee_type: fee_type.to_owned(),
            time_end: time_end.to_owned(),
        })
    }
}

/// Step 4: the claim against our order. `None` means "go on and ask WeChat".
///
/// An order already paid by this very transaction is a duplicate and is answered without
/// spending an orderquery. An order paid by another transaction, or closed, goes on: if WeChat
/// confirms the payment, MarkPaid records the conflict for a person to refund.
pub fn check_against_order(claim: &PaymentClaim, order: &Order) -> Option<Verdict> {
    if order.state() == OrderState::Paid && order.transaction_id == claim.transaction_id {
        return Some(Verdict::new(
            NotifyOutcome::Duplicate,
            "already paid by this transaction",
        ));
    }
    if !claim.fee_type.is_empty() && claim.fee_type != "CNY" {
        return Some(Verdict::new(
            NotifyOutcome::AmountMismatch,
            format!("fee_type {} is not CNY", claim.fee_type),
        ));
    }
    if claim.total_fee != order.pay_money {
        return Some(Verdict::new(
            NotifyOutcome::AmountMismatch,
            format!(
                "total_fee {} differs from the order's pay_money {}",
                claim.total_fee, order.pay_money
            ),
        ));
    }
    None
}

/// Step 5: the claim against WeChat's record. `None` means WeChat confirms it exactly.
pub fn check_against_query(claim: &PaymentClaim, query: &OrderQuery) -> Option<Verdict> {
    let not_confirmed = |reason: String| Some(Verdict::new(NotifyOutcome::NotConfirmed, reason));
    if query.trade_state != TradeState::Success {
        return not_confirmed(format!("WeChat reports trade_state {}", query.trade_state));
    }
    if query.out_trade_no != claim.out_trade_no {
        return not_confirmed("WeChat's out_trade_no differs".into());
    }
    if query.transaction_id != claim.transaction_id {
        return not_confirmed("WeChat's transaction_id differs".into());
    }
    match query.total_fee {
        Some(fee) if fee == claim.total_fee => None,
        Some(fee) => Some(Verdict::new(
            NotifyOutcome::AmountMismatch,
            format!(
                "WeChat's total_fee {fee} differs from the claimed {}",
                claim.total_fee
            ),
        )),
        None => not_confirmed("WeChat returned no total_fee".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> PaymentClaim {
        PaymentClaim {
            out_trade_no: "o1".into(),
            transaction_id: "4200000001".into(),
            total_fee: 2500,
            fee_type: String::new(),
            time_end: "20240101120000".into(),
        }
    }

    fn order(state: OrderState, pay_money: i64, transaction_id: &str) -> Order {
        Order {
            id: "o1".into(),
            state: state.into(),
            pay_money,
            transaction_id: transaction_id.into(),
            ..Order::default()
        }
    }

    fn query(trade_state: TradeState) -> OrderQuery {
        OrderQuery {
            trade_state,
            trade_state_desc: String::new(),
            out_trade_no: "o1".into(),
            transaction_id: "4200000001".into(),
            total_fee: Some(2500),
            cash_fee: Some(2500),
            fee_type: "CNY".into(),
            time_end: "20240101120000".into(),
            trade_type: "NATIVE".into(),
            bank_type: String::new(),
            openid: String::new(),
            attach: String::new(),
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn outcome(verdict: Option<Verdict>) -> Option<NotifyOutcome> {
        verdict.map(|v| v.outcome)
    }

    #[test]
    fn a_complete_notification_makes_a_claim() {
        let good = fields(&[
            ("out_trade_no", "o1"),
            ("transaction_id", "4200000001"),
            ("total_fee", "2500"),
            ("time_end", "20240101120000"),
        ]);
        assert_eq!(PaymentClaim::from_notification(&good), Ok(claim()));
    }

    #[test]
    fn malformed_notifications_say_which_field() {
        let base = [
            ("out_trade_no", "o1"),
            ("transaction_id", "4200000001"),
            ("total_fee", "2500"),
            ("time_end", "20240101120000"),
        ];
        let cases: &[(&str, &str, &str)] = &[
            ("out_trade_no", "", "out_trade_no"),
            ("transaction_id", "", "transaction_id"),
            ("transaction_id", &"9".repeat(33), "transaction_id"),
            ("total_fee", "", "total_fee"),
            ("total_fee", "0", "total_fee"),
            ("total_fee", "25.00", "total_fee"),
            ("total_fee", "-1", "total_fee"),
            ("total_fee", " 2500", "total_fee"),
            ("time_end", "20240230120000", "time_end"),
            ("time_end", "", "time_end"),
        ];
        for (field, value, named) in cases {
            let mut f = fields(&base);
            f.insert(field.to_string(), value.to_string());
            let err = PaymentClaim::from_notification(&f).unwrap_err();
            assert!(err.contains(named), "{field}={value}: {err}");
        }
    }

    #[test]
    fn the_order_decides_duplicates_and_amounts() {
        let c = claim();
        assert_eq!(
            outcome(check_against_order(
                &c,
                &order(OrderState::Unpaid, 2500, "")
            )),
            None
        );
        assert_eq!(
            outcome(check_against_order(
                &c,
                &order(OrderState::Paid, 2500, "4200000001")
            )),
            Some(NotifyOutcome::Duplicate)
        );
        assert_eq!(
            outcome(check_against_order(
                &c,
                &order(OrderState::Unpaid, 2501, "")
            )),
            Some(NotifyOutcome::AmountMismatch)
        );
        // Paid by someone else or closed: WeChat is asked, MarkPaid records the conflict.
        assert_eq!(
            outcome(check_against_order(
                &c,
                &order(OrderState::Paid, 2500, "4200000999")
            )),
            None
        );
        assert_eq!(
            outcome(check_against_order(
                &c,
                &order(OrderState::Closed, 2500, "")
            )),
            None
        );
        let usd = PaymentClaim {
            fee_type: "USD".into(),
            ..claim()
        };
        assert_eq!(
            outcome(check_against_order(
                &usd,
                &order(OrderState::Unpaid, 2500, "")
            )),
            Some(NotifyOutcome::AmountMismatch)
        );
    }

    #[test]
    fn wechat_must_confirm_state_ids_and_amount() {
        let c = claim();
        assert_eq!(
            outcome(check_against_query(&c, &query(TradeState::Success))),
            None
        );
        for state in [TradeState::NotPay, TradeState::Refund, TradeState::Closed] {
            assert_eq!(
                outcome(check_against_query(&c, &query(state))),
                Some(NotifyOutcome::NotConfirmed)
            );
        }
        let other_txn = OrderQuery {
            transaction_id: "4200000999".into(),
            ..query(TradeState::Success)
        };
        assert_eq!(
            outcome(check_against_query(&c, &other_txn)),
            Some(NotifyOutcome::NotConfirmed)
        );
        let other_order = OrderQuery {
            out_trade_no: "o2".into(),
            ..query(TradeState::Success)
        };
        assert_eq!(
            outcome(check_against_query(&c, &other_order)),
            Some(NotifyOutcome::NotConfirmed)
        );
        let cheaper = OrderQuery {
            total_fee: Some(1),
            ..query(TradeState::Success)
        };
        assert_eq!(
            outcome(check_against_query(&c, &cheaper)),
            Some(NotifyOutcome::AmountMismatch)
        );
        let no_fee = OrderQuery {
            total_fee: None,
            ..query(TradeState::Success)
        };
        assert_eq!(
            outcome(check_against_query(&c, &no_fee)),
            Some(NotifyOutcome::NotConfirmed)
        );
    }

    #[test]
    fn a_query_makes_the_same_claim_as_its_notification() {
        let q = query(TradeState::Success);
        let from_query = PaymentClaim::from_query(&q).unwrap();
        assert_eq!(from_query.total_fee, 2500);
        assert_eq!(check_against_query(&from_query, &q), None);
        let unpaid = OrderQuery {
            transaction_id: String::new(),
            total_fee: None,
            ..query(TradeState::NotPay)
        };
        assert!(PaymentClaim::from_query(&unpaid).is_err());
    }
}

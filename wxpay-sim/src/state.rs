//! WeChat's side of the ledger: the orders the simulator knows, their trade state, payment
//! details and notification attempts. In memory, behind one mutex that is never held across
//! an `.await`; every state change is one short critical section.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Merchant,
    ids,
    model::{Attempt, SimOrder, TradeState},
    notification::{Coupon, Notification},
};

/// What a merchant asked for in unifiedorder. Re-submitting an out_trade_no with equal terms
/// gets the same prepay back; with different terms it is refused (OUT_TRADE_NO_USED).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OrderTerms {
    pub body: String,
    pub total_fee: i64,
    pub fee_type: String,
    pub trade_type: String,
    pub notify_url: String,
    pub product_id: Option<String>,
    pub openid: Option<String>,
    pub attach: Option<String>,
    pub device_info: Option<String>,
}

/// The answer to a successful unifiedorder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prepay {
    pub prepay_id: String,
    pub trade_type: String,
    pub code_url: Option<String>,
}

/// How the user paid: fixed when the order is paid, repeated in every notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Payment {
    pub transaction_id: String,
    pub time_end: DateTime<Utc>,
    pub openid: String,
    pub bank_type: String,
    pub is_subscribe: String,
    /// What paid part of the order besides cash; empty for a cash-only payment.
    pub coupons: Vec<Coupon>,
}

impl Payment {
    /// The coupons' total, when there are any.
    pub fn coupon_fee(&self) -> Option<i64> {
        (!self.coupons.is_empty()).then(|| self.coupons.iter().map(|c| c.fee).sum())
    }

    /// What the user paid in cash for an order of `total_fee`.
    pub fn cash_fee(&self, total_fee: i64) -> i64 {
        total_fee - self.coupon_fee().unwrap_or(0)
    }
}

#[derive(Debug)]
pub(crate) struct Order {
    pub out_trade_no: String,
    pub terms: OrderTerms,
    pub prepay: Prepay,
    pub state: TradeState,
    pub payment: Option<Payment>,
    pub attempts: Vec<Attempt>,
    pub delivered: bool,
    /// Cancels the running notification schedule, if any.
    schedule: Option<CancellationToken>,
}

/// Which order a query names. WeChat's rule: `transaction_id` wins when both are given.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup<'a> {
    TransactionId(&'a str),
    OutTradeNo(&'a str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StoreError {
    #[error("no order {0}")]
    NotFound(String),
    #[error("order {0} already exists")]
    Exists(String),
    #[error("order {0} was placed with different parameters")]
    OutTradeNoUsed(String),
    #[error("order {0} is already paid")]
    Paid(String),
    #[error("order {0} is closed")]
    Closed(String),
    #[error("order {0} failed to pay (PAYERROR): WeChat asks for a new order")]
    PayFailed(String),
    #[error("order {out_trade_no} is being paid (trade_state {state})")]
    InProgress {
        out_trade_no: String,
        state: TradeState,
    },
    #[error("transaction_id {0} already paid another order")]
    TransactionIdUsed(String),
    #[error("coupon_fee must be 1 to the order's total_fee {total_fee}, got {coupon_fee}")]
    InvalidCoupon { coupon_fee: i64, total_fee: i64 },
    #[error("order {out_trade_no} has no payment to notify (trade_state {state:?})")]
    NotPaid {
        out_trade_no: String,
        state: TradeState,
    },
}

#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<Orders>,
}

#[derive(Default)]
struct Orders {
    by_out_trade_no: HashMap<String, Order>,
    /// transaction_id → out_trade_no.
    by_transaction_id: HashMap<String, String>,
}

impl Orders {
    fn get_mut(&mut self, out_trade_no: &str) -> Result<&mut Order, StoreError> {
        self.by_out_trade_no
            .get_mut(out_trade_no)
            .ok_or_else(|| StoreError::NotFound(out_trade_no.to_owned()))
    }
}

impl Store {
    /// unifiedorder: places the order, or returns the existing prepay for an identical
    /// re-submission.
    pub(crate) fn unified_order(
        &self,
        out_trade_no: &str,
        terms: OrderTerms,
    ) -> Result<Prepay, StoreError> {
        let mut orders = self.inner.lock();
        if let Some(order) = orders.by_out_trade_no.get(out_trade_no) {
            return match order.state {
                TradeState::Success | TradeState::Refund => {
                    Err(StoreError::Paid(out_trade_no.to_owned()))
                }
                TradeState::Closed | TradeState::Revoked => {
                    Err(StoreError::Closed(out_trade_no.to_owned()))
                }
                _ if order.terms != terms => {
                    Err(StoreError::OutTradeNoUsed(out_trade_no.to_owned()))
                }
                _ => Ok(order.prepay.clone()),
            };
        }
        let order = Order::new(out_trade_no, terms);
        let prepay = order.prepay.clone();
        orders
            .by_out_trade_no
            .insert(out_trade_no.to_owned(), order);
        Ok(prepay)
    }

    /// Places an order directly (the control API), refusing an existing out_trade_no.
    pub(crate) fn create(
        &self,
        out_trade_no: &str,
        terms: OrderTerms,
    ) -> Result<SimOrder, StoreError> {
        let mut orders = self.inner.lock();
        if orders.by_out_trade_no.contains_key(out_trade_no) {
            return Err(StoreError::Exists(out_trade_no.to_owned()));
        }
        let order = Order::new(out_trade_no, terms);
        let view = order.view();
        orders
            .by_out_trade_no
            .insert(out_trade_no.to_owned(), order);
        Ok(view)
    }

    /// Runs `read` on the order `lookup` names.
    pub(crate) fn read<T>(
        &self,
        lookup: Lookup<'_>,
        read: impl FnOnce(&Order) -> T,
    ) -> Result<T, StoreError> {
        let orders = self.inner.lock();
        let out_trade_no = match lookup {
            Lookup::OutTradeNo(no) => no,
            Lookup::TransactionId(id) => orders
                .by_transaction_id
                .get(id)
                .map(String::as_str)
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?,
        };
        orders
            .by_out_trade_no
            .get(out_trade_no)
            .map(read)
            .ok_or_else(|| StoreError::NotFound(out_trade_no.to_owned()))
    }

    /// The control API's view of an order.
    pub(crate) fn view(&self, out_trade_no: &str) -> Result<SimOrder, StoreError> {
        self.read(Lookup::OutTradeNo(out_trade_no), Order::view)
    }

    /// closeorder: an unpaid order (NOTPAY, or PAYERROR, which SPEC §3.3 says should still
    /// end CLOSED) becomes CLOSED. One the user is paying right now (USERPAYING, ACCEPT) is
    /// refused: closing under a payment in flight is the race SPEC §3.3 warns about, and the
    /// payment may still succeed (inference; WeChat documents no error code for it).
    pub(crate) fn close(&self, out_trade_no: &str) -> Result<(), StoreError> {
        let mut orders = self.inner.lock();
        let order = orders.get_mut(out_trade_no)?;
        match order.state {
            TradeState::UserPaying | TradeState::Accept => {
                return Err(StoreError::InProgress {
                    out_trade_no: out_trade_no.to_owned(),
                    state: order.state,
                });
            }
            // Cannot be paid any more, yet still to be closed.
            TradeState::PayError => {}
            _ => order.payable()?,
        }
        order.state = TradeState::Closed;
        Ok(())
    }

    /// The control API moves an unpaid order to `target` (a state a user's terminal or bank
    /// causes: USERPAYING, ACCEPT, PAYERROR, REVOKED, or back to NOTPAY). Only orders that
    /// can still be paid move: NOTPAY, USERPAYING, ACCEPT.
    pub(crate) fn set_trade_state(
        &self,
        out_trade_no: &str,
        target: TradeState,
    ) -> Result<SimOrder, StoreError> {
        let mut orders = self.inner.lock();
        let order = orders.get_mut(out_trade_no)?;
        order.payable()?;
        order.state = target;
        Ok(order.view())
    }

    /// The user pays in cash: an order that can still be paid (NOTPAY, USERPAYING, ACCEPT)
    /// becomes SUCCESS with a fresh transaction_id.
    #[cfg(test)]
    pub(crate) fn mark_paid(&self, out_trade_no: &str) -> Result<Payment, StoreError> {
        self.mark_paid_as(out_trade_no, None, None)
    }

    /// [`Store::mark_paid`] with the transaction_id chosen by the caller (so a hand-signed
    /// notification can match WeChat's record; it must not belong to another order), and
    /// with a coupon paying `coupon_fee` fen of the order (1 to total_fee).
    pub(crate) fn mark_paid_as(
        &self,
        out_trade_no: &str,
        transaction_id: Option<&str>,
        coupon_fee: Option<i64>,
    ) -> Result<Payment, StoreError> {
        let mut orders = self.inner.lock();
        if let Some(id) = transaction_id
            && orders.by_transaction_id.contains_key(id)
        {
            return Err(StoreError::TransactionIdUsed(id.to_owned()));
        }
        let order = orders.get_mut(out_trade_no)?;
        order.payable()?;
        let total_fee = order.terms.total_fee;
        let coupons = match coupon_fee {
            None => Vec::new(),
            Some(fee) if (1..=total_fee).contains(&fee) => vec![Coupon::new(fee)],
            Some(fee) => {
                return Err(StoreError::InvalidCoupon {
                    coupon_fee: fee,
                    total_fee,
                });
            }
        };
        let now = Utc::now();
        let payment = Payment {
            transaction_id: transaction_id.map_or_else(|| ids::transaction_id(now), str::to_owned),
            time_end: now,
            openid: order.terms.openid.clone().unwrap_or_else(ids::openid),
            bank_type: "OTHERS".into(),
            is_subscribe: "N".into(),
            coupons,
        };
        order.state = TradeState::Success;
        order.payment = Some(payment.clone());
        orders
            .by_transaction_id
            .insert(payment.transaction_id.clone(), out_trade_no.to_owned());
        Ok(payment)
    }

    /// A refund starts: a paid order's trade_state becomes REFUND.
    pub(crate) fn refund(&self, out_trade_no: &str) -> Result<SimOrder, StoreError> {
        let mut orders = self.inner.lock();
        let order = orders.get_mut(out_trade_no)?;
        match order.state {
            TradeState::Success => {
                order.state = TradeState::Refund;
                Ok(order.view())
            }
            state => Err(StoreError::NotPaid {
                out_trade_no: out_trade_no.to_owned(),
                state,
            }),
        }
    }

    /// The payment notification for a paid order, and where to send it.
    pub(crate) fn notification(
        &self,
        out_trade_no: &str,
        merchant: &Merchant,
    ) -> Result<(Notification, String), StoreError> {
        self.read(Lookup::OutTradeNo(out_trade_no), |order| {
            let payment = order.payment.as_ref().ok_or_else(|| StoreError::NotPaid {
                out_trade_no: out_trade_no.to_owned(),
                state: order.state,
            })?;
            let notification = Notification {
                appid: merchant.appid.clone(),
                mch_id: merchant.mch_id.clone(),
                device_info: order.terms.device_info.clone(),
                result_code: "SUCCESS".into(),
                err_code: None,
                err_code_des: None,
                openid: payment.openid.clone(),
                is_subscribe: payment.is_subscribe.clone(),
                trade_type: order.terms.trade_type.clone(),
                bank_type: payment.bank_type.clone(),
                total_fee: order.terms.total_fee,
                cash_fee: payment.cash_fee(order.terms.total_fee),
                coupons: payment.coupons.clone(),
                fee_type: order.terms.fee_type.clone(),
                transaction_id: payment.transaction_id.clone(),
                out_trade_no: order.out_trade_no.clone(),
                attach: order.terms.attach.clone(),
                time_end: payment.time_end,
                extra_fields: Default::default(),
            };
            Ok((notification, order.terms.notify_url.clone()))
        })?
    }

    /// Records one notification attempt; a successful one marks the order delivered.
    pub(crate) fn record_attempt(&self, out_trade_no: &str, attempt: Attempt) {
        let mut orders = self.inner.lock();
        if let Ok(order) = orders.get_mut(out_trade_no) {
            order.delivered |= attempt.success;
            order.attempts.push(attempt);
        }
    }

    pub(crate) fn is_delivered(&self, out_trade_no: &str) -> bool {
        self.read(Lookup::OutTradeNo(out_trade_no), |order| order.delivered)
            .unwrap_or(true)
    }

    /// Installs a new notification schedule for a paid order: returns the previous schedule's
    /// token (to cancel) and clears `delivered`, so the new schedule runs until its own SUCCESS.
    pub(crate) fn replace_schedule(
        &self,
        out_trade_no: &str,
        schedule: CancellationToken,
    ) -> Result<Option<CancellationToken>, StoreError> {
        let mut orders = self.inner.lock();
        let order = orders.get_mut(out_trade_no)?;
        if order.payment.is_none() {
            return Err(StoreError::NotPaid {
                out_trade_no: out_trade_no.to_owned(),
                state: order.state,
            });
        }
        order.delivered = false;
        Ok(order.schedule.replace(schedule))
    }
}

impl Order {
    fn new(out_trade_no: &str, terms: OrderTerms) -> Order {
        let prepay = Prepay {
            prepay_id: ids::prepay_id(Utc::now()),
            code_url: (terms.trade_type == "NATIVE").then(ids::code_url),
            trade_type: terms.trade_type.clone(),
        };
        Order {
            out_trade_no: out_trade_no.to_owned(),
            terms,
            prepay,
            state: TradeState::NotPay,
            payment: None,
            attempts: Vec::new(),
            delivered: false,
            schedule: None,
        }
    }

    /// Whether the order can still be paid (NOTPAY, USERPAYING, ACCEPT: SPEC §3.3's
    /// non-terminal states), or why not.
    fn payable(&self) -> Result<(), StoreError> {
        let out_trade_no = || self.out_trade_no.clone();
        match self.state {
            TradeState::NotPay | TradeState::UserPaying | TradeState::Accept => Ok(()),
            TradeState::Success | TradeState::Refund => Err(StoreError::Paid(out_trade_no())),
            TradeState::Closed | TradeState::Revoked => Err(StoreError::Closed(out_trade_no())),
            TradeState::PayError => Err(StoreError::PayFailed(out_trade_no())),
        }
    }

    fn view(&self) -> SimOrder {
        SimOrder {
            out_trade_no: self.out_trade_no.clone(),
            trade_state: self.state,
            transaction_id: self.payment.as_ref().map(|p| p.transaction_id.clone()),
            total_fee: self.terms.total_fee,
            coupon_fee: self.payment.as_ref().and_then(Payment::coupon_fee),
            notify_url: self.terms.notify_url.clone(),
            attempts: self.attempts.clone(),
            delivered: self.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(total_fee: i64) -> OrderTerms {
        OrderTerms {
            body: "test".into(),
            total_fee,
            fee_type: "CNY".into(),
            trade_type: "NATIVE".into(),
            notify_url: "http://127.0.0.1:1/notify".into(),
            product_id: Some("P1".into()),
            openid: None,
            attach: None,
            device_info: None,
        }
    }

    #[test]
    fn identical_resubmits_get_the_same_prepay_and_different_ones_are_refused() {
        let store = Store::default();
        let first = store.unified_order("A1", terms(100)).unwrap();
        assert!(first.code_url.is_some());
        assert_eq!(store.unified_order("A1", terms(100)), Ok(first));
        assert_eq!(
            store.unified_order("A1", terms(200)),
            Err(StoreError::OutTradeNoUsed("A1".into()))
        );
        store.mark_paid("A1").unwrap();
        assert_eq!(
            store.unified_order("A1", terms(100)),
            Err(StoreError::Paid("A1".into()))
        );
    }

    #[test]
    fn paying_closing_and_refunding_follow_the_trade_states() {
        let store = Store::default();
        store.create("A1", terms(100)).unwrap();
        assert_eq!(
            store.create("A1", terms(100)),
            Err(StoreError::Exists("A1".into()))
        );
        let payment = store.mark_paid("A1").unwrap();
        assert_eq!(store.mark_paid("A1"), Err(StoreError::Paid("A1".into())));
        assert_eq!(store.close("A1"), Err(StoreError::Paid("A1".into())));
        let by_id = store
            .read(Lookup::TransactionId(&payment.transaction_id), |o| {
                o.out_trade_no.clone()
            })
            .unwrap();
        assert_eq!(by_id, "A1");
        assert_eq!(store.refund("A1").unwrap().trade_state, TradeState::Refund);

        store.create("B1", terms(100)).unwrap();
        store.close("B1").unwrap();
        assert_eq!(store.close("B1"), Err(StoreError::Closed("B1".into())));
        assert_eq!(store.mark_paid("B1"), Err(StoreError::Closed("B1".into())));
        assert!(matches!(
            store.notification("B1", &Merchant::default()),
            Err(StoreError::NotPaid { .. })
        ));
        assert_eq!(
            store.mark_paid("nope"),
            Err(StoreError::NotFound("nope".into()))
        );
    }

    #[test]
    fn unpaid_states_decide_what_paying_and_closing_do() {
        let store = Store::default();
        let in_state = |no: &str, state| {
            store.create(no, terms(100)).unwrap();
            store.set_trade_state(no, state).unwrap();
        };
        // Being paid: payable, not closable.
        for (no, state) in [("U1", TradeState::UserPaying), ("A1", TradeState::Accept)] {
            in_state(no, state);
            assert!(matches!(
                store.close(no),
                Err(StoreError::InProgress { state: s, .. }) if s == state
            ));
            assert!(store.mark_paid(no).is_ok());
        }
        // Failed: not payable, not movable, closable.
        in_state("E1", TradeState::PayError);
        assert_eq!(
            store.mark_paid("E1"),
            Err(StoreError::PayFailed("E1".into()))
        );
        assert_eq!(
            store.set_trade_state("E1", TradeState::NotPay),
            Err(StoreError::PayFailed("E1".into()))
        );
        assert_eq!(store.close("E1"), Ok(()));
        assert_eq!(store.view("E1").unwrap().trade_state, TradeState::Closed);
        // Revoked: final.
        in_state("R1", TradeState::Revoked);
        assert_eq!(store.mark_paid("R1"), Err(StoreError::Closed("R1".into())));
        assert_eq!(store.close("R1"), Err(StoreError::Closed("R1".into())));
        // Paid orders do not move.
        assert_eq!(
            store.set_trade_state("U1", TradeState::Revoked),
            Err(StoreError::Paid("U1".into()))
        );
    }

    #[test]
    fn a_coupon_pays_part_of_the_order() {
        let store = Store::default();
        store.create("A1", terms(100)).unwrap();
        for fee in [0, 101, -5] {
            assert_eq!(
                store.mark_paid_as("A1", None, Some(fee)),
                Err(StoreError::InvalidCoupon {
                    coupon_fee: fee,
                    total_fee: 100
                })
            );
        }
        let payment = store.mark_paid_as("A1", None, Some(30)).unwrap();
        assert_eq!(payment.coupon_fee(), Some(30));
        assert_eq!(payment.cash_fee(100), 70);
        assert_eq!(store.view("A1").unwrap().coupon_fee, Some(30));
        let (notification, _) = store.notification("A1", &Merchant::default()).unwrap();
        assert_eq!((notification.total_fee, notification.cash_fee), (100, 70));
        assert_eq!(notification.coupons, payment.coupons);
    }

    #[test]
    fn a_successful_attempt_marks_delivered_until_the_schedule_restarts() {
        let store = Store::default();
        store.create("A1", terms(100)).unwrap();
        store.mark_paid("A1").unwrap();
        let attempt = |success| Attempt {
            at: Utc::now(),
            http_status: Some(200),
            success,
            error: None,
            elapsed_ms: 1,
        };
        store.record_attempt("A1", attempt(false));
        assert!(!store.is_delivered("A1"));
        store.record_attempt("A1", attempt(true));
        assert!(store.is_delivered("A1"));
        let old = store
            .replace_schedule("A1", CancellationToken::new())
            .unwrap();
        assert!(old.is_none());
        assert!(!store.is_delivered("A1"));
        assert_eq!(store.view("A1").unwrap().attempts.len(), 2);
    }
}

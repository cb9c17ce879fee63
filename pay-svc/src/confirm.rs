//! Steps 4b–6, shared by notifications and reconciliation: a payment claim is checked against
//! the order, confirmed against WeChat's record, and only then passed to order-svc's MarkPaid.
//! A notification's claim makes this path call orderquery itself; reconciliation's claim comes
//! from an orderquery it already made, so the record is handed in instead of fetched twice.

use std::sync::Arc;

use paynotify::{
    proto::{
        order::v1::{MarkPaidOutcome, OrderState},
        pay::v1::NotifyOutcome,
    },
    wxpay::client::{OrderQuery, OrderRef},
};

use crate::{
    claim::{PaymentClaim, check_against_order, check_against_query},
    error::PayError,
    metrics::QuerySource,
    orders::{MarkPaid, Orders},
    paid_orders::PaidOrders,
    verdict::Verdict,
    wechat::Wechat,
};

/// WeChat's record of the claimed payment: still to be fetched, or already at hand.
pub enum Evidence<'a> {
    QueryWechat,
    Queried(&'a OrderQuery),
}

#[derive(Clone, Debug)]
pub struct Confirmer {
    pub orders: Orders,
    pub wechat: Wechat,
    /// Orders seen paid, so duplicate notifications skip order-svc too.
    pub paid: Arc<PaidOrders>,
}

impl Confirmer {
    /// A verdict for the claim, or an error when one cannot be reached yet (order-svc or
    /// WeChat unreachable): the caller must try again later.
    pub async fn confirm(
        &self,
        claim: &PaymentClaim,
        evidence: Evidence<'_>,
    ) -> Result<Verdict, PayError> {
        // 4b. Our order. A notification for an order already known paid by this transaction
        // is a duplicate, as order-svc would say (see `check_against_order`): WeChat resends
        // each one many times, and this answers them without order-svc or orderquery.
        // Reconciliation's claim is never answered from memory: order-svc has just listed the
        // order as unpaid, and if this process remembers it paid, the paid write was lost (a
        // database restored from a backup, a failover to a replica behind the primary) and
        // must be made again.
        if matches!(evidence, Evidence::QueryWechat)
            && self
                .paid
                .paid_by(&claim.out_trade_no, &claim.transaction_id)
        {
            return Ok(Verdict::new(
                NotifyOutcome::Duplicate,
                "already paid by this transaction",
            ));
        }
        let Some(order) = self.orders.get(&claim.out_trade_no).await? else {
            return Ok(Verdict::new(
                NotifyOutcome::UnknownOrder,
                "no such order in order-svc",
            ));
        };
        if order.state() == OrderState::Paid {
            self.paid.remember(&order.id, &order.transaction_id);
        }
        if let Some(verdict) = check_against_order(claim, &order) {
            return Ok(verdict);
        }

        // 5. WeChat's record.
        let fetched;
        let query = match evidence {
            Evidence::Queried(query) => query,
            Evidence::QueryWechat => {
                let order_ref = OrderRef::OutTradeNo(claim.out_trade_no.clone());
                match self
                    .wechat
                    .order_query(&order_ref, QuerySource::Notification)
                    .await
                {
                    Ok(query) => {
                        fetched = query;
                        &fetched
                    }
                    Err(err) if err.err_code() == Some("ORDERNOTEXIST") => {
                        return Ok(Verdict::new(
                            NotifyOutcome::NotConfirmed,
                            "WeChat has no such order",
                        ));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        };
        if let Some(verdict) = check_against_query(claim, query) {
            return Ok(verdict);
        }

        // 6. Mark it paid, with the amount WeChat confirmed.
        let verdict = verdict_for(self.orders.mark_paid(claim).await?);
        if matches!(
            verdict.outcome,
            NotifyOutcome::Paid | NotifyOutcome::Duplicate
        ) {
            self.paid
                .remember(&claim.out_trade_no, &claim.transaction_id);
        }
        Ok(verdict)
    }
}

/// What MarkPaid's answer means for the notification.
pub fn verdict_for(mark_paid: MarkPaid) -> Verdict {
    match mark_paid {
        MarkPaid::Outcome { outcome, detail } => match outcome {
            MarkPaidOutcome::MarkedPaid => Verdict::new(NotifyOutcome::Paid, "order marked paid"),
            MarkPaidOutcome::AlreadyPaid => {
                Verdict::new(NotifyOutcome::Duplicate, "already paid by this transaction")
            }
            MarkPaidOutcome::PaymentConflict => Verdict::new(
                NotifyOutcome::PaymentConflict,
                if detail.is_empty() {
                    "order paid by another transaction or closed; recorded for refund".into()
                } else {
                    detail
                },
            ),
            MarkPaidOutcome::Unspecified => Verdict::new(
                NotifyOutcome::NotConfirmed,
                "order-svc gave no MarkPaid outcome",
            ),
        },
        MarkPaid::AmountRejected(detail) => Verdict::new(NotifyOutcome::AmountMismatch, detail),
        // WeChat confirmed this payment, yet order-svc cannot apply it: a conflict for a person,
        // not a forged amount. A transaction_reused refusal comes only after order-svc has
        // recorded the payment in pay_anomaly, as for PAYMENT_CONFLICT (had that failed,
        // order-svc would have answered an error, not the refusal); order-svc's WARN line says
        // which refusal it was. During a rolling upgrade an older order-svc still answers
        // transaction_reused without recording anything. That is harmless: the verdict is not
        // acknowledged (WeChat is answered FAIL), so WeChat resends, and a copy that reaches
        // an upgraded replica is recorded there.
        MarkPaid::TransactionReused(detail) | MarkPaid::Refused(detail) => Verdict::new(
            NotifyOutcome::PaymentConflict,
            format!("order-svc refused the confirmed payment: {detail}"),
        ),
        MarkPaid::NotFound => {
            Verdict::new(NotifyOutcome::UnknownOrder, "no such order in order-svc")
        }
        MarkPaid::Invalid(detail) => Verdict::new(NotifyOutcome::Malformed, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_paid_answers_map_to_verdicts() {
        let outcome = |m: MarkPaid| {
            let v = verdict_for(m);
            (v.outcome, v.acknowledge())
        };
        let said = |outcome: MarkPaidOutcome| MarkPaid::Outcome {
            outcome,
            detail: String::new(),
        };
        assert_eq!(
            outcome(said(MarkPaidOutcome::MarkedPaid)),
            (NotifyOutcome::Paid, true)
        );
        assert_eq!(
            outcome(said(MarkPaidOutcome::AlreadyPaid)),
            (NotifyOutcome::Duplicate, true)
        );
        assert_eq!(
            outcome(said(MarkPaidOutcome::PaymentConflict)),
            (NotifyOutcome::PaymentConflict, false)
        );
        assert_eq!(
            outcome(MarkPaid::AmountRejected("x".into())),
            (NotifyOutcome::AmountMismatch, false)
        );
        assert_eq!(
            outcome(MarkPaid::TransactionReused("x".into())),
            (NotifyOutcome::PaymentConflict, false)
        );
        assert_eq!(
            outcome(MarkPaid::Refused("x".into())),
            (NotifyOutcome::PaymentConflict, false)
        );
        assert_eq!(
            outcome(MarkPaid::NotFound),
            (NotifyOutcome::UnknownOrder, false)
        );
        assert_eq!(
            outcome(MarkPaid::Invalid("x".into())),
            (NotifyOutcome::Malformed, false)
        );
    }
}

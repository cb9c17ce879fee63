//! `MarkPaid`: the one transaction that turns an unpaid order into a paid one.
//!
//! The conditional `UPDATE … WHERE pay_status='0' AND order_status='0' AND pay_money=?` comes
//! first and its affected-row count is the decision: whichever call changes the row is the only
//! MARKED_PAID and writes the only log row. Every other call reads the order afterwards and
//! explains why nothing changed; a payment that can never apply (another transaction already
//! paid, or the order is closed) is recorded once in `pay_anomaly`, whose primary key makes
//! "once" hold across processes.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, SqlErr,
};

use super::write::{LogEntry, begin_write, insert_if_absent, insert_log};
use super::{MAX_RACE_RETRIES, OrderStore};
use crate::db::entities::{NOT_CONSIGNED, order, order_status, pay_anomaly, pay_status};
use crate::domain::{
    MarkPaidResult, OrderState, PaidOutcome, PaymentNotice, conflict_remarks, now_utc, paid_remarks,
};
use crate::error::OrderError;

impl OrderStore {
    pub async fn mark_paid(&self, notice: &PaymentNotice) -> Result<MarkPaidResult, OrderError> {
        for _ in 0..MAX_RACE_RETRIES {
            if let Some(result) = self.try_mark_paid(notice).await? {
                return Ok(result);
            }
        }
        Err(OrderError::Contended {
            order_id: notice.order_id.clone(),
        })
    }

    /// `None`: the order became payable only after the update looked (it was created in
    /// between); running the transaction again will pay it.
    async fn try_mark_paid(
        &self,
        notice: &PaymentNotice,
    ) -> Result<Option<MarkPaidResult>, OrderError> {
        let now = now_utc();
        let _turn = self.writer_turn().await;
        let txn = begin_write(&self.db).await?;
        let updated = order::Entity::update_many()
            .col_expr(order::Column::PayStatus, Expr::value(pay_status::PAID))
            .col_expr(order::Column::OrderStatus, Expr::value(order_status::PAID))
            .col_expr(order::Column::PayTime, Expr::value(notice.paid_at))
            .col_expr(order::Column::UpdateTime, Expr::value(now))
            .col_expr(
                order::Column::TransactionId,
                Expr::value(notice.transaction_id.clone()),
            )
            .filter(order::Column::Id.eq(&notice.order_id))
            .filter(order::Column::PayStatus.eq(pay_status::UNPAID))
            .filter(order::Column::OrderStatus.eq(order_status::CREATED))
            .filter(order::Column::PayMoney.eq(notice.amount_fen))
            .exec(&txn)
            .await;
        let updated = match updated {
            Ok(updated) => updated,
            // The unique index on transaction_id: this WeChat payment already paid another
            // order. Nothing can be written (PostgreSQL has aborted the transaction anyway).
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(OrderError::TransactionReused {
                    order_id: notice.order_id.clone(),
                    transaction_id: notice.transaction_id.clone(),
                });
            }
            Err(err) => return Err(err.into()),
        };

        if updated.rows_affected == 1 {
            insert_log(
                &txn,
                LogEntry {
                    order_id: &notice.order_id,
                    at: now,
                    order_status: Some(order_status::PAID.to_owned()),
                    pay_status: Some(pay_status::PAID.to_owned()),
                    consign_status: Some(NOT_CONSIGNED.to_owned()),
                    remarks: paid_remarks(&notice.transaction_id),
                    money: Some(notice.amount_fen),
                },
            )
            .await?;
            let order = find_order(&txn, &notice.order_id).await?;
            txn.commit().await?;
            tracing::info!("order marked paid");
            return Ok(Some(MarkPaidResult {
                outcome: PaidOutcome::MarkedPaid,
                order,
                detail: String::new(),
            }));
        }

        // Nothing changed: find out why. On SQLite this transaction still holds the write
        // lock; elsewhere the order's payment columns can no longer change once paid or closed.
        let order = find_order(&txn, &notice.order_id).await?;
        match OrderState::of(&order) {
            OrderState::Paid if order.transaction_id.as_deref() == Some(&notice.transaction_id) => {
                txn.rollback().await?;
                Ok(Some(MarkPaidResult {
                    outcome: PaidOutcome::AlreadyPaid,
                    order,
                    detail: format!("already paid by transaction {}", notice.transaction_id),
                }))
            }
            OrderState::Paid => record_conflict(
                txn,
                notice,
                order,
                pay_anomaly::Kind::PaidByOtherTransaction,
            )
            .await
            .map(Some),
            OrderState::Closed => {
                record_conflict(txn, notice, order, pay_anomaly::Kind::PaidAfterClose)
                    .await
                    .map(Some)
            }
            OrderState::Unpaid if order.pay_money != Some(notice.amount_fen) => {
                Err(OrderError::AmountMismatch {
                    order_id: order.id,
                    pay_money: order.pay_money.map_or(0, i64::from),
                    amount_fen: notice.amount_fen.into(),
                })
            }
            OrderState::Unpaid => Ok(None),
            OrderState::Other => Err(OrderError::UnexpectedState {
                order_id: order.id,
                pay_status: order.pay_status.unwrap_or_default(),
                order_status: order.order_status.unwrap_or_default(),
            }),
        }
    }
}

async fn find_order(txn: &DatabaseTransaction, order_id: &str) -> Result<order::Model, OrderError> {
    order::Entity::find_by_id(order_id)
        .one(txn)
        .await?
        .ok_or_else(|| OrderError::NotFound {
            order_id: order_id.to_owned(),
        })
}

/// Records the payment that could not be applied, once per (order, transaction), with a log
/// row saying so; the order itself is left as it is.
async fn record_conflict(
    txn: DatabaseTransaction,
    notice: &PaymentNotice,
    order: order::Model,
    kind: pay_anomaly::Kind,
) -> Result<MarkPaidResult, OrderError> {
    let now = now_utc();
    let anomaly = pay_anomaly::ActiveModel {
        order_id: Set(notice.order_id.clone()),
        transaction_id: Set(notice.transaction_id.clone()),
        kind: Set(kind.as_str().to_owned()),
        amount_fen: Set(notice.amount_fen.into()),
        detected_at: Set(now),
    };
    let first_report = insert_if_absent(&txn, pay_anomaly::Entity::insert(anomaly)).await?;
    if first_report {
        insert_log(
            &txn,
            LogEntry {
                order_id: &notice.order_id,
                at: now,
                order_status: order.order_status.clone(),
                pay_status: order.pay_status.clone(),
                consign_status: order.consign_status.clone(),
                remarks: conflict_remarks(kind, notice, &order),
                money: Some(notice.amount_fen),
            },
        )
        .await?;
    }
    txn.commit().await?;
    let detail = match kind {
        pay_anomaly::Kind::PaidByOtherTransaction => format!(
            "order already paid by transaction {}; payment {} recorded for refund",
            order.transaction_id.as_deref().unwrap_or(""),
            notice.transaction_id
        ),
        pay_anomaly::Kind::PaidAfterClose => format!(
            "order is closed; payment {} recorded for refund",
            notice.transaction_id
        ),
    };
    if first_report {
        tracing::warn!(
            event = "order.payment_anomaly",
            kind = kind.as_str(),
            transaction_id = %notice.transaction_id,
            amount_fen = notice.amount_fen,
            "payment conflict recorded for refund"
        );
        crate::metrics::anomaly(matches!(kind, pay_anomaly::Kind::PaidAfterClose));
    }
    Ok(MarkPaidResult {
        outcome: PaidOutcome::PaymentConflict,
        order,
        detail,
    })
}

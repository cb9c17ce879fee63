//! order-svc as pay-svc sees it: the five calls it makes, over lazily connected channels to
//! every order-svc replica, built at start and shared by every handler. A replica that cannot
//! be reached is skipped for the next (see `paynotify::replicas`); every call here is
//! idempotent, so trying it on another replica is safe. gRPC statuses are turned into typed answers
//! here ("no such order" is an answer, "unreachable" is a [`PayError`]); MarkPaid, being
//! idempotent, is retried on a bounded schedule when order-svc cannot be reached.

use std::{future::Future, sync::Arc, time::Duration};

use paynotify::auth::AttachBearer;
use paynotify::unary_body::GrpcChannel;
use paynotify::{
    proto::order::v1::{
        CloseOrderOutcome, CloseOrderRequest, GetOrderRequest, ListPendingOrdersRequest,
        ListPendingOrdersResponse, MarkPaidOutcome, MarkPaidRequest, Order,
        order_service_client::OrderServiceClient,
    },
    proto::order_refusal,
    replicas::Replicas,
    tls::ClientTls,
    wxpay::client::RetryPolicy,
};
use secrecy::SecretString;
use tonic::{Status, service::interceptor::InterceptedService};

use crate::{
    claim::PaymentClaim,
    error::{PayError, is_transient},
    request_id::Outgoing,
};

type Client = OrderServiceClient<InterceptedService<GrpcChannel, Outgoing>>;

#[derive(Clone)]
pub struct Orders {
    replicas: Arc<Replicas>,
    outgoing: Outgoing,
    mark_paid_retry: RetryPolicy,
}

impl std::fmt::Debug for Orders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orders").finish_non_exhaustive()
    }
}

/// What MarkPaid said about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkPaid {
    Outcome {
        outcome: MarkPaidOutcome,
        detail: String,
    },
    /// FAILED_PRECONDITION for `amount_mismatch`: the amount is not the order's pay_money.
    AmountRejected(String),
    /// FAILED_PRECONDITION for `transaction_reused`: the WeChat transaction already paid
    /// another order; the order was not changed, and order-svc recorded the payment in
    /// pay_anomaly.
    TransactionReused(String),
    /// Any other FAILED_PRECONDITION: the order is in a state order-svc does not pay from (an
    /// order-svc too old to record that as an anomaly), or a refusal this pay-svc does not know.
    /// Never read as an amount mismatch: the amount was not the reason.
    Refused(String),
    NotFound,
    /// INVALID_ARGUMENT: order-svc refused the fields.
    Invalid(String),
}

impl Orders {
    /// Channels that connect on first use, so pay-svc starts even when order-svc does not run
    /// yet; `urls` is ORDER_SVC_URL's comma-separated list of replicas. Every call carries
    /// `auth_token` (ORDER_SVC_AUTH_TOKEN, if any) and the current request id.
    pub fn connect_lazy(
        urls: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        mark_paid_retry: RetryPolicy,
        auth_token: Option<&SecretString>,
        tls: &ClientTls,
    ) -> anyhow::Result<Orders> {
        let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
        let replicas = Replicas::connect_lazy(
            "ORDER_SVC_URL",
            &urls,
            connect_timeout,
            request_timeout,
            tls,
        )?;
        Ok(Orders {
            replicas: Arc::new(replicas),
            outgoing: Outgoing::new(AttachBearer::new(auth_token)?),
            mark_paid_retry,
        })
    }

    /// One call on one replica (the next one if it cannot be reached).
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, Status>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.replicas
            .call(|channel| {
                call(OrderServiceClient::with_interceptor(
                    channel,
                    self.outgoing.clone(),
                ))
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The order, or `None` when order-svc has no such order.
    pub async fn get(&self, id: &str) -> Result<Option<Order>, PayError> {
        let request = GetOrderRequest { id: id.to_owned() };
        match self
            .call(|mut client| {
                let request = request.clone();
                async move { client.get_order(request).await }
            })
            .await
        {
            Ok(response) => Ok(response.order),
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
            let sent = self
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.mark_paid(request).await }
                })
                .await;
            match sent {
                Ok(response) => {
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
        mark_paid_refusal(status)
    }

    /// One page of unpaid, unclosed orders of the given age, oldest first, after the page
    /// that returned `page_token` ("" = from the oldest).
    pub async fn list_pending(
        &self,
        min_age: Duration,
        max_age: Option<Duration>,
        limit: u32,
        page_token: &str,
    ) -> Result<ListPendingOrdersResponse, PayError> {
        let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let request = ListPendingOrdersRequest {
            min_age_seconds: seconds(min_age),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
            max_age_seconds: max_age.map(seconds).unwrap_or(0),
            page_token: page_token.to_owned(),
        };
        self.call(|mut client| {
            let request = request.clone();
            async move { client.list_pending_orders(request).await }
        })
        .await
        .map_err(PayError::from_order_svc)
    }

    /// Closes an unpaid order; idempotent, and never closes a paid one.
    pub async fn close(&self, id: &str, reason: &str) -> Result<CloseOrderOutcome, PayError> {
        let request = CloseOrderRequest {
            order_id: id.to_owned(),
            reason: reason.to_owned(),
        };
        self.call(|mut client| {
            let request = request.clone();
            async move { client.close_order(request).await }
        })
        .await
        .map(|response| response.outcome())
        .map_err(PayError::from_order_svc)
    }
}

/// MarkPaid's error status as an answer about the claim, or as an error when it says nothing
/// about the claim (order-svc failing). Of the FAILED_PRECONDITIONs, only the one order-svc
/// names `amount_mismatch` is about the amount.
fn mark_paid_refusal(status: Status) -> Result<MarkPaid, PayError> {
    let detail = || status.message().to_owned();
    match status.code() {
        tonic::Code::FailedPrecondition => {
            let refusal = status
                .metadata()
                .get(order_refusal::KEY)
                .and_then(|value| value.to_str().ok());
            Ok(match refusal {
                Some(order_refusal::AMOUNT_MISMATCH) => MarkPaid::AmountRejected(detail()),
                Some(order_refusal::TRANSACTION_REUSED) => MarkPaid::TransactionReused(detail()),
                _ => MarkPaid::Refused(detail()),
            })
        }
        tonic::Code::NotFound => Ok(MarkPaid::NotFound),
        tonic::Code::InvalidArgument => Ok(MarkPaid::Invalid(detail())),
        _ => Err(PayError::from_order_svc(status)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn failed_precondition(refusal: Option<&'static str>) -> Status {
        let mut status = Status::failed_precondition("order-svc's message");
        if let Some(refusal) = refusal {
            status
                .metadata_mut()
                .insert(order_refusal::KEY, MetadataValue::from_static(refusal));
        }
        status
    }

    #[test]
    fn only_an_amount_refusal_is_an_amount_mismatch() {
        let detail = || "order-svc's message".to_owned();
        assert_eq!(
            mark_paid_refusal(failed_precondition(Some("amount_mismatch"))).unwrap(),
            MarkPaid::AmountRejected(detail())
        );
        assert_eq!(
            mark_paid_refusal(failed_precondition(Some("transaction_reused"))).unwrap(),
            MarkPaid::TransactionReused(detail())
        );
        // An order in a state order-svc does not pay from, or an order-svc that does not say.
        for refusal in [Some("unexpected_state"), Some("something_new"), None] {
            assert_eq!(
                mark_paid_refusal(failed_precondition(refusal)).unwrap(),
                MarkPaid::Refused(detail()),
                "{refusal:?}"
            );
        }
    }

    #[test]
    fn other_codes_keep_their_meaning() {
        assert_eq!(
            mark_paid_refusal(Status::not_found("no")).unwrap(),
            MarkPaid::NotFound
        );
        assert_eq!(
            mark_paid_refusal(Status::invalid_argument("bad")).unwrap(),
            MarkPaid::Invalid("bad".into())
        );
        assert!(mark_paid_refusal(Status::internal("boom")).is_err());
    }
}

//! One notification: body bytes in, the reply WeChat gets out.
//!
//! SUCCESS is answered only when pay-svc says the notification is handled for good
//! (`acknowledge`); every other path — unparseable input, pay-svc unreachable or slow, any
//! rejection — answers a FAIL ack, so WeChat sends the notification again.

use std::{collections::HashMap, time::Duration};

use http::StatusCode;
use paynotify::{auth::AttachBearer, replicas::Replicas};
use paynotify::{
    proto::pay::v1::{ConfirmPaymentRequest, pay_service_client::PayServiceClient},
    wxpay::{
        reply::{SUCCESS_ACK, fail_ack},
        xml::{self, XmlError},
    },
};
use tonic::metadata::MetadataValue;

use crate::metrics::ReplyReason;

/// What the gateway answers WeChat, and why (for the metrics).
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub reason: ReplyReason,
}

impl Reply {
    fn success() -> Self {
        Reply {
            status: StatusCode::OK,
            body: SUCCESS_ACK.to_owned(),
            reason: ReplyReason::Acknowledged,
        }
    }

    pub fn fail(reason: ReplyReason, status: StatusCode, message: &str) -> Self {
        Reply {
            status,
            body: fail_ack(message),
            reason,
        }
    }
}

/// Parses the body, asks pay-svc for a verdict and maps it to WeChat's ack. Runs inside the
/// caller's `notify` span, whose `out_trade_no` it fills in once the body is parsed.
pub async fn handle(
    pay_svc: &Replicas,
    auth: &AttachBearer,
    body: &[u8],
    request_id: &str,
    upstream_timeout: Duration,
) -> Reply {
    let fields = match xml::parse(body) {
        Ok(fields) => fields,
        Err(error) => {
            tracing::warn!(event = "notify.unparseable", %error, "rejected notification body");
            let (reason, status) = match error {
                XmlError::TooLarge { .. } => (ReplyReason::TooLarge, StatusCode::PAYLOAD_TOO_LARGE),
                _ => (ReplyReason::Unparseable, StatusCode::BAD_REQUEST),
            };
            return Reply::fail(reason, status, &error.to_string());
        }
    };
    if let Some(out_trade_no) = fields.get("out_trade_no") {
        tracing::Span::current().record("out_trade_no", loggable(out_trade_no));
    }
    let fields: HashMap<String, String> = fields.into_iter().collect();
    // ConfirmPayment is idempotent, so a replica that cannot be reached is skipped for the next.
    let confirm = pay_svc.call(|channel| {
        let mut request = tonic::Request::new(ConfirmPaymentRequest {
            fields: fields.clone(),
        });
        request.set_timeout(upstream_timeout);
        if let Ok(value) = MetadataValue::try_from(request_id) {
            request.metadata_mut().insert("x-request-id", value);
        }
        let mut client = PayServiceClient::with_interceptor(channel, auth.clone());
        async move { client.confirm_payment(request).await }
    });
    match tokio::time::timeout(upstream_timeout, confirm).await {
        Ok(Ok(response)) => {
            let verdict = response.into_inner();
            tracing::info!(outcome = verdict.outcome().as_str_name(), acknowledge = verdict.acknowledge, reason = %verdict.reason, "notification handled");
            if verdict.acknowledge {
                Reply::success()
            } else {
                Reply::fail(ReplyReason::Rejected, StatusCode::OK, &verdict.reason)
            }
        }
        Ok(Err(status)) => {
            tracing::warn!(event = "notify.upstream_error", code = ?status.code(), message = %status.message(), "pay-svc gave no verdict");
            Reply::fail(
                ReplyReason::UpstreamError,
                StatusCode::OK,
                "temporarily unable to process, retry later",
            )
        }
        Err(_) => {
            tracing::warn!(
                event = "notify.upstream_timeout",
                "pay-svc did not answer in time"
            );
            Reply::fail(
                ReplyReason::UpstreamTimeout,
                StatusCode::OK,
                "timed out, retry later",
            )
        }
    }
}

/// Unverified input as it may appear in a log line: at most 32 characters (WeChat's limit
/// for out_trade_no), cut at the first control character.
fn loggable(value: &str) -> &str {
    let end = value
        .char_indices()
        .take(33)
        .find(|&(i, c)| c.is_control() || i >= 32)
        .map_or(value.len(), |(i, _)| i);
    &value[..end]
}

/// A short random id that follows one notification through every service's logs.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_ids_are_bounded_and_single_line() {
        assert_eq!(loggable("A1"), "A1");
        assert_eq!(loggable("A1\nforged"), "A1");
        assert_eq!(loggable(&"9".repeat(40)), "9".repeat(32));
        assert_eq!(loggable("订单"), "订单");
        assert_eq!(new_request_id().len(), 16);
    }
}

//! One notification: body bytes in, the reply WeChat gets out.
//!
//! SUCCESS is answered only when pay-svc says the notification is handled for good
//! (`acknowledge`); every other path — unparseable input, pay-svc unreachable or slow, any
//! rejection — answers a FAIL ack, so WeChat sends the notification again.

use std::{collections::HashMap, time::Duration};

use http::StatusCode;
use paynotify::{auth::AttachBearer, replicas::Replicas};
use paynotify::{
    loggable,
    proto::pay::v1::{ConfirmPaymentRequest, pay_service_client::PayServiceClient},
    wxpay::{
        reply::{SUCCESS_ACK, fail_ack},
        xml::{self, XmlError},
    },
};
use tonic::metadata::MetadataValue;

use crate::metrics::ReplyReason;

/// WeChat's limit for out_trade_no: longer is not an id, and is not logged whole.
const MAX_LOGGED_ID_CHARS: usize = 32;

/// The most of pay-svc's reason a log line shows. pay-svc bounds and escapes the notification's
/// text it repeats; the gateway does not count on it, the reason comes back from a request
/// anyone can send.
const MAX_LOGGED_REASON_CHARS: usize = 256;

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
        // The parser bounds and escapes the sender's text it repeats in `error`.
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
        tracing::Span::current().record(
            "out_trade_no",
            &*loggable(out_trade_no, MAX_LOGGED_ID_CHARS),
        );
    }
    let fields: HashMap<String, String> = fields.into_iter().collect();
    // ConfirmPayment is idempotent, so a replica that cannot be reached is skipped for the next.
    let confirm = pay_svc.call(|channel| {
        let mut request = tonic::Request::new(ConfirmPaymentRequest {
            fields: fields.clone(),
        });
        request.set_timeout(upstream_timeout);
        if let Ok(value) = MetadataValue::try_from(request_id) {
            request
                .metadata_mut()
                .insert(paynotify::grpc_server::REQUEST_ID_HEADER, value);
        }
        let mut client = PayServiceClient::with_interceptor(channel, auth.clone());
        async move { client.confirm_payment(request).await }
    });
    match tokio::time::timeout(upstream_timeout, confirm).await {
        Ok(Ok(response)) => {
            let verdict = response.into_inner();
            let reason = loggable(&verdict.reason, MAX_LOGGED_REASON_CHARS);
            tracing::info!(outcome = verdict.outcome().as_str_name(), acknowledge = verdict.acknowledge, %reason, "notification handled");
            if verdict.acknowledge {
                Reply::success()
            } else {
                Reply::fail(ReplyReason::Rejected, StatusCode::OK, &verdict.reason)
            }
        }
        Ok(Err(status)) => {
            let message = loggable(status.message(), MAX_LOGGED_REASON_CHARS);
            tracing::warn!(event = "notify.upstream_error", code = ?status.code(), %message, "pay-svc gave no verdict");
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

/// A short random id that follows one notification through every service's logs.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_and_random() {
        assert_eq!(new_request_id().len(), 16);
        assert_ne!(new_request_id(), new_request_id());
    }
}

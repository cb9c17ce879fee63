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
use tracing::Instrument as _;

/// What the gateway answers WeChat.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

impl Reply {
    fn success() -> Self {
        Reply {
            status: StatusCode::OK,
            body: SUCCESS_ACK.to_owned(),
        }
    }

    pub fn fail(status: StatusCode, reason: &str) -> Self {
        Reply {
            status,
            body: fail_ack(reason),
        }
    }
}

/// Parses the body, asks pay-svc for a verdict and maps it to WeChat's ack.
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
            let status = match error {
                XmlError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return Reply::fail(status, &error.to_string());
        }
    };
    let out_trade_no = fields.get("out_trade_no").cloned().unwrap_or_default();
    let span = tracing::info_span!("notify", %request_id, %out_trade_no);
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
    async move {
        match tokio::time::timeout(upstream_timeout, confirm).await {
            Ok(Ok(response)) => {
                let verdict = response.into_inner();
                tracing::info!(outcome = ?verdict.outcome(), acknowledge = verdict.acknowledge, reason = %verdict.reason, "notification handled");
                if verdict.acknowledge {
                    Reply::success()
                } else {
                    Reply::fail(StatusCode::OK, &verdict.reason)
                }
            }
            Ok(Err(status)) => {
                tracing::warn!(event = "notify.upstream_error", code = ?status.code(), message = %status.message(), "pay-svc gave no verdict");
                Reply::fail(StatusCode::OK, "temporarily unable to process, retry later")
            }
            Err(_) => {
                tracing::warn!(event = "notify.upstream_timeout", "pay-svc did not answer in time");
                Reply::fail(StatusCode::OK, "timed out, retry later")
            }
        }
    }
    .instrument(span)
    .await
}

/// A short random id that follows one notification through every service's logs.
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

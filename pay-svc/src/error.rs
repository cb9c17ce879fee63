//! pay-svc's one error type: the ways a request can end without a verdict or a result, and
//! their single mapping to gRPC status codes. A verdict about a notification (rejected,
//! duplicate, ...) is not an error; an error means "ask again later" or "the request is wrong".

use paynotify::{replicas::DEPENDENCY_FAILED, wxpay::client::WechatError};

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The order is missing or in a state that does not allow the call.
    #[error("{0}")]
    OrderNotPayable(String),
    #[error("order-svc is unavailable")]
    OrderSvcUnavailable(#[source] tonic::Status),
    #[error("order-svc answered unexpectedly")]
    OrderSvc(#[source] tonic::Status),
    #[error("WeChat Pay call failed")]
    Wechat(#[source] WechatError),
}

impl From<WechatError> for PayError {
    fn from(err: WechatError) -> Self {
        PayError::Wechat(err)
    }
}

impl PayError {
    /// Classifies a failed order-svc call: transient (unreachable, timed out) or not.
    pub fn from_order_svc(status: tonic::Status) -> PayError {
        if is_transient(&status) {
            PayError::OrderSvcUnavailable(status)
        } else {
            PayError::OrderSvc(status)
        }
    }
}

/// Codes that say "order-svc could not answer", as opposed to "order-svc said no". A client-side
/// timeout arrives as CANCELLED ("Timeout expired").
pub fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// `err` and its sources, joined: what the log gets, while the caller gets a terse status.
pub use paynotify::error_chain as chain;

impl From<PayError> for tonic::Status {
    fn from(err: PayError) -> tonic::Status {
        use tonic::{Code, Status};
        let code = match &err {
            PayError::InvalidArgument(_) => Code::InvalidArgument,
            PayError::OrderNotPayable(_) => Code::FailedPrecondition,
            PayError::OrderSvcUnavailable(_) => Code::Unavailable,
            PayError::OrderSvc(_) => Code::Internal,
            PayError::Wechat(wechat) => match wechat {
                WechatError::Business { err_code, .. } => match err_code.as_str() {
                    "ORDERNOTEXIST" => Code::NotFound,
                    "ORDERPAID" | "ORDERCLOSED" | "OUT_TRADE_NO_USED" => Code::FailedPrecondition,
                    "PARAM_ERROR" | "INVALID_REQUEST" => Code::InvalidArgument,
                    _ => Code::Unavailable,
                },
                WechatError::InvalidRequest { .. } => Code::InvalidArgument,
                WechatError::Config(_) => Code::Internal,
                // Unreachable, timed out, 5xx, unsigned or malformed replies, FAIL: no answer
                // that can be trusted yet. Callers (the gateway) answer WeChat FAIL and it
                // sends the notification again.
                _ => Code::Unavailable,
            },
        };
        // UNAVAILABLE because WeChat itself answered with a failure (5xx or 429, SYSTEMERROR,
        // FAIL): every pay-svc would get the same, so it is marked and the gateway does not
        // replay the call on the others, each of which would ask WeChat again. What may be
        // this replica's own trouble (its way out timing out or refused, another HTTP status
        // from a wrong address or proxy, its key rejecting the reply, order-svc out of its
        // reach) is not marked: another replica may get through.
        let dependency = match &err {
            PayError::Wechat(WechatError::HttpStatus { status, .. })
                if *status >= 500 || *status == 429 =>
            {
                Some("wechat")
            }
            PayError::Wechat(WechatError::ReturnFail { .. } | WechatError::Business { .. })
                if code == Code::Unavailable =>
            {
                Some("wechat")
            }
            _ => None,
        };
        let detail = chain(&err);
        if matches!(code, Code::Unavailable | Code::Internal) {
            tracing::warn!(error = %detail, code = ?code, "request failed");
        } else {
            tracing::info!(error = %detail, code = ?code, "request refused");
        }
        // Terse for the caller: the top-level message plus the leaf, never the whole chain of
        // internal addresses.
        let message = match &err {
            PayError::Wechat(wechat) => wechat.to_string(),
            other => other.to_string(),
        };
        let mut status = Status::new(code, message);
        if let Some(dependency) = dependency {
            status.metadata_mut().insert(
                DEPENDENCY_FAILED,
                tonic::metadata::MetadataValue::from_static(dependency),
            );
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use paynotify::wxpay::client::Api;

    use super::*;

    fn business(code: &str) -> PayError {
        PayError::Wechat(WechatError::Business {
            api: Api::OrderQuery,
            err_code: code.into(),
            err_code_des: String::new(),
        })
    }

    #[test]
    fn statuses() {
        let code = |err: PayError| tonic::Status::from(err).code();
        assert_eq!(
            code(PayError::OrderSvcUnavailable(tonic::Status::unavailable(
                "x"
            ))),
            tonic::Code::Unavailable
        );
        assert_eq!(code(business("SYSTEMERROR")), tonic::Code::Unavailable);
        assert_eq!(code(business("ORDERNOTEXIST")), tonic::Code::NotFound);
        assert_eq!(code(business("ORDERPAID")), tonic::Code::FailedPrecondition);
        assert_eq!(
            code(PayError::OrderNotPayable("paid".into())),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            code(PayError::Wechat(WechatError::BadSignature {
                api: Api::OrderQuery,
                source: paynotify::wxpay::sign::SignError::MissingSign,
            })),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn dependency_failures_are_marked() {
        let dependency = |err: PayError| {
            let status = tonic::Status::from(err);
            status
                .metadata()
                .get(DEPENDENCY_FAILED)
                .map(|value| value.to_str().unwrap_or("not ASCII").to_owned())
        };
        let wechat = Some("wechat".to_owned());
        assert_eq!(dependency(business("SYSTEMERROR")), wechat);
        assert_eq!(
            dependency(PayError::Wechat(WechatError::HttpStatus {
                api: Api::OrderQuery,
                status: 502,
            })),
            wechat
        );
        assert_eq!(
            dependency(PayError::Wechat(WechatError::ReturnFail {
                api: Api::OrderQuery,
                return_msg: "system busy".into(),
            })),
            wechat
        );

        // What may be this replica's own trouble: the gateway tries another.
        for status in [404, 403, 307] {
            assert_eq!(
                dependency(PayError::Wechat(WechatError::HttpStatus {
                    api: Api::OrderQuery,
                    status,
                })),
                None,
                "{status}"
            );
        }
        assert_eq!(
            dependency(PayError::Wechat(WechatError::BadSignature {
                api: Api::OrderQuery,
                source: paynotify::wxpay::sign::SignError::MissingSign,
            })),
            None
        );
        assert_eq!(
            dependency(PayError::OrderSvcUnavailable(tonic::Status::cancelled(
                "Timeout expired"
            ))),
            None
        );

        // Answers, not failures to answer: nothing to mark.
        assert_eq!(dependency(PayError::InvalidArgument("x".into())), None);
        assert_eq!(dependency(PayError::OrderNotPayable("paid".into())), None);
        assert_eq!(
            dependency(PayError::OrderSvc(tonic::Status::internal("db"))),
            None
        );
        assert_eq!(dependency(business("ORDERNOTEXIST")), None);
        assert_eq!(dependency(business("ORDERPAID")), None);
        assert_eq!(
            dependency(PayError::Wechat(WechatError::Config("no key".into()))),
            None
        );
    }

    #[test]
    fn transient_order_svc_failures() {
        assert!(is_transient(&tonic::Status::unavailable("down")));
        assert!(is_transient(&tonic::Status::cancelled("Timeout expired")));
        assert!(!is_transient(&tonic::Status::not_found("x")));
        assert!(matches!(
            PayError::from_order_svc(tonic::Status::internal("db")),
            PayError::OrderSvc(_)
        ));
    }
}

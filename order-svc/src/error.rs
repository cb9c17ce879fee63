//! The one error type of order-svc's request path, and its one mapping to a gRPC status.
//!
//! Callers get a terse status with a stable code; the full source chain goes to the log.

use sea_orm::DbErr;

/// The gRPC metadata entry on every FAILED_PRECONDITION naming which refusal it is, so a
/// caller need not parse the message (shared with pay-svc, which reads it).
pub use paynotify::proto::order_refusal::{
    AMOUNT_MISMATCH as REFUSED_AMOUNT_MISMATCH, KEY as REFUSAL_KEY,
    TRANSACTION_REUSED as REFUSED_TRANSACTION_REUSED, UNEXPECTED_STATE as REFUSED_UNEXPECTED_STATE,
};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("order {order_id} not found")]
    NotFound { order_id: String },

    #[error("order {order_id} already exists")]
    AlreadyExists { order_id: String },

    /// The payment does not match what the order asks for; nothing was written.
    #[error("order {order_id} asks for {pay_money} fen but the payment is {amount_fen} fen")]
    AmountMismatch {
        order_id: String,
        pay_money: i64,
        amount_fen: i64,
    },

    /// WeChat transaction ids are unique per payment; this one already paid another order.
    #[error("transaction {transaction_id} already paid another order, not {order_id}")]
    TransactionReused {
        order_id: String,
        transaction_id: String,
    },

    /// The order is in a state this service does not move from (e.g. one the original system
    /// wrote with other status values). CloseOrder answers this; MarkPaid records the payment
    /// as a `paid_in_unexpected_state` anomaly instead, since WeChat already has the money.
    #[error("order {order_id} has pay_status {pay_status:?} and order_status {order_status:?}")]
    UnexpectedState {
        order_id: String,
        pay_status: String,
        order_status: String,
    },

    /// The order kept changing under a transaction; the caller may retry.
    #[error("order {order_id} changed concurrently, retry")]
    Contended { order_id: String },

    /// Every freshly drawn id was taken (should not happen in practice).
    #[error("no free id for a new {what} after {attempts} attempts")]
    IdsExhausted { what: &'static str, attempts: usize },

    #[error("database error")]
    Database(#[from] DbErr),

    /// The task running a store call panicked or was aborted.
    #[error("store task failed: {0}")]
    Task(String),
}

impl OrderError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        OrderError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<OrderError> for tonic::Status {
    fn from(err: OrderError) -> Self {
        use tonic::Status;
        match &err {
            OrderError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            OrderError::NotFound { .. } => Status::not_found(err.to_string()),
            OrderError::AlreadyExists { .. } => Status::already_exists(err.to_string()),
            OrderError::AmountMismatch { .. } => {
                tracing::warn!(event = "order.amount_mismatch", error = %err, "refused");
                refused(&err, REFUSED_AMOUNT_MISMATCH)
            }
            OrderError::TransactionReused { .. } => {
                tracing::warn!(event = "order.transaction_reused", error = %err, "refused");
                refused(&err, REFUSED_TRANSACTION_REUSED)
            }
            OrderError::UnexpectedState { .. } => {
                tracing::warn!(event = "order.unexpected_state", error = %err, "refused");
                refused(&err, REFUSED_UNEXPECTED_STATE)
            }
            OrderError::Contended { .. } => {
                tracing::warn!(error = %err, "contended");
                Status::aborted(err.to_string())
            }
            OrderError::IdsExhausted { .. } => {
                tracing::error!(error = %err, "id generation");
                Status::internal("internal error")
            }
            OrderError::Task(_) => {
                tracing::error!(error = %err, "store task");
                Status::internal("internal error")
            }
            OrderError::Database(db) => {
                tracing::error!(error = %paynotify::error_chain(&err), "database");
                match db {
                    // The pool is exhausted or the database unreachable: worth a retry later.
                    DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                        Status::unavailable("database unavailable")
                    }
                    _ => Status::internal("internal error"),
                }
            }
        }
    }
}

/// FAILED_PRECONDITION with the message and the [`REFUSAL_KEY`] entry saying which refusal.
fn refused(err: &OrderError, refusal: &'static str) -> tonic::Status {
    let mut status = tonic::Status::failed_precondition(err.to_string());
    status.metadata_mut().insert(
        REFUSAL_KEY,
        tonic::metadata::MetadataValue::from_static(refusal),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_stable_codes() {
        let cases = [
            (
                OrderError::invalid("order_id", "empty"),
                tonic::Code::InvalidArgument,
            ),
            (
                OrderError::NotFound {
                    order_id: "1".into(),
                },
                tonic::Code::NotFound,
            ),
            (
                OrderError::AmountMismatch {
                    order_id: "1".into(),
                    pay_money: 100,
                    amount_fen: 1,
                },
                tonic::Code::FailedPrecondition,
            ),
            (
                OrderError::Database(DbErr::Custom("boom".into())),
                tonic::Code::Internal,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }

    #[test]
    fn each_refusal_says_which_it_is() {
        let refusal = |err: OrderError| {
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            status
                .metadata()
                .get(REFUSAL_KEY)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            refusal(OrderError::AmountMismatch {
                order_id: "1".into(),
                pay_money: 100,
                amount_fen: 1,
            })
            .as_deref(),
            Some(REFUSED_AMOUNT_MISMATCH)
        );
        assert_eq!(
            refusal(OrderError::TransactionReused {
                order_id: "1".into(),
                transaction_id: "4200".into(),
            })
            .as_deref(),
            Some(REFUSED_TRANSACTION_REUSED)
        );
        assert_eq!(
            refusal(OrderError::UnexpectedState {
                order_id: "1".into(),
                pay_status: "2".into(),
                order_status: "0".into(),
            })
            .as_deref(),
            Some(REFUSED_UNEXPECTED_STATE)
        );
    }

    #[test]
    fn database_details_stay_out_of_the_answer() {
        let status = tonic::Status::from(OrderError::Database(DbErr::Custom(
            "password=hunter2".into(),
        )));
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn amount_mismatch_names_both_amounts() {
        let status = tonic::Status::from(OrderError::AmountMismatch {
            order_id: "A1".into(),
            pay_money: 9900,
            amount_fen: 1,
        });
        assert!(status.message().contains("9900") && status.message().contains(" 1 fen"));
    }
}

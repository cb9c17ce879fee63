//! `pay_anomaly` (ours): a payment that could not be applied to its order — the order was
//! paid by another transaction, closed, or in a state this service does not pay from — kept
//! once per (order, transaction) so a person can refund it. The composite key is what makes
//! "recorded exactly once" hold across processes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pay_anomaly")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    /// [`Kind`] as text.
    pub kind: String,
    pub amount_fen: i64,
    /// Naive UTC.
    pub detected_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Why a payment could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The order was already paid by a different transaction: a double payment.
    PaidByOtherTransaction,
    /// The order was closed before the payment arrived.
    PaidAfterClose,
    /// The order's (pay_status, order_status) is a pair this service never writes (e.g. the
    /// original system's pay_status "2", payment failed): it is not paid from there, and the
    /// payment waits for a person instead of being lost.
    PaidInUnexpectedState,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::PaidByOtherTransaction,
        Kind::PaidAfterClose,
        Kind::PaidInUnexpectedState,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PaidByOtherTransaction => "paid_by_other_transaction",
            Kind::PaidAfterClose => "paid_after_close",
            Kind::PaidInUnexpectedState => "paid_in_unexpected_state",
        }
    }
}

//! `pay_anomaly` (ours): a payment that could not be applied to its order — the order was
//! paid by another transaction, closed, or in a state this service does not pay from, or the
//! payment's transaction already paid another order — kept once per (order, transaction) so a
//! person can refund it. The composite key is what makes "recorded exactly once" hold across
//! processes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pay_anomaly")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: String,
    /// [`Kind`] as text, at most [`MAX_KIND_CHARS`].
    pub kind: String,
    pub amount_fen: i64,
    /// Naive UTC.
    pub detected_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The width of the `kind` column, `varchar(32)`, on every backend (no CHECK constraint or
/// enum type: a new kind needs no migration as long as it fits).
pub const MAX_KIND_CHARS: u32 = 32;

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
    /// The payment's transaction already paid another order (the unique index on
    /// `tb_order.transaction_id` refused it): MarkPaid refuses it and leaves the order as it
    /// is, and as WeChat has the money, a person settles it.
    TransactionReused,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::PaidByOtherTransaction,
        Kind::PaidAfterClose,
        Kind::PaidInUnexpectedState,
        Kind::TransactionReused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PaidByOtherTransaction => "paid_by_other_transaction",
            Kind::PaidAfterClose => "paid_after_close",
            Kind::PaidInUnexpectedState => "paid_in_unexpected_state",
            Kind::TransactionReused => "transaction_reused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_fits_the_column_under_a_name_of_its_own() {
        let names: std::collections::HashSet<&str> = Kind::ALL.map(Kind::as_str).into();
        assert_eq!(names.len(), Kind::ALL.len(), "{names:?}");
        for name in names {
            assert!(name.len() <= MAX_KIND_CHARS as usize, "{name}");
        }
    }
}

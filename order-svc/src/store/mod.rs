//! The order store: every read and state change of orders, as SeaORM queries and
//! transactions. Each state change is a conditional `UPDATE` whose affected-row count decides
//! what happened, inside one transaction with its log row — so correctness holds for any number
//! of concurrent calls and order-svc processes on one database, with no process-local lock.

mod close;
mod create;
mod mark_paid;
mod read;
mod write;

use sea_orm::DatabaseConnection;

pub(crate) use write::begin_write;

/// Handle to the order tables; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct OrderStore {
    db: DatabaseConnection,
}

impl OrderStore {
    pub fn new(db: DatabaseConnection) -> Self {
        OrderStore { db }
    }
}

/// How often a transaction that lost a race to a concurrent writer is run again.
const MAX_RACE_RETRIES: usize = 3;

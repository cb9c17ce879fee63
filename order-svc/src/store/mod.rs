//! The order store: every read and state change of orders, as SeaORM queries and
//! transactions. Each state change is a conditional `UPDATE` whose affected-row count decides
//! what happened, inside one transaction with its log row — so correctness holds for any number
//! of concurrent calls and order-svc processes on one database; no process-local lock is
//! needed for it (the SQLite writer queue below only shortens waits).

mod batch;
mod close;
mod create;
mod mark_paid;
mod order_reader;
mod paid_writer;
mod read;
mod write;

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::{Mutex, MutexGuard};

use order_reader::OrderReader;
use paid_writer::PaidWriter;
pub(crate) use write::begin_write;

/// Handle to the order tables; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct OrderStore {
    db: DatabaseConnection,
    /// SQLite only: the queue writers of this process wait in for their turn.
    sqlite_writers: Option<Arc<Mutex<()>>>,
    /// SQLite only: MarkPaid goes through one writer task that commits payments in groups.
    paid_writer: Option<PaidWriter>,
    /// SQLite only: reads of one order go through one reader task that fetches them in batches.
    order_reader: Option<OrderReader>,
}

impl OrderStore {
    /// On SQLite this starts the group-commit writer and the batched reader tasks, so it needs
    /// a Tokio runtime.
    pub fn new(db: DatabaseConnection) -> Self {
        let sqlite_writers =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let paid_writer = sqlite_writers
            .as_ref()
            .map(|writers| paid_writer::start(db.clone(), Arc::clone(writers)));
        let order_reader = sqlite_writers
            .is_some()
            .then(|| order_reader::start(db.clone()));
        OrderStore {
            db,
            sqlite_writers,
            paid_writer,
            order_reader,
        }
    }

    /// On SQLite, waits for this process's turn to write. SQLite admits one writer at a time
    /// and makes the others poll its lock with sleeps of up to 100 ms, which under load turns
    /// into seconds of tail latency; a first-in-first-out queue in front of `BEGIN IMMEDIATE`
    /// hands the lock straight on instead. This is for speed only: correctness still comes
    /// from the conditional UPDATE, and other processes on the same file still wait in
    /// SQLite's own lock. Other backends have row locks and need no queue.
    async fn writer_turn(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.sqlite_writers {
            Some(queue) => Some(queue.lock().await),
            None => None,
        }
    }
}

/// How often a transaction that lost a race to a concurrent writer is run again.
const MAX_RACE_RETRIES: usize = 3;

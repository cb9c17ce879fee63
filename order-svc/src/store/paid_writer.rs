//! Group commit of MarkPaid on SQLite.
//!
//! SQLite has one writer at a time, and with `synchronous=FULL` each commit waits for an
//! fsync (about 2 ms on a virtio disk), so one transaction per payment caps a process at a
//! few hundred payments a second however many arrive at once. Here every MarkPaid of the
//! process is handed to one writer task, which takes whatever is queued (up to
//! [`MAX_GROUP`]), runs them one after another in one `BEGIN IMMEDIATE` transaction, and
//! commits once: one fsync for the group. Only then does it answer each caller, so an answer
//! still means "durably written". A refused payment writes nothing, so it cannot undo the
//! others ([`apply_each`]); if the group itself cannot commit, each payment is run again in a
//! transaction of its own, so every caller gets its own answer (if it cannot even begin, every
//! caller gets that error at once). Correctness still comes from
//! the conditional UPDATE in [`super::mark_paid::apply`], not from this task: should the task
//! ever stop, callers pay in a transaction of their own instead.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio::sync::Mutex;

use super::batch::{Batcher, Job};
use super::mark_paid::{Applied, PaidLog, apply, apply_alone};
use super::write::{begin_write, insert_logs};
use crate::domain::PaymentNotice;
use crate::error::OrderError;

/// The most payments committed together. Larger groups save little once the fsync is shared
/// and make the first caller in a group wait for the others' statements.
pub(crate) const MAX_GROUP: usize = 64;

type Answer = Result<Option<Applied>, OrderError>;

/// The handle callers submit payments through ([`Batcher::submit`]; `None` means the writer
/// task has stopped and the caller must pay in a transaction of its own).
pub(crate) type PaidWriter = Batcher<PaymentNotice, Answer>;

/// Starts the writer task. `writers` is the store's SQLite writer queue: a group takes its
/// turn there like any other write transaction of the process.
pub(crate) fn start(db: DatabaseConnection, writers: Arc<Mutex<()>>) -> PaidWriter {
    Batcher::start(
        MAX_GROUP,
        "the MarkPaid writer has stopped; paying in a transaction of its own",
        move |group| commit(db.clone(), Arc::clone(&writers), group),
    )
}

/// Commits one group and answers each of its callers.
async fn commit(
    db: DatabaseConnection,
    writers: Arc<Mutex<()>>,
    group: Vec<Job<PaymentNotice, Answer>>,
) {
    let _turn = writers.lock().await;
    crate::metrics::paid_group(group.len());
    let txn = match begin_write(&db).await {
        Ok(txn) => txn,
        Err(err) => {
            // Nothing ran. One by one, each payment would wait as long again (the busy
            // timeout, or the pool's) while every write of the process queues behind it:
            // answer them all now; the callers' retries (and WeChat's) come back later.
            tracing::warn!(
                error = %paynotify::error_chain(&err),
                payments = group.len(),
                "group commit could not start; failing its payments"
            );
            for job in group {
                job.answer(Err(could_not_start(&err)));
            }
            return;
        }
    };
    match commit_group(txn, &group).await {
        Ok(answers) => {
            // A caller that has gone is not undone: its payment is written either way.
            for (job, answer) in group.into_iter().zip(answers) {
                job.answer(answer);
            }
        }
        Err(err) => {
            tracing::warn!(
                error = %err,
                payments = group.len(),
                "group commit failed; committing its payments one by one"
            );
            for job in group {
                let answer = apply_alone(&db, &job.request).await;
                job.answer(answer);
            }
        }
    }
}

/// What each payment of a group that could not begin is answered: a connection that could not
/// be had stays what it is (UNAVAILABLE to the caller, who may try another replica); anything
/// else is a database error, as it would have been alone, saying where it came from.
fn could_not_start(err: &DbErr) -> OrderError {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => OrderError::Database(err.clone()),
        other => OrderError::Database(DbErr::Custom(format!(
            "the group commit could not start: {}",
            paynotify::error_chain(other)
        ))),
    }
}

/// Every payment of the group in `txn`, then one commit. `Err`: nothing of the
/// group was committed.
async fn commit_group(
    txn: DatabaseTransaction,
    group: &[Job<PaymentNotice, Answer>],
) -> Result<Vec<Answer>, OrderError> {
    match apply_each(&txn, group).await {
        Ok(answers) => {
            txn.commit().await?;
            Ok(answers)
        }
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rolling back a failed group failed");
            }
            Err(err)
        }
    }
}

/// No savepoint per payment: on SQLite a failed statement undoes its own changes, and every
/// way `apply` refuses a payment comes before the payment's first write (see
/// [`wrote_nothing`]), so a refused payment leaves nothing behind and the group goes on. An
/// error that may come after a write fails the group, which is then rolled back and run one
/// by one. (A savepoint each would cost two more round trips to SQLite's thread per payment,
/// on the one path every payment waits in.) For the same reason the log rows of the payments
/// the group marks paid are written last, in one statement; if that fails, so does the group.
async fn apply_each(
    txn: &DatabaseTransaction,
    group: &[Job<PaymentNotice, Answer>],
) -> Result<Vec<Answer>, OrderError> {
    let mut answers = Vec::with_capacity(group.len());
    let mut paid_logs = Vec::with_capacity(group.len());
    for job in group {
        match apply(txn, &job.request, PaidLog::Later(&mut paid_logs)).await {
            Err(err) if !wrote_nothing(&err) => return Err(err),
            answer => answers.push(answer),
        }
    }
    insert_logs(txn, paid_logs).await?;
    Ok(answers)
}

/// Whether `apply` failing with `err` has written nothing: the refusals it decides before
/// writing (the order is missing, in another state, asks another amount), and the duplicate
/// `transaction_id` of its first statement, which SQLite rolls back by itself (its anomaly is
/// recorded after the group, by the caller: `OrderStore::mark_paid`). Anything else may come
/// after the UPDATE or the log row.
fn wrote_nothing(err: &OrderError) -> bool {
    match err {
        OrderError::TransactionReused { .. }
        | OrderError::AmountMismatch { .. }
        | OrderError::NotFound { .. }
        | OrderError::UnexpectedState { .. }
        | OrderError::InvalidArgument { .. }
        | OrderError::AlreadyExists { .. } => true,
        OrderError::Contended { .. }
        | OrderError::IdsExhausted { .. }
        | OrderError::Database(_)
        | OrderError::Task(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entities::{order, order_log};
    use crate::domain::{NewOrder, PaidOutcome};
    use crate::store::OrderStore;
    use crate::testing::{Backend, TestDatabase};
    use sea_orm::{ColumnTrait, ConnectionTrait, Database, EntityTrait, QueryFilter};

    /// A migrated SQLite database (kept while the handle lives) with an unpaid order of 500
    /// fen for each id.
    async fn sqlite_with_orders(
        ids: &[&str],
    ) -> anyhow::Result<(TestDatabase, sea_orm::DatabaseConnection)> {
        let database = TestDatabase::create(Backend::Sqlite).await?;
        let db = Database::connect(database.url()).await?;
        crate::db::schema::migrate(&db).await?;
        let store = OrderStore::new(db.clone());
        for id in ids {
            store
                .create_order(&NewOrder::new(id, 500, 0, 0, "")?)
                .await?;
        }
        Ok((database, db))
    }

    fn job(order_id: &str, transaction_id: &str, fen: i64) -> Job<PaymentNotice, Answer> {
        Job {
            request: PaymentNotice::new(order_id, transaction_id, fen, "20240101120000").unwrap(),
            answer: tokio::sync::oneshot::channel().0,
        }
    }

    /// One group, refused payments between good ones: the good ones are committed, each
    /// refusal gets its own error, and nothing of the refused ones is written. This is the
    /// invariant that lets the group run without a savepoint per payment.
    #[tokio::test]
    async fn refused_payments_in_a_group_leave_the_others_committed() -> anyhow::Result<()> {
        let (_database, db) = sqlite_with_orders(&["good1", "good2", "mismatch", "reuse"]).await?;
        let group = [
            job("good1", "4200000000000000000000000001", 500),
            job("mismatch", "4200000000000000000000000002", 499),
            job("nosuch", "4200000000000000000000000003", 500),
            job("reuse", "4200000000000000000000000001", 500),
            job("good2", "4200000000000000000000000004", 500),
        ];
        let answers = commit_group(begin_write(&db).await?, &group).await?;

        let outcome = |answer: &Answer| match answer {
            Ok(Some(applied)) => format!("{:?}", applied.result.outcome),
            Ok(None) => "retry".into(),
            Err(err) => err.to_string(),
        };
        let outcomes: Vec<String> = answers.iter().map(outcome).collect();
        assert_eq!(outcomes[0], format!("{:?}", PaidOutcome::MarkedPaid));
        assert!(outcomes[1].contains("asks for 500 fen"), "{outcomes:?}");
        assert!(outcomes[2].contains("not found"), "{outcomes:?}");
        assert!(
            outcomes[3].contains("already paid another order"),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[4], format!("{:?}", PaidOutcome::MarkedPaid));

        for (id, paid) in [
            ("good1", true),
            ("good2", true),
            ("mismatch", false),
            ("reuse", false),
        ] {
            let row = order::Entity::find_by_id(id).all(&db).await?.pop().unwrap();
            assert_eq!(row.transaction_id.is_some(), paid, "{id}");
            let logs = order_log::Entity::find()
                .filter(order_log::Column::OrderId.eq(id))
                .all(&db)
                .await?;
            assert_eq!(logs.len(), usize::from(paid), "{id}");
        }
        Ok(())
    }

    /// Copies of one payment, and another payment of the same order, in the same group (WeChat
    /// resends from several servers at once): the first pays the order and gets the one paid
    /// log row, the copy is already paid, the other payment is recorded for refund with a log
    /// row of its own; the group's paid log rows are written together at the end.
    #[tokio::test]
    async fn one_order_paid_twice_in_a_group_gets_one_paid_log_row() -> anyhow::Result<()> {
        let (_database, db) = sqlite_with_orders(&["twice", "other", "third"]).await?;
        let group = [
            job("twice", "4200000000000000000000000001", 500),
            job("twice", "4200000000000000000000000001", 500),
            job("twice", "4200000000000000000000000002", 500),
            job("other", "4200000000000000000000000003", 500),
            job("third", "4200000000000000000000000004", 500),
        ];
        let answers = commit_group(begin_write(&db).await?, &group).await?;
        let outcomes: Vec<PaidOutcome> = answers
            .into_iter()
            .map(|answer| answer.unwrap().unwrap().result.outcome)
            .collect();
        assert_eq!(
            outcomes,
            [
                PaidOutcome::MarkedPaid,
                PaidOutcome::AlreadyPaid,
                PaidOutcome::PaymentConflict,
                PaidOutcome::MarkedPaid,
                PaidOutcome::MarkedPaid,
            ]
        );

        let twice = order::Entity::find_by_id("twice")
            .all(&db)
            .await?
            .pop()
            .unwrap();
        assert_eq!(
            twice.transaction_id.as_deref(),
            Some("4200000000000000000000000001")
        );
        let logs = |id: &'static str| {
            order_log::Entity::find()
                .filter(order_log::Column::OrderId.eq(id))
                .all(&db)
        };
        let remarks: Vec<String> = logs("twice")
            .await?
            .into_iter()
            .map(|log| log.remarks.unwrap_or_default())
            .collect();
        assert_eq!(remarks.len(), 2, "{remarks:?}");
        assert_eq!(
            remarks
                .iter()
                .filter(|r| **r == crate::domain::paid_remarks("4200000000000000000000000001"))
                .count(),
            1,
            "{remarks:?}"
        );
        // Three paid rows: one statement of two and one of one.
        assert_eq!(logs("other").await?.len(), 1);
        assert_eq!(logs("third").await?.len(), 1);
        let anomalies = crate::db::entities::pay_anomaly::Entity::find()
            .all(&db)
            .await?;
        assert_eq!(anomalies.len(), 1);
        assert_eq!(anomalies[0].transaction_id, "4200000000000000000000000002");
        Ok(())
    }

    /// A group that fails after its first write (here: the log table is gone, so the INSERT
    /// of the log row fails after the order's UPDATE) is rolled back whole and its payments
    /// are run one by one: every caller gets its own answer, and no order is left paid
    /// without its log row.
    #[tokio::test]
    async fn a_group_that_fails_mid_payment_leaves_nothing_written() -> anyhow::Result<()> {
        let (_database, db) = sqlite_with_orders(&["one", "two"]).await?;
        db.execute_unprepared("ALTER TABLE tb_order_log RENAME TO tb_order_log_gone")
            .await?;

        let mut group = Vec::new();
        let mut answered = Vec::new();
        for (id, transaction_id) in [
            ("one", "4200000000000000000000000001"),
            ("two", "4200000000000000000000000002"),
        ] {
            let (answer, receiver) = tokio::sync::oneshot::channel();
            let request = PaymentNotice::new(id, transaction_id, 500, "20240101120000")?;
            group.push(Job { request, answer });
            answered.push(receiver);
        }
        commit(db.clone(), Arc::new(Mutex::new(())), group).await;

        for receiver in answered {
            let answer = receiver.await?;
            assert!(
                matches!(answer, Err(OrderError::Database(_))),
                "{:?}",
                answer.map(|applied| applied.map(|a| a.result.outcome))
            );
        }
        for id in ["one", "two"] {
            let row = order::Entity::find_by_id(id).all(&db).await?.pop().unwrap();
            assert_eq!(row.transaction_id, None, "{id} was left paid");
            assert_eq!(row.pay_status.as_deref(), Some("0"), "{id}");
        }
        Ok(())
    }

    /// A group that cannot even begin (another connection holds SQLite's write lock past the
    /// busy timeout) answers every payment with that error at once, instead of running each
    /// one by one into the same wait while every write of the process queues behind it.
    #[tokio::test]
    async fn a_group_that_cannot_begin_fails_its_payments_at_once() -> anyhow::Result<()> {
        use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
        use sea_orm::{SqlxSqliteConnector, TransactionTrait};
        use std::str::FromStr;

        let ids = ["one", "two", "three"];
        let (database, db) = sqlite_with_orders(&ids).await?;
        let holder = db.begin().await?;
        holder
            .execute_unprepared("UPDATE tb_order SET update_time = update_time")
            .await?;
        let impatient = SqliteConnectOptions::from_str(database.url())?
            .busy_timeout(std::time::Duration::from_millis(20));
        let impatient =
            SqlxSqliteConnector::from_sqlx_sqlite_pool(SqlitePool::connect_with(impatient).await?);

        let mut group = Vec::new();
        let mut answered = Vec::new();
        for (n, id) in ids.into_iter().enumerate() {
            let (answer, receiver) = tokio::sync::oneshot::channel();
            let transaction_id = format!("42000000000000000000000000{n:02}");
            let request = PaymentNotice::new(id, &transaction_id, 500, "20240101120000")?;
            group.push(Job { request, answer });
            answered.push(receiver);
        }
        commit(impatient, Arc::new(Mutex::new(())), group).await;

        for receiver in answered {
            let chain = match receiver.await? {
                Err(err @ OrderError::Database(_)) => paynotify::error_chain(&err),
                other => panic!(
                    "{:?}",
                    other.map(|applied| applied.map(|a| a.result.outcome))
                ),
            };
            assert!(
                chain.contains("the group commit could not start"),
                "{chain}"
            );
            assert!(chain.contains("locked"), "{chain}");
        }
        holder.rollback().await?;
        for id in ids {
            let row = order::Entity::find_by_id(id).all(&db).await?.pop().unwrap();
            assert_eq!(row.pay_status.as_deref(), Some("0"), "{id}");
        }
        Ok(())
    }

    /// Connection failures keep their meaning for the caller (UNAVAILABLE: pay-svc retries,
    /// possibly on another replica); other failures to begin say where they came from.
    #[test]
    fn a_group_that_cannot_begin_answers_what_the_failure_was() {
        use sea_orm::{ConnAcquireErr, RuntimeErr};
        let code = |err: DbErr| tonic::Status::from(could_not_start(&err)).code();
        assert_eq!(
            code(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code(DbErr::Conn(RuntimeErr::Internal("refused".into()))),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code(DbErr::Custom("database is locked".into())),
            tonic::Code::Internal
        );
    }
}

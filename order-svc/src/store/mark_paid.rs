//! `MarkPaid`: the one transaction that turns an unpaid order into a paid one.
//!
//! The conditional `UPDATE … WHERE pay_status='0' AND order_status='0' AND pay_money=?` comes
//! first and its affected-row count is the decision: whichever call changes the row is the only
//! MARKED_PAID and writes the only log row. Every other call reads the order afterwards and
//! explains why nothing changed; a payment that can never apply (another transaction already
//! paid, the order is closed, or it is in a state this service does not pay from) is recorded
//! once in `pay_anomaly`, whose primary key makes "once" hold across processes.
//!
//! `apply` is the decision inside a transaction it is given; on SQLite that is shared with
//! the other payments of a group commit ([`super::paid_writer`]), elsewhere it is its own.
//!
//! A payment whose transaction already paid another order is refused by the UPDATE itself
//! (the unique index on `transaction_id`), before anything is written: PostgreSQL aborts the
//! transaction there, and a SQLite group goes on only because the refusal wrote nothing. So it
//! is recorded in `pay_anomaly` afterwards, in a short transaction of its own, once the
//! refusal's has ended ([`OrderStore::record_reused`]); payments that are not refused never
//! pay for it.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, SqlErr, UpdateMany,
};

use super::read::find_order;
use super::write::{LogEntry, begin_write, insert_if_absent, insert_log};
use super::{MAX_RACE_RETRIES, OrderStore};
use crate::db::entities::{NOT_CONSIGNED, order, order_log, order_status, pay_anomaly, pay_status};
use crate::domain::{
    MarkPaidResult, OrderState, PaidOutcome, PaymentNotice, conflict_remarks, now_utc, paid_remarks,
};
use crate::error::OrderError;

/// What one MarkPaid decided inside its transaction, and what to announce once committed.
#[derive(Debug)]
pub(crate) struct Applied {
    pub result: MarkPaidResult,
    /// A payment anomaly this call recorded for the first time.
    pub new_anomaly: Option<pay_anomaly::Kind>,
}

impl Applied {
    /// Logs and counts what was written; called only after the commit, so no log line claims
    /// a write that was rolled back.
    fn announce(&self, notice: &PaymentNotice) {
        if self.result.outcome == PaidOutcome::MarkedPaid {
            tracing::info!("order marked paid");
        }
        if let Some(kind) = self.new_anomaly {
            announce_anomaly(kind, notice);
        }
    }
}

/// Logs and counts an anomaly recorded for the first time, once its transaction committed.
fn announce_anomaly(kind: pay_anomaly::Kind, notice: &PaymentNotice) {
    tracing::warn!(
        event = "order.payment_anomaly",
        kind = kind.as_str(),
        transaction_id = %notice.transaction_id,
        amount_fen = notice.amount_fen,
        "payment conflict recorded for refund"
    );
    crate::metrics::anomaly(kind);
}

impl OrderStore {
    pub async fn mark_paid(&self, notice: &PaymentNotice) -> Result<MarkPaidResult, OrderError> {
        match self.decide_payment(notice).await {
            // WeChat has the money all the same. Should recording it fail, the caller gets
            // that error rather than the refusal, so that the notification comes back.
            Err(refused @ OrderError::TransactionReused { .. }) => {
                self.record_reused(notice).await?;
                Err(refused)
            }
            decided => decided,
        }
    }

    /// The MarkPaid decision, committed: grouped on SQLite, alone elsewhere.
    async fn decide_payment(&self, notice: &PaymentNotice) -> Result<MarkPaidResult, OrderError> {
        for _ in 0..MAX_RACE_RETRIES {
            let grouped = match &self.paid_writer {
                Some(writer) => writer.submit(notice.clone()).await,
                None => None,
            };
            let applied = match grouped {
                Some(answer) => answer?,
                None => self.try_mark_paid(notice).await?,
            };
            if let Some(applied) = applied {
                applied.announce(notice);
                return Ok(applied.result);
            }
        }
        Err(OrderError::Contended {
            order_id: notice.order_id.clone(),
        })
    }

    /// One MarkPaid in a transaction of its own (PostgreSQL and MySQL lock rows, so many
    /// such transactions commit at once). `None`: run it again (see [`apply`]).
    async fn try_mark_paid(&self, notice: &PaymentNotice) -> Result<Option<Applied>, OrderError> {
        let _turn = self.writer_turn().await;
        apply_alone(&self.db, notice).await
    }

    /// Records a payment refused as `TransactionReused` as an anomaly of the order it named,
    /// with that order's log row, once per (order, transaction) however many copies and
    /// replicas report it at once: the anomaly's primary key decides which one writes the log
    /// row. The order is read as it is now; it is not changed. Should another system have
    /// deleted it since the refusal, the payment is recorded all the same (`pay_anomaly` has
    /// no foreign key), without a log row: answering NOT_FOUND instead would leave a confirmed
    /// payment recorded nowhere.
    async fn record_reused(&self, notice: &PaymentNotice) -> Result<(), OrderError> {
        let kind = pay_anomaly::Kind::TransactionReused;
        let _turn = self.writer_turn().await;
        let txn = begin_write(&self.db).await?;
        let recorded = async {
            let order = match find_order(&txn, &notice.order_id).await {
                Ok(order) => Some(order),
                Err(OrderError::NotFound { .. }) => None,
                Err(err) => return Err(err),
            };
            record_anomaly(&txn, notice, kind, order.as_ref()).await
        }
        .await;
        if finish(txn, recorded).await? {
            announce_anomaly(kind, notice);
        }
        Ok(())
    }
}

/// [`apply`] in a transaction of its own: committed on `Ok`, rolled back on `Err`.
pub(super) async fn apply_alone(
    db: &DatabaseConnection,
    notice: &PaymentNotice,
) -> Result<Option<Applied>, OrderError> {
    let txn = begin_write(db).await?;
    let applied = apply(&txn, notice, PaidLog::Now).await;
    finish(txn, applied).await
}

/// Commits `txn` when what ran in it succeeded, and rolls it back otherwise.
async fn finish<T>(
    txn: DatabaseTransaction,
    outcome: Result<T, OrderError>,
) -> Result<T, OrderError> {
    match outcome {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = txn.rollback().await {
                tracing::warn!(error = %rollback, "rollback after a failed MarkPaid failed");
            }
            Err(err)
        }
    }
}

/// Where [`apply`] puts the log row of a payment it marks paid.
pub(super) enum PaidLog<'a> {
    /// Written at once.
    Now,
    /// Kept for the caller to write before it commits (the SQLite group commit writes a
    /// group's rows together, [`super::write::insert_logs`]).
    Later(&'a mut Vec<order_log::ActiveModel>),
}

/// The MarkPaid decision inside `txn`, which the caller commits on `Ok` and rolls back on
/// `Err`. `None`: the order became payable only after the update looked (it was created in
/// between); running it again will pay it. Every refusal (`TransactionReused`,
/// `AmountMismatch`, `NotFound`) is decided before the first write: the SQLite group commit
/// relies on that (`paid_writer::wrote_nothing`). A `TransactionReused` is recorded only
/// after this transaction has ended, by [`OrderStore::mark_paid`].
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    notice: &PaymentNotice,
    paid_log: PaidLog<'_>,
) -> Result<Option<Applied>, OrderError> {
    let now = now_utc();
    let update = order::Entity::update_many()
        .col_expr(order::Column::PayStatus, Expr::value(pay_status::PAID))
        .col_expr(order::Column::OrderStatus, Expr::value(order_status::PAID))
        .col_expr(order::Column::PayTime, Expr::value(notice.paid_at))
        .col_expr(order::Column::UpdateTime, Expr::value(now))
        .col_expr(
            order::Column::TransactionId,
            Expr::value(notice.transaction_id.clone()),
        )
        .filter(order::Column::Id.eq(&notice.order_id))
        .filter(order::Column::PayStatus.eq(pay_status::UNPAID))
        .filter(order::Column::OrderStatus.eq(order_status::CREATED))
        .filter(order::Column::PayMoney.eq(notice.amount_fen));
    let paid = update_if_payable(txn, update, notice).await?;

    if let Some(order) = paid {
        let entry = LogEntry {
            order_id: &notice.order_id,
            at: now,
            order_status: Some(order_status::PAID.to_owned()),
            pay_status: Some(pay_status::PAID.to_owned()),
            consign_status: Some(NOT_CONSIGNED.to_owned()),
            remarks: paid_remarks(&notice.transaction_id),
            money: Some(notice.amount_fen),
        };
        match paid_log {
            PaidLog::Now => insert_log(txn, entry).await?,
            PaidLog::Later(rows) => rows.push(entry.row()),
        }
        return Ok(Some(Applied {
            result: MarkPaidResult {
                outcome: PaidOutcome::MarkedPaid,
                order,
                detail: String::new(),
            },
            new_anomaly: None,
        }));
    }

    // Nothing changed: find out why. On SQLite this transaction still holds the write lock;
    // elsewhere the order's payment columns can no longer change once paid or closed. An order
    // in another state is changed only by another system: should it become payable later, a
    // later copy of the notification pays it, and the anomaly stays for a person to clear.
    let order = find_order(txn, &notice.order_id).await?;
    match OrderState::of(&order) {
        OrderState::Paid if order.transaction_id.as_deref() == Some(&notice.transaction_id) => {
            Ok(Some(Applied {
                result: MarkPaidResult {
                    outcome: PaidOutcome::AlreadyPaid,
                    order,
                    detail: format!("already paid by transaction {}", notice.transaction_id),
                },
                new_anomaly: None,
            }))
        }
        OrderState::Paid => record_conflict(
            txn,
            notice,
            order,
            pay_anomaly::Kind::PaidByOtherTransaction,
        )
        .await
        .map(Some),
        OrderState::Closed => {
            record_conflict(txn, notice, order, pay_anomaly::Kind::PaidAfterClose)
                .await
                .map(Some)
        }
        OrderState::Unpaid if order.pay_money != Some(notice.amount_fen) => {
            Err(OrderError::AmountMismatch {
                order_id: order.id,
                pay_money: order.pay_money.map_or(0, i64::from),
                amount_fen: notice.amount_fen.into(),
            })
        }
        OrderState::Unpaid => Ok(None),
        // Not payable from here (e.g. pay_status "2", payment failed), yet WeChat confirmed
        // the money: refusing would leave it only in log lines, so it is recorded like a
        // payment after close.
        OrderState::Other => {
            record_conflict(txn, notice, order, pay_anomaly::Kind::PaidInUnexpectedState)
                .await
                .map(Some)
        }
    }
}

/// Runs the conditional UPDATE; `Some(order)`, as it is now, when this update paid it. With
/// `RETURNING` (SQLite, PostgreSQL) the update hands the row back; MySQL has none, so there it
/// is read afterwards.
async fn update_if_payable(
    txn: &DatabaseTransaction,
    update: UpdateMany<order::Entity>,
    notice: &PaymentNotice,
) -> Result<Option<order::Model>, OrderError> {
    // The unique index on transaction_id: this WeChat payment already paid another order.
    // Nothing was written (PostgreSQL has aborted the transaction anyway).
    let refused = |err: DbErr| match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => OrderError::TransactionReused {
            order_id: notice.order_id.clone(),
            transaction_id: notice.transaction_id.clone(),
        },
        _ => err.into(),
    };
    if txn.support_returning() {
        let mut rows = update.exec_with_returning(txn).await.map_err(refused)?;
        return Ok(rows.pop());
    }
    let updated = update.exec(txn).await.map_err(refused)?;
    if updated.rows_affected == 1 {
        Ok(Some(find_order(txn, &notice.order_id).await?))
    } else {
        Ok(None)
    }
}

/// Records the payment that could not be applied to `order` (as it is now), once per (order,
/// transaction), with a log row saying so; the order itself is left as it is. With no order
/// (it is gone), only the anomaly: a log row would have no order to describe. `true`: this
/// call recorded it, the first report.
async fn record_anomaly(
    txn: &DatabaseTransaction,
    notice: &PaymentNotice,
    kind: pay_anomaly::Kind,
    order: Option<&order::Model>,
) -> Result<bool, OrderError> {
    let now = now_utc();
    let anomaly = pay_anomaly::ActiveModel {
        order_id: Set(notice.order_id.clone()),
        transaction_id: Set(notice.transaction_id.clone()),
        kind: Set(kind.as_str().to_owned()),
        amount_fen: Set(notice.amount_fen.into()),
        detected_at: Set(now),
    };
    let first_report = insert_if_absent(txn, pay_anomaly::Entity::insert(anomaly)).await?;
    if first_report && let Some(order) = order {
        insert_log(
            txn,
            LogEntry {
                order_id: &notice.order_id,
                at: now,
                order_status: order.order_status.clone(),
                pay_status: order.pay_status.clone(),
                consign_status: order.consign_status.clone(),
                remarks: conflict_remarks(kind, notice, order),
                money: Some(notice.amount_fen),
            },
        )
        .await?;
    }
    Ok(first_report)
}

/// A payment the order's state refuses, recorded ([`record_anomaly`]): PAYMENT_CONFLICT.
async fn record_conflict(
    txn: &DatabaseTransaction,
    notice: &PaymentNotice,
    order: order::Model,
    kind: pay_anomaly::Kind,
) -> Result<Applied, OrderError> {
    let first_report = record_anomaly(txn, notice, kind, Some(&order)).await?;
    let detail = match kind {
        pay_anomaly::Kind::PaidByOtherTransaction => format!(
            "order already paid by transaction {}; payment {} recorded for refund",
            order.transaction_id.as_deref().unwrap_or(""),
            notice.transaction_id
        ),
        pay_anomaly::Kind::PaidAfterClose => format!(
            "order is closed; payment {} recorded for refund",
            notice.transaction_id
        ),
        pay_anomaly::Kind::PaidInUnexpectedState => format!(
            "order has pay_status {:?} and order_status {:?}, which this service does not pay \
             from; payment {} recorded for refund",
            order.pay_status.as_deref().unwrap_or(""),
            order.order_status.as_deref().unwrap_or(""),
            notice.transaction_id
        ),
        // Not reached: such a payment is refused, then recorded by `OrderStore::record_reused`.
        pay_anomaly::Kind::TransactionReused => format!(
            "transaction {} already paid another order; recorded for refund",
            notice.transaction_id
        ),
    };
    Ok(Applied {
        result: MarkPaidResult {
            outcome: PaidOutcome::PaymentConflict,
            order,
            detail,
        },
        new_anomaly: first_report.then_some(kind),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::db::entities::order_log;
    use crate::domain::NewOrder;
    use crate::store::batch::Batcher;
    use crate::testing::{Backend, TestDatabase};
    use sea_orm::Database;

    /// Should the group-commit task die (here its batch handler panics), MarkPaid still pays:
    /// each call then runs in a transaction of its own, both the call that was queued when
    /// the task died and the calls after it, and each order gets exactly one log row.
    #[tokio::test]
    async fn payments_go_through_when_the_group_writer_has_stopped() -> anyhow::Result<()> {
        let database = TestDatabase::create(Backend::Sqlite).await?;
        let db = Database::connect(database.url()).await?;
        crate::db::schema::migrate(&db).await?;
        let mut store = OrderStore::new(db.clone());
        store.paid_writer = Some(Batcher::start(
            1,
            "the writer has stopped",
            |_group| async { panic!("the group-commit task dies") },
        ));

        for (id, transaction_id) in [
            ("first", "4200000000000000000000000001"),
            ("second", "4200000000000000000000000002"),
        ] {
            store
                .create_order(&NewOrder::new(id, 500, 0, 0, "")?)
                .await?;
            let notice = PaymentNotice::new(id, transaction_id, 500, "20240101120000")?;
            let result = store.mark_paid(&notice).await?;
            assert_eq!(result.outcome, PaidOutcome::MarkedPaid, "{id}");
            assert_eq!(result.order.transaction_id.as_deref(), Some(transaction_id));
            let logs = order_log::Entity::find()
                .filter(order_log::Column::OrderId.eq(id))
                .all(&db)
                .await?;
            assert_eq!(logs.len(), 1, "{id}");
        }
        Ok(())
    }

    /// Payments of a transaction that already paid another order, sent at once with good
    /// payments on SQLite: the good ones are paid, each reused one is refused and recorded
    /// once per (order, transaction), even for two copies sent together, and the orders they
    /// named are left as they were. The sleeps below are meant to put them all in one group
    /// commit; nothing here checks that they did (the group-size counters are shared with the
    /// tests running beside this one).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reused_transactions_in_a_group_are_recorded_after_it() -> anyhow::Result<()> {
        const REUSED: &str = "4200000000000000000000000001";
        let database = TestDatabase::create(Backend::Sqlite).await?;
        let db = Database::connect(database.url()).await?;
        crate::db::schema::migrate(&db).await?;
        let store = OrderStore::new(db.clone());
        for id in ["paid", "plug", "good1", "good2", "named1", "named2"] {
            store
                .create_order(&NewOrder::new(id, 500, 0, 0, "")?)
                .await?;
        }
        let notice = |id: &str, transaction_id: &str| {
            PaymentNotice::new(id, transaction_id, 500, "20240101120000").unwrap()
        };
        store.mark_paid(&notice("paid", REUSED)).await?;
        let pay = |notice: PaymentNotice| {
            let store = store.clone();
            tokio::spawn(async move { store.mark_paid(&notice).await })
        };

        // While the writer queue is held, the first payment makes a group of its own that
        // waits for it, and everything sent after it should queue up for the next group.
        let writers = store.sqlite_writers.clone().unwrap();
        let held = writers.lock().await;
        let plug = pay(notice("plug", "4200000000000000000000000002"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let group = [
            ("good1", "4200000000000000000000000003"),
            ("named1", REUSED),
            ("good2", "4200000000000000000000000004"),
            ("named1", REUSED),
            ("named2", REUSED),
        ]
        .map(|(id, transaction_id)| (id, pay(notice(id, transaction_id))));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(held);

        assert_eq!(plug.await??.outcome, PaidOutcome::MarkedPaid);
        for (id, answer) in group {
            match answer.await? {
                Ok(result) => {
                    assert!(id.starts_with("good"), "{id}: {result:?}");
                    assert_eq!(result.outcome, PaidOutcome::MarkedPaid, "{id}");
                }
                Err(err) => assert!(
                    id.starts_with("named") && matches!(err, OrderError::TransactionReused { .. }),
                    "{id}: {err:?}"
                ),
            }
        }
        for id in ["named1", "named2"] {
            let order = find_order(&db, id).await?;
            assert_eq!(
                (order.pay_status.as_deref(), order.transaction_id),
                (Some(pay_status::UNPAID), None),
                "{id}"
            );
            let anomalies = pay_anomaly::Entity::find()
                .filter(pay_anomaly::Column::OrderId.eq(id))
                .all(&db)
                .await?;
            assert_eq!(anomalies.len(), 1, "{id}: {anomalies:?}");
            assert_eq!(
                (
                    anomalies[0].kind.as_str(),
                    anomalies[0].transaction_id.as_str()
                ),
                ("transaction_reused", REUSED)
            );
            let logs = order_log::Entity::find()
                .filter(order_log::Column::OrderId.eq(id))
                .all(&db)
                .await?;
            assert_eq!(logs.len(), 1, "{id}: {logs:?}");
        }
        Ok(())
    }

    /// A reused transaction whose order another system deleted between the refusal and its
    /// recording is recorded all the same, once, as an anomaly without a log row: answering
    /// NOT_FOUND would leave the confirmed payment recorded nowhere.
    #[tokio::test]
    async fn a_reused_transaction_of_a_deleted_order_is_still_recorded() -> anyhow::Result<()> {
        const REUSED: &str = "4200000000000000000000000001";
        let database = TestDatabase::create(Backend::Sqlite).await?;
        let db = Database::connect(database.url()).await?;
        crate::db::schema::migrate(&db).await?;
        let store = OrderStore::new(db.clone());
        let notice = PaymentNotice::new("deleted", REUSED, 500, "20240101120000")?;

        store.record_reused(&notice).await?;
        let recorded = pay_anomaly::Entity::find().all(&db).await?;
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(
            (
                recorded[0].order_id.as_str(),
                recorded[0].transaction_id.as_str(),
                recorded[0].kind.as_str(),
                recorded[0].amount_fen
            ),
            ("deleted", REUSED, "transaction_reused", 500)
        );
        assert!(order_log::Entity::find().all(&db).await?.is_empty());

        // Another copy of the notification records nothing new.
        store.record_reused(&notice).await?;
        assert_eq!(pay_anomaly::Entity::find().all(&db).await?, recorded);
        assert!(order_log::Entity::find().all(&db).await?.is_empty());
        Ok(())
    }
}

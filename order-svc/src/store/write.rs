//! The writing primitives every transaction uses: how a write transaction starts, a portable
//! "insert unless the key exists", and how log rows are written (one, or a group commit's).

use chrono::NaiveDateTime;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, Insert, Iterable, PrimaryKeyToColumn, QueryTrait, SqlErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::db::entities::{SYSTEM_OPERATOR, order_log};
use crate::error::OrderError;
use crate::ids;

/// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
/// taken up front, where the busy handler waits for it, instead of at the first write, where a
/// read-to-write upgrade fails at once with "database is locked".
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Inserts the row unless its primary key exists; `true` when a row was inserted.
///
/// PostgreSQL and SQLite use `ON CONFLICT (pk) DO NOTHING` and its row count. MySQL has no
/// portable equivalent with a trustworthy count: sqlx connects with `CLIENT_FOUND_ROWS`, so
/// SeaORM's `ON DUPLICATE KEY UPDATE pk = pk` polyfill reports 1 row for a duplicate too, and
/// `INSERT IGNORE` would also swallow truncation errors. There the plain insert's duplicate-key
/// error is the answer: InnoDB rolls back only that statement, not the transaction.
pub(crate) async fn insert_if_absent<A, C>(conn: &C, insert: Insert<A>) -> Result<bool, DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let backend = conn.get_database_backend();
    let mut statement = insert.into_query();
    if backend != DbBackend::MySql {
        let key = <A::Entity as EntityTrait>::PrimaryKey::iter().map(|pk| pk.into_column());
        statement.on_conflict(OnConflict::columns(key).do_nothing().to_owned());
    }
    match conn.execute(&statement).await {
        Ok(result) => Ok(result.rows_affected() == 1),
        Err(err)
            if backend == DbBackend::MySql
                && matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// One `tb_order_log` row, written by "system".
pub(crate) struct LogEntry<'a> {
    pub order_id: &'a str,
    pub at: NaiveDateTime,
    pub order_status: Option<String>,
    pub pay_status: Option<String>,
    pub consign_status: Option<String>,
    pub remarks: String,
    pub money: Option<i32>,
}

impl LogEntry<'_> {
    /// The row, under a freshly drawn id.
    pub(crate) fn row(&self) -> order_log::ActiveModel {
        order_log::ActiveModel {
            id: Set(ids::next_id()),
            operater: Set(Some(SYSTEM_OPERATOR.to_owned())),
            operate_time: Set(Some(self.at)),
            order_id: Set(Some(self.order_id.to_owned())),
            order_status: Set(self.order_status.clone()),
            pay_status: Set(self.pay_status.clone()),
            consign_status: Set(self.consign_status.clone()),
            remarks: Set(Some(self.remarks.clone())),
            money: Set(self.money),
        }
    }
}

/// Writes the log row under a fresh id, drawing another if the id is taken.
pub(crate) async fn insert_log(
    txn: &DatabaseTransaction,
    entry: LogEntry<'_>,
) -> Result<(), OrderError> {
    for _ in 0..ids::MAX_ATTEMPTS {
        if insert_if_absent(txn, order_log::Entity::insert(entry.row())).await? {
            return Ok(());
        }
        tracing::warn!("log id collision, drawing another");
    }
    Err(OrderError::IdsExhausted {
        what: "log row",
        attempts: ids::MAX_ATTEMPTS,
    })
}

/// Writes `rows` in a few multi-row statements: the paid rows of a SQLite group commit, a
/// round trip to SQLite's thread per statement instead of per row. The statements hold a
/// power of two of rows each (a group of 19: 16, 2, 1), so that a connection caches at most
/// seven of them rather than one per group size. An id already taken (as unlikely as for
/// [`insert_log`]) fails its statement, and with it the group, whose payments are then run
/// one by one, where `insert_log` draws another id.
pub(crate) async fn insert_logs(
    txn: &DatabaseTransaction,
    mut rows: Vec<order_log::ActiveModel>,
) -> Result<(), OrderError> {
    while !rows.is_empty() {
        let size = power_of_two_at_most(rows.len());
        let statement: Vec<_> = rows.drain(..size).collect();
        let written = order_log::Entity::insert_many(statement)
            .exec_without_returning(txn)
            .await?;
        if written != size as u64 {
            return Err(OrderError::Database(DbErr::Custom(format!(
                "{written} of {size} log rows written"
            ))));
        }
    }
    Ok(())
}

/// The largest power of two not above `n` (which is at least 1).
fn power_of_two_at_most(n: usize) -> usize {
    1 << n.max(1).ilog2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::entities::pay_anomaly;
    use sea_orm::QueryTrait;

    fn anomaly_insert() -> Insert<pay_anomaly::ActiveModel> {
        pay_anomaly::Entity::insert(pay_anomaly::ActiveModel {
            order_id: Set("o".into()),
            transaction_id: Set("t".into()),
            kind: Set("k".into()),
            amount_fen: Set(1),
            detected_at: Set(NaiveDateTime::default()),
        })
    }

    #[test]
    fn log_statements_hold_a_power_of_two_of_rows() {
        let sizes = [1, 2, 3, 19, 63, 64].map(power_of_two_at_most);
        assert_eq!(sizes, [1, 2, 2, 16, 32, 64]);
    }

    #[test]
    fn conflict_target_is_the_whole_primary_key() {
        let mut statement = anomaly_insert().into_query();
        let key = pay_anomaly::PrimaryKey::iter().map(|pk| pk.into_column());
        statement.on_conflict(OnConflict::columns(key).do_nothing().to_owned());
        let sql = DbBackend::Postgres.build(&statement).to_string();
        assert!(
            sql.ends_with(r#"ON CONFLICT ("order_id", "transaction_id") DO NOTHING"#),
            "{sql}"
        );
    }
}

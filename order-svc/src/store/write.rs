//! The writing primitives every transaction uses: how a write transaction starts, a portable
//! "insert unless the key exists", and the one way a log row is written.

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

/// Writes the log row under a fresh id, drawing another if the id is taken.
pub(crate) async fn insert_log(
    txn: &DatabaseTransaction,
    entry: LogEntry<'_>,
) -> Result<(), OrderError> {
    for _ in 0..ids::MAX_ATTEMPTS {
        let row = order_log::ActiveModel {
            id: Set(ids::next_id()),
            operater: Set(Some(SYSTEM_OPERATOR.to_owned())),
            operate_time: Set(Some(entry.at)),
            order_id: Set(Some(entry.order_id.to_owned())),
            order_status: Set(entry.order_status.clone()),
            pay_status: Set(entry.pay_status.clone()),
            consign_status: Set(entry.consign_status.clone()),
            remarks: Set(Some(entry.remarks.clone())),
            money: Set(entry.money),
        };
        if insert_if_absent(txn, order_log::Entity::insert(row)).await? {
            return Ok(());
        }
        tracing::warn!("log id collision, drawing another");
    }
    Err(OrderError::IdsExhausted {
        what: "log row",
        attempts: ids::MAX_ATTEMPTS,
    })
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

//! Order history for the growth scenario, written straight into the database: a million
//! orders through CreateOrder would take longer than the measurement itself. Multi-row
//! `INSERT`s in large transactions, on the benchmark's own single connection.
//!
//! The rows look like a shop's past: snowflake-style ids spread over the last 30 days in
//! time order (as order-svc mints them), 90% paid with a unique transaction_id and one log
//! row each, the rest still unpaid, so every index order-svc keeps has its real share.

use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDateTime, Utc};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait,
};

use crate::orders::TransactionIds;

/// Rows per INSERT statement and per transaction.
const ROWS_PER_STATEMENT: usize = 1_000;
const ROWS_PER_TRANSACTION: usize = 50_000;
/// Of every ten seeded orders, this many are paid.
const PAID_OF_TEN: usize = 9;
/// The snowflake epoch order-svc's ids count from (ms since 1970).
const ID_EPOCH_MS: i64 = 1_288_834_974_657;
/// How far back the history reaches.
const HISTORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The benchmark's own connection to the order database (one connection, so the SQLite
/// pragmas below stay in force for every statement).
pub async fn connect(database_url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(1)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options| options.busy_timeout(Duration::from_secs(30)));
    let db = Database::connect(options)
        .await
        .context("connecting to the order database")?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // Only this connection's commits skip fsync: the seed is rebuilt on every run, while
        // order-svc's own connections keep synchronous=FULL.
        db.execute_unprepared("PRAGMA synchronous = OFF").await?;
    }
    Ok(db)
}

pub async fn count_orders(db: &DatabaseConnection) -> anyhow::Result<u64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM tb_order",
        ))
        .await?
        .context("COUNT(*) returned no row")?;
    let n: i64 = row.try_get("", "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Adds orders until `tb_order` holds `target` rows; returns how many were added.
pub async fn fill_to(
    db: &DatabaseConnection,
    target: u64,
    ids: &TransactionIds,
) -> anyhow::Result<u64> {
    let present = count_orders(db).await?;
    let missing = usize::try_from(target.saturating_sub(present))?;
    let now_ms = Utc::now().timestamp_millis();
    let span_ms = i64::try_from(HISTORY.as_millis())?;
    // A second fill interleaves with the first in time; the 22 random bits keep ids apart.
    let start_ms = now_ms - span_ms;
    let step_ms = (span_ms / i64::try_from(missing.max(1))?).max(1);
    let mut done = 0;
    while done < missing {
        let txn = db.begin().await?;
        let end = (done + ROWS_PER_TRANSACTION).min(missing);
        while done < end {
            let rows: Vec<SeedRow> = (done..(done + ROWS_PER_STATEMENT).min(end))
                .map(|i| SeedRow::new(i, start_ms + step_ms * i64::try_from(i).unwrap_or(0), ids))
                .collect();
            txn.execute_unprepared(&orders_insert(&rows)).await?;
            let paid: Vec<&SeedRow> = rows.iter().filter(|r| r.paid).collect();
            if !paid.is_empty() {
                txn.execute_unprepared(&logs_insert(&paid)).await?;
            }
            done += rows.len();
        }
        txn.commit().await?;
    }
    Ok(missing as u64)
}

struct SeedRow {
    id: u64,
    log_id: u64,
    created: NaiveDateTime,
    paid: bool,
    pay_money: i64,
    transaction_id: String,
}

impl SeedRow {
    fn new(index: usize, created_ms: i64, ids: &TransactionIds) -> SeedRow {
        let paid = index % 10 < PAID_OF_TEN;
        SeedRow {
            id: snowflake(created_ms, rand::random()),
            log_id: snowflake(created_ms + 1, rand::random()),
            created: chrono::DateTime::from_timestamp_millis(created_ms)
                .unwrap_or_default()
                .naive_utc(),
            paid,
            pay_money: 1 + (index as i64 * 104_729) % 100_000,
            transaction_id: if paid { ids.next() } else { String::new() },
        }
    }
}

/// order-svc's id layout: milliseconds since its epoch above 22 random bits.
fn snowflake(unix_ms: i64, random: u64) -> u64 {
    let since_epoch = u64::try_from(unix_ms.saturating_sub(ID_EPOCH_MS)).unwrap_or(0);
    (since_epoch << 22) | (random & ((1 << 22) - 1))
}

fn timestamp(at: NaiveDateTime) -> String {
    format!("'{}'", at.format("%Y-%m-%d %H:%M:%S"))
}

/// Every value is generated here (digits, fixed words, timestamps), so literals are safe.
fn orders_insert(rows: &[SeedRow]) -> String {
    let mut sql = String::with_capacity(rows.len() * 220);
    sql.push_str(
        "INSERT INTO tb_order (id, total_num, total_money, pre_money, post_fee, pay_money, \
         pay_type, create_time, update_time, pay_time, username, source_type, transaction_id, \
         order_status, pay_status, consign_status, is_delete) VALUES ",
    );
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            sql.push(',');
        }
        let created = timestamp(row.created);
        let (pay_time, transaction_id, status) = if row.paid {
            (created.clone(), format!("'{}'", row.transaction_id), "'1'")
        } else {
            ("NULL".to_owned(), "NULL".to_owned(), "'0'")
        };
        sql.push_str(&format!(
            "('{id}', 1, {money}, 0, 0, {money}, '1', {created}, {created}, {pay_time}, 'seed', \
             '1', {transaction_id}, {status}, {status}, '0', '0')",
            id = row.id,
            money = row.pay_money,
        ));
    }
    sql
}

fn logs_insert(rows: &[&SeedRow]) -> String {
    let mut sql = String::with_capacity(rows.len() * 160);
    sql.push_str(
        "INSERT INTO tb_order_log (id, operater, operate_time, order_id, order_status, \
         pay_status, consign_status, remarks, money) VALUES ",
    );
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "('{log_id}', 'system', {at}, '{id}', '1', '1', '0', '交易流水号：{transaction_id}', {money})",
            log_id = row.log_id,
            at = timestamp(row.created),
            id = row.id,
            transaction_id = row.transaction_id,
            money = row.pay_money,
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_order_svc_layout() {
        // 2026-05 → 19 digits, time-ordered whatever the random bits.
        let early = snowflake(1_778_000_000_000, u64::MAX);
        let late = snowflake(1_778_000_000_001, 0);
        assert!(early < late);
        assert_eq!(early.to_string().len(), 19);
    }

    #[test]
    fn nine_in_ten_seeded_orders_are_paid_with_a_log_row() {
        let ids = TransactionIds::new();
        let rows: Vec<SeedRow> = (0..20)
            .map(|i| SeedRow::new(i, 1_778_000_000_000, &ids))
            .collect();
        assert_eq!(rows.iter().filter(|r| r.paid).count(), 18);
        let sql = orders_insert(&rows);
        assert_eq!(sql.matches("'seed'").count(), 20);
        assert_eq!(sql.matches("'4100").count(), 18);
        let paid: Vec<&SeedRow> = rows.iter().filter(|r| r.paid).collect();
        assert_eq!(logs_insert(&paid).matches("'system'").count(), 18);
    }

    #[tokio::test]
    async fn fills_an_empty_sqlite_table_to_the_target() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("bench-seed-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        let db = connect(&url).await?;
        db.execute_unprepared(
            "CREATE TABLE tb_order (id varchar(200) PRIMARY KEY, total_num int, total_money int, \
             pre_money int, post_fee int, pay_money int, pay_type varchar(1), create_time \
             datetime, update_time datetime, pay_time datetime, username varchar(50), \
             source_type char(1), transaction_id varchar(32) UNIQUE, order_status char(1), \
             pay_status char(1), consign_status char(1), is_delete char(1)); \
             CREATE TABLE tb_order_log (id varchar(20) PRIMARY KEY, operater varchar(50), \
             operate_time datetime, order_id varchar(200), order_status char(1), pay_status \
             char(1), consign_status char(1), remarks varchar(100), money int);",
        )
        .await?;
        let ids = TransactionIds::new();
        assert_eq!(fill_to(&db, 2_500, &ids).await?, 2_500);
        assert_eq!(fill_to(&db, 2_600, &ids).await?, 100);
        assert_eq!(count_orders(&db).await?, 2_600);
        db.close().await?;
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}

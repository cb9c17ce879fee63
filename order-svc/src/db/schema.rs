//! Getting the schema ready at start: run the migrations under a database-wide lock (several
//! order-svc processes may start at once against one database), or, with `DB_MIGRATE=false`,
//! only check that every table and column the entities use exists and name what is missing.

use std::collections::HashSet;

use anyhow::{Context, bail};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityName, IdenStatic, Iterable, Statement,
};
use sea_orm_migration::MigratorTrait;

use super::entities::{order, order_log, pay_anomaly};
use super::migration::{MIN_TEXT_WIDTHS, Migrator};
use crate::store::begin_write;

/// Any fixed number: the key of PostgreSQL's advisory lock for migrations.
const PG_MIGRATION_LOCK: i64 = 0x6f72_6465_7273; // "orders"
const MYSQL_MIGRATION_LOCK: &str = "order_svc_migrate";

/// Applies pending migrations, one process at a time.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    // SQLite: `begin_write` takes the write lock, which serializes migrators by itself.
    let txn = begin_write(db).await.context("starting the migration")?;
    match backend {
        DbBackend::Postgres => {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                "SELECT pg_advisory_xact_lock($1)",
                [PG_MIGRATION_LOCK.into()],
            ))
            .await
            .context("taking the migration lock")?;
        }
        DbBackend::MySql => {
            // MySQL commits DDL implicitly, so a transaction cannot hold the lock; a named
            // lock held by this (pinned) connection can.
            let row = txn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    "SELECT GET_LOCK(?, 60) AS locked",
                    [MYSQL_MIGRATION_LOCK.into()],
                ))
                .await
                .context("taking the migration lock")?;
            let locked: Option<i64> = row.map(|row| row.try_get("", "locked")).transpose()?;
            if locked != Some(1) {
                bail!("another order-svc held the migration lock for 60 s");
            }
        }
        _ => {}
    }
    Migrator::up(&txn, None)
        .await
        .context("applying migrations")?;
    if backend == DbBackend::MySql {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT RELEASE_LOCK(?)",
            [MYSQL_MIGRATION_LOCK.into()],
        ))
        .await
        .context("releasing the migration lock")?;
    }
    txn.commit().await.context("committing the migration")?;
    Ok(())
}

/// Fails unless every table and column order-svc reads or writes exists.
pub async fn verify(db: &DatabaseConnection) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (table, wanted) in expected_columns() {
        let present = columns_of(db, table)
            .await
            .with_context(|| format!("reading the columns of {table}"))?;
        if present.is_empty() {
            problems.push(format!("table {table} is missing"));
            continue;
        }
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|column| !present.contains(*column))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "table {table} is missing column(s) {}",
                missing.join(", ")
            ));
        }
    }
    for (table, column, chars) in MIN_TEXT_WIDTHS {
        let Some(found) = column_type(db, table, column)
            .await
            .with_context(|| format!("reading the type of {table}.{column}"))?
        else {
            continue; // missing, reported above, or SQLite, where widths are not enforced
        };
        if !found.holds_text(chars) {
            problems.push(format!(
                "{table}.{column} is {}, narrower than the {chars} characters order-svc writes",
                found.describe()
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "DB_MIGRATE=false but the database schema is incomplete: {}. Create them, or start \
             once with DB_MIGRATE=true to let order-svc add them",
            problems.join("; ")
        );
    }
    Ok(())
}

fn expected_columns() -> [(&'static str, Vec<&'static str>); 3] {
    [
        (
            order::Entity.table_name(),
            order::Column::iter().map(|c| c.as_str()).collect(),
        ),
        (
            order_log::Entity.table_name(),
            order_log::Column::iter().map(|c| c.as_str()).collect(),
        ),
        (
            pay_anomaly::Entity.table_name(),
            pay_anomaly::Column::iter().map(|c| c.as_str()).collect(),
        ),
    ]
}

/// A column's type as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnType {
    /// `varchar`, `char`, `bigint`, `character varying`, ...
    pub data_type: String,
    /// Characters, for text columns.
    pub width: Option<i64>,
    /// MySQL's character set and collation, for text columns.
    pub charset: Option<String>,
    pub collation: Option<String>,
    /// MySQL's column comment ("" when none).
    pub comment: String,
}

impl ColumnType {
    /// A text column at least `chars` characters wide.
    pub fn holds_text(&self, chars: u32) -> bool {
        let text = ["varchar", "char", "character varying", "character", "text"]
            .contains(&self.data_type.as_str())
            || self.data_type.ends_with("text");
        text && self.width.is_none_or(|width| width >= i64::from(chars))
    }

    /// `varchar(30)`, `bigint`: for messages.
    pub fn describe(&self) -> String {
        match self.width {
            Some(width) => format!("{}({width})", self.data_type),
            None => self.data_type.clone(),
        }
    }
}

/// The type of `table.column` on PostgreSQL and MySQL; `None` when there is no such column, and
/// always on SQLite, whose declared widths are not enforced.
pub(crate) async fn column_type(
    db: &impl ConnectionTrait,
    table: &str,
    column: &str,
) -> anyhow::Result<Option<ColumnType>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => return Ok(None),
        DbBackend::Postgres => {
            "SELECT data_type::text AS data_type, character_maximum_length::bigint AS width, \
             NULL::text AS charset, NULL::text AS collation, '' AS comment \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
        }
        _ => {
            "SELECT CAST(data_type AS CHAR) AS data_type, \
             CAST(character_maximum_length AS SIGNED) AS width, \
             CAST(character_set_name AS CHAR) AS charset, \
             CAST(collation_name AS CHAR) AS collation, \
             CAST(column_comment AS CHAR) AS comment \
             FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?"
        }
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [table.into(), column.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(ColumnType {
        data_type: row.try_get::<String>("", "data_type")?.to_lowercase(),
        width: row.try_get("", "width")?,
        charset: row.try_get("", "charset")?,
        collation: row.try_get("", "collation")?,
        comment: row
            .try_get::<Option<String>>("", "comment")?
            .unwrap_or_default(),
    }))
}

/// The table's column names, lower-cased; empty when there is no such table.
async fn columns_of(db: &DatabaseConnection, table: &str) -> anyhow::Result<HashSet<String>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => "SELECT name FROM pragma_table_info(?)",
        DbBackend::Postgres => {
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => {
            "SELECT CAST(column_name AS CHAR) AS name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ?"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [table.into()]))
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String>("", "name")?.to_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expects_the_original_misspelt_column() {
        let columns = expected_columns();
        assert!(columns[1].1.contains(&"operater"));
        assert!(columns[1].1.contains(&"money"));
        assert_eq!(columns[0].1.len(), 27);
    }
}

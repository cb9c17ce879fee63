//! Schema migrations, applied at start when `DB_MIGRATE=true`.
//!
//! They also adopt the original system's database: the first creates only what is missing
//! (tables, the `money` column some copies of `tb_order_log` lack, our indexes), the second
//! widens the two columns the original DDL made too narrow for what order-svc writes, so
//! pointing order-svc at the original MySQL schema upgrades it in place without touching data.
//! Widened against the original DDL, never narrowed: `tb_order.transaction_id` is 32
//! characters (WeChat's documented maximum) and `tb_order_log.order_id` as wide as `tb_order.id`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, EntityName};

use super::entities::{order, order_log, pay_anomaly};
use super::schema::{ColumnType, column_type};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOrderTables), Box::new(WidenOriginalColumns)]
    }
}

pub(crate) const LOG_ORDER_ID_INDEX: &str = "idx_tb_order_log_order_id";
pub(crate) const TRANSACTION_ID_INDEX: &str = "uk_tb_order_transaction_id";
pub(crate) const PENDING_INDEX: &str = "idx_tb_order_pending";

/// Text columns the original MySQL DDL made narrower than what order-svc writes, with the width
/// in characters that order-svc's own tables give them: `tb_order.transaction_id` is
/// `varchar(30)` there, and `tb_order_log.order_id` `varchar(20)` or `bigint(20)` while order
/// ids are strings of up to 32 characters. Too narrow, a strict MySQL refuses the write (the
/// payment fails on every resend) and a lenient one truncates it.
pub(crate) const MIN_TEXT_WIDTHS: [(&str, &str, u32); 2] = [
    ("tb_order", "transaction_id", 32),
    ("tb_order_log", "order_id", 200),
];

struct CreateOrderTables;

impl MigrationName for CreateOrderTables {
    fn name(&self) -> &str {
        "m20250601_000001_order_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOrderTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for table in [tb_order(), tb_order_log(), pay_anomaly_table()] {
            manager
                .create_table(with_table_options(table, backend))
                .await?;
        }

        let log_table = order_log::Entity.table_name();
        if !manager.has_column(log_table, "money").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(order_log::Entity)
                        .add_column(ColumnDef::new(order_log::Column::Money).integer().null())
                        .to_owned(),
                )
                .await?;
        }

        let order_table = order::Entity.table_name();
        let indexes = [
            (
                log_table,
                LOG_ORDER_ID_INDEX,
                Index::create()
                    .name(LOG_ORDER_ID_INDEX)
                    .table(order_log::Entity)
                    .col(order_log::Column::OrderId)
                    .to_owned(),
            ),
            (
                // Unique, yet NULL for every unpaid order: all three engines allow many NULLs.
                order_table,
                TRANSACTION_ID_INDEX,
                Index::create()
                    .name(TRANSACTION_ID_INDEX)
                    .table(order::Entity)
                    .col(order::Column::TransactionId)
                    .unique()
                    .to_owned(),
            ),
            (
                // ListPendingOrders: unpaid, unclosed, oldest first.
                order_table,
                PENDING_INDEX,
                Index::create()
                    .name(PENDING_INDEX)
                    .table(order::Entity)
                    .col(order::Column::PayStatus)
                    .col(order::Column::OrderStatus)
                    .col(order::Column::CreateTime)
                    .to_owned(),
            ),
        ];
        for (table, name, index) in indexes {
            // `CREATE INDEX IF NOT EXISTS` is not MySQL syntax, hence the explicit check.
            if !manager.has_index(table, name).await? {
                manager.create_index(index).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            // Dropping the original system's tables would lose its data; keep them.
            return Ok(());
        }
        for table in [
            pay_anomaly::Entity.table_name(),
            order_log::Entity.table_name(),
            order::Entity.table_name(),
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

struct WidenOriginalColumns;

impl MigrationName for WidenOriginalColumns {
    fn name(&self) -> &str {
        "m20261129_000002_widen_original_columns"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WidenOriginalColumns {
    /// MySQL only: the tables order-svc creates already have these widths, on every backend;
    /// only the original system's tables, adopted in place, can be narrower.
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, column, chars) in MIN_TEXT_WIDTHS {
            let found = column_type(db, table, column).await.map_err(|err| {
                DbErr::Custom(format!("reading the type of {table}.{column}: {err:#}"))
            })?;
            let Some(found) = found.filter(|found| !found.holds_text(chars)) else {
                continue;
            };
            tracing::warn!(
                table,
                column,
                from = %found.describe(),
                to = chars,
                "widening a column of the original schema"
            );
            db.execute_unprepared(&widen_sql(table, column, chars, &found))
                .await?;
        }
        Ok(())
    }
}

/// `ALTER TABLE … MODIFY` to `varchar(chars)`, keeping a text column's character set,
/// collation and comment (a longer varchar of the same character set changes nothing else); a
/// numeric column becomes text in the collation order-svc's own tables use.
fn widen_sql(table: &str, column: &str, chars: u32, found: &ColumnType) -> String {
    let is_name = |name: &&String| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let (charset, collation) = match (
        found.charset.as_ref().filter(is_name),
        found.collation.as_ref().filter(is_name),
    ) {
        (Some(charset), Some(collation)) => (charset.as_str(), collation.as_str()),
        _ => ("utf8mb4", "utf8mb4_bin"),
    };
    let comment = found.comment.replace('\\', "\\\\").replace('\'', "''");
    format!(
        "ALTER TABLE `{table}` MODIFY `{column}` varchar({chars}) CHARACTER SET {charset} \
         COLLATE {collation} NULL COMMENT '{comment}'"
    )
}

/// On MySQL: InnoDB (transactions), utf8mb4 and a binary collation, so that ids compare
/// case-sensitively as WeChat's `out_trade_no` does (the original `tb_order` is `utf8_bin`).
fn with_table_options(mut table: TableCreateStatement, backend: DbBackend) -> TableCreateStatement {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_bin");
    }
    table
}

fn varchar(column: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(column).string_len(len).null().to_owned()
}

fn char1(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).char_len(1).null().to_owned()
}

fn int(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).integer().null().to_owned()
}

fn datetime(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).date_time().null().to_owned()
}

fn tb_order() -> TableCreateStatement {
    use order::Column as C;
    Table::create()
        .table(order::Entity)
        .if_not_exists()
        .col(
            ColumnDef::new(C::Id)
                .string_len(200)
                .not_null()
                .primary_key(),
        )
        .col(int(C::TotalNum))
        .col(int(C::TotalMoney))
        .col(int(C::PreMoney))
        .col(int(C::PostFee))
        .col(int(C::PayMoney))
        .col(varchar(C::PayType, 1))
        .col(datetime(C::CreateTime))
        .col(datetime(C::UpdateTime))
        .col(datetime(C::PayTime))
        .col(datetime(C::ConsignTime))
        .col(datetime(C::EndTime))
        .col(datetime(C::CloseTime))
        .col(varchar(C::ShippingName, 20))
        .col(varchar(C::ShippingCode, 20))
        .col(varchar(C::Username, 50))
        .col(varchar(C::BuyerMessage, 1000))
        .col(char1(C::BuyerRate))
        .col(varchar(C::ReceiverContact, 50))
        .col(varchar(C::ReceiverMobile, 12))
        .col(varchar(C::ReceiverAddress, 200))
        .col(char1(C::SourceType))
        .col(varchar(C::TransactionId, 32))
        .col(char1(C::OrderStatus))
        .col(char1(C::PayStatus))
        .col(char1(C::ConsignStatus))
        .col(char1(C::IsDelete))
        .to_owned()
}

fn tb_order_log() -> TableCreateStatement {
    use order_log::Column as C;
    Table::create()
        .table(order_log::Entity)
        .if_not_exists()
        .col(
            ColumnDef::new(C::Id)
                .string_len(20)
                .not_null()
                .primary_key(),
        )
        .col(varchar(C::Operater, 50))
        .col(datetime(C::OperateTime))
        .col(varchar(C::OrderId, 200))
        .col(char1(C::OrderStatus))
        .col(char1(C::PayStatus))
        .col(char1(C::ConsignStatus))
        .col(varchar(C::Remarks, 100))
        .col(int(C::Money))
        .to_owned()
}

fn pay_anomaly_table() -> TableCreateStatement {
    use pay_anomaly::Column as C;
    Table::create()
        .table(pay_anomaly::Entity)
        .if_not_exists()
        .col(ColumnDef::new(C::OrderId).string_len(200).not_null())
        .col(ColumnDef::new(C::TransactionId).string_len(32).not_null())
        .col(
            ColumnDef::new(C::Kind)
                .string_len(pay_anomaly::MAX_KIND_CHARS)
                .not_null(),
        )
        .col(ColumnDef::new(C::AmountFen).big_integer().not_null())
        .col(ColumnDef::new(C::DetectedAt).date_time().not_null())
        .primary_key(Index::create().col(C::OrderId).col(C::TransactionId))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(data_type: &str, width: Option<i64>, collation: Option<(&str, &str)>) -> ColumnType {
        ColumnType {
            data_type: data_type.into(),
            width,
            charset: collation.map(|(charset, _)| charset.into()),
            collation: collation.map(|(_, collation)| collation.into()),
            comment: "交易流水号 'x' \\".into(),
        }
    }

    #[test]
    fn widening_keeps_a_text_columns_collation_and_comment() {
        let narrow = column("varchar", Some(30), Some(("utf8mb3", "utf8mb3_bin")));
        assert!(!narrow.holds_text(32));
        assert_eq!(
            widen_sql("tb_order", "transaction_id", 32, &narrow),
            "ALTER TABLE `tb_order` MODIFY `transaction_id` varchar(32) CHARACTER SET utf8mb3 \
             COLLATE utf8mb3_bin NULL COMMENT '交易流水号 ''x'' \\\\'"
        );
        let numeric = column("bigint", None, None);
        assert!(!numeric.holds_text(200));
        assert!(
            widen_sql("tb_order_log", "order_id", 200, &numeric)
                .contains("varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL")
        );
        let odd_name = column("varchar", Some(20), Some(("utf8; DROP", "x")));
        assert!(widen_sql("t", "c", 200, &odd_name).contains("utf8mb4_bin"));
        assert!(column("varchar", Some(32), None).holds_text(32));
        assert!(column("character varying", Some(200), None).holds_text(200));
    }

    #[test]
    fn mysql_ddl_keeps_the_original_column_types() {
        let sql = tb_order().to_string(MysqlQueryBuilder);
        for expected in [
            "`id` varchar(200) NOT NULL PRIMARY KEY",
            "`pay_money` int NULL",
            "`pay_status` char(1) NULL",
            "`pay_time` datetime NULL",
            "`transaction_id` varchar(32) NULL",
        ] {
            assert!(sql.contains(expected), "{expected} not in {sql}");
        }
        let sql = tb_order_log().to_string(MysqlQueryBuilder);
        assert!(sql.contains("`operater` varchar(50)"), "{sql}");
        assert!(sql.contains("`remarks` varchar(100)"), "{sql}");
    }

    #[test]
    fn only_mysql_gets_table_options() {
        let mysql = with_table_options(tb_order(), DbBackend::MySql).to_string(MysqlQueryBuilder);
        assert!(
            mysql.ends_with("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
            "{mysql}"
        );
        let pg =
            with_table_options(tb_order(), DbBackend::Postgres).to_string(PostgresQueryBuilder);
        assert!(!pg.contains("COLLATE"), "{pg}");
    }

    #[test]
    fn anomalies_are_keyed_by_order_and_transaction() {
        let sql = pay_anomaly_table().to_string(PostgresQueryBuilder);
        assert!(
            sql.contains(r#"PRIMARY KEY ("order_id", "transaction_id")"#),
            "{sql}"
        );
        // No CHECK or enum type: a new kind of anomaly needs no migration.
        assert!(sql.contains(r#""kind" varchar(32) NOT NULL,"#), "{sql}");
        assert!(!sql.contains("CHECK"), "{sql}");
    }
}

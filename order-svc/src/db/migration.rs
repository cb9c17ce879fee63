//! Schema migrations, applied at start when `DB_MIGRATE=true`.
//!
//! The first migration also adopts the original system's database: it creates only what is
//! missing (tables, the `money` column some copies of `tb_order_log` lack, our indexes), so
//! pointing order-svc at the original MySQL schema upgrades it in place without touching data.
//! Widened against the original DDL, never narrowed: `tb_order.transaction_id` is 32
//! characters (WeChat's documented maximum) and `tb_order_log.order_id` as wide as `tb_order.id`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, EntityName};

use super::entities::{order, order_log, pay_anomaly};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateOrderTables)]
    }
}

pub(crate) const LOG_ORDER_ID_INDEX: &str = "idx_tb_order_log_order_id";
pub(crate) const TRANSACTION_ID_INDEX: &str = "uk_tb_order_transaction_id";
pub(crate) const PENDING_INDEX: &str = "idx_tb_order_pending";

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
        .col(ColumnDef::new(C::Kind).string_len(32).not_null())
        .col(ColumnDef::new(C::AmountFen).big_integer().not_null())
        .col(ColumnDef::new(C::DetectedAt).date_time().not_null())
        .primary_key(Index::create().col(C::OrderId).col(C::TransactionId))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}

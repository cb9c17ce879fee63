//! order-svc on the original system's MySQL tables (MariaDB here), created from its DDL:
//! verified as is with DB_MIGRATE=false, refused with a clear message when a column is
//! missing or too narrow, and upgraded in place with DB_MIGRATE=true.

use chrono::NaiveDate;
use order_svc::db::entities::{order, order_log};
use order_svc::testing::{Backend, TestDatabase, TestServer};
use order_svc::{Config, SchemaMode};
use paynotify::proto::order::v1 as pb;
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
};

use crate::{mark_paid, outcome};

const ORIGINAL_DDL: &str = include_str!("fixtures/changgou_order.sql");
const UPGRADE_DDL: &str = include_str!("../../sql/mysql-upgrade-original.sql");
/// Ids as the original IdWorker makes them, and a WeChat transaction id of the usual 28 digits.
const ORDER_ID: &str = "1255316565131853824";
const TX: &str = "4200000532202405015432167890";
/// The widest ids order-svc and WeChat use: 32 characters each, wider than the original
/// `tb_order.transaction_id` (30) and `tb_order_log.order_id` (20).
const LONG_ORDER_ID: &str = "WX20240501-ORDER-000000000000001";
const LONG_TX: &str = "42000005322024050154321678901234";

/// Runs each `;`-terminated statement of a SQL script.
async fn run_script(db: &DatabaseConnection, script: &str) -> anyhow::Result<()> {
    let without_comments: String = script
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in without_comments.split(';').map(str::trim) {
        if !statement.is_empty() {
            db.execute_unprepared(statement).await?;
        }
    }
    Ok(())
}

/// What the original order service's `add` writes for an online-payment order of 118 yuan.
async fn insert_original_order(db: &DatabaseConnection, id: &str) -> anyhow::Result<()> {
    db.execute_unprepared(&format!(
        "INSERT INTO tb_order (id, total_num, total_money, pre_money, post_fee, pay_money, \
         pay_type, create_time, update_time, username, buyer_rate, receiver_contact, \
         receiver_mobile, receiver_address, source_type, order_status, pay_status, \
         consign_status, is_delete) VALUES ('{id}', 2, 11800, 0, 0, 11800, '1', \
         '2024-05-01 07:59:00', '2024-05-01 07:59:00', 'szitheima', '0', '张三', \
         '13800138000', '北京市昌平区', '1', '0', '0', '0', '0')"
    ))
    .await?;
    Ok(())
}

async fn original_database(
    drop_money: bool,
    upgrade: bool,
) -> anyhow::Result<(TestDatabase, DatabaseConnection)> {
    let database = TestDatabase::create(Backend::Mysql).await?;
    let db = Database::connect(database.url()).await?;
    run_script(&db, ORIGINAL_DDL).await?;
    if drop_money {
        db.execute_unprepared("ALTER TABLE tb_order_log DROP COLUMN money")
            .await?;
    }
    if upgrade {
        run_script(&db, UPGRADE_DDL).await?;
    }
    insert_original_order(&db, ORDER_ID).await?;
    Ok((database, db))
}

fn verify_only(url: &str) -> anyhow::Result<Config> {
    let mut config = Config::for_database(url)?;
    config.schema = SchemaMode::VerifyOnly;
    Ok(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_tables_verify_only_pays_an_original_order() -> anyhow::Result<()> {
    let (database, db) = original_database(false, true).await?;
    let server = TestServer::start_with(verify_only(database.url())?).await?;
    let client = server.client().await?;

    let first = mark_paid(&client, ORDER_ID, TX, 11800).await?;
    let again = mark_paid(&client, ORDER_ID, TX, 11800).await?;

    assert_eq!(outcome(&first), pb::MarkPaidOutcome::MarkedPaid);
    assert_eq!(outcome(&again), pb::MarkPaidOutcome::AlreadyPaid);
    let row = order::Entity::find_by_id(ORDER_ID)
        .one(&db)
        .await?
        .unwrap_or_else(|| panic!("order {ORDER_ID} vanished"));
    assert_eq!(row.pay_status.as_deref(), Some("1"));
    assert_eq!(row.order_status.as_deref(), Some("1"));
    assert_eq!(row.transaction_id.as_deref(), Some(TX));
    // TIME_END is 2024-05-01 08:09:10 Beijing time.
    assert_eq!(
        row.pay_time,
        NaiveDate::from_ymd_opt(2024, 5, 1).and_then(|d| d.and_hms_opt(0, 9, 10))
    );
    // Untouched columns stay as the original system wrote them.
    assert_eq!(row.receiver_address.as_deref(), Some("北京市昌平区"));
    assert_eq!(row.username.as_deref(), Some("szitheima"));
    let logs = order_log::Entity::find()
        .filter(order_log::Column::OrderId.eq(ORDER_ID))
        .all(&db)
        .await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].operater.as_deref(), Some("system"));
    assert_eq!(
        logs[0].remarks.as_deref(),
        Some(format!("交易流水号：{TX}").as_str())
    );
    assert_eq!(logs[0].money, Some(11800));
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_column_or_table_stops_start_up_naming_it() -> anyhow::Result<()> {
    let (without_money, _db) = original_database(true, true).await?;
    let err = order_svc::bind(verify_only(without_money.url())?)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains("tb_order_log is missing column(s) money"),
        "{err}"
    );

    let (without_anomalies, _db) = original_database(false, false).await?;
    let err = order_svc::bind(verify_only(without_anomalies.url())?)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(err.contains("table pay_anomaly is missing"), "{err}");
    assert!(!err.contains("tb_order "), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_upgrades_original_tables_in_place() -> anyhow::Result<()> {
    let (database, db) = original_database(true, false).await?;

    let server = TestServer::start(database.url()).await?;
    // A second start finds nothing left to do.
    let second = TestServer::start(database.url()).await?;
    let client = second.client().await?;
    let paid = mark_paid(&client, ORDER_ID, TX, 11800).await?;

    assert_eq!(outcome(&paid), pb::MarkPaidOutcome::MarkedPaid);
    let logs = order_log::Entity::find()
        .filter(order_log::Column::OrderId.eq(ORDER_ID))
        .all(&db)
        .await?;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].money, Some(11800));
    // Now verifiable as complete.
    order_svc::bind(verify_only(database.url())?).await?;
    server.stop().await?;
    second.stop().await?;
    Ok(())
}

/// MarkPaid of an order with a 32-character id by a 32-character transaction: paid, with its
/// ids whole in the order and in its one paid log row.
async fn pays_long_ids(client_of: &TestServer, db: &DatabaseConnection) -> anyhow::Result<()> {
    insert_original_order(db, LONG_ORDER_ID).await?;
    let client = client_of.client().await?;
    let paid = mark_paid(&client, LONG_ORDER_ID, LONG_TX, 11800).await?;
    assert_eq!(outcome(&paid), pb::MarkPaidOutcome::MarkedPaid);
    let row = order::Entity::find_by_id(LONG_ORDER_ID)
        .one(db)
        .await?
        .unwrap_or_else(|| panic!("order {LONG_ORDER_ID} vanished"));
    assert_eq!(row.transaction_id.as_deref(), Some(LONG_TX));
    let logs = order_log::Entity::find()
        .filter(order_log::Column::OrderId.eq(LONG_ORDER_ID))
        .all(db)
        .await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_script_widens_the_narrow_columns_for_long_ids() -> anyhow::Result<()> {
    let (database, db) = original_database(false, true).await?;
    let server = TestServer::start_with(verify_only(database.url())?).await?;
    pays_long_ids(&server, &db).await?;
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_widens_the_narrow_columns_keeping_logs_and_collation() -> anyhow::Result<()> {
    let (database, db) = original_database(false, false).await?;
    // The other dump's numeric log column, with a row the original system wrote.
    db.execute_unprepared("ALTER TABLE tb_order_log MODIFY order_id bigint(20) DEFAULT NULL")
        .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO tb_order_log (id, operater, operate_time, order_id, order_status, \
         pay_status, consign_status, remarks) VALUES ('1255316565131853900', 'system', \
         '2024-05-01 07:59:00', {ORDER_ID}, '0', '0', '0', '下单')"
    ))
    .await?;

    let server = TestServer::start(database.url()).await?;
    pays_long_ids(&server, &db).await?;
    let widened = |column: &str, table: &str| {
        format!(
            "SELECT CAST(CONCAT(data_type, '(', character_maximum_length, ') ', \
             IFNULL(collation_name, '')) AS CHAR) AS t FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = '{table}' AND column_name = '{column}'"
        )
    };
    let type_of = |sql: String| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    sql,
                ))
                .await?;
            anyhow::Ok(row.map(|row| row.try_get::<String>("", "t")).transpose()?)
        }
    };
    // transaction_id keeps the table's binary collation: ids stay case-sensitive.
    let transaction_id = type_of(widened("transaction_id", "tb_order")).await?;
    assert!(
        transaction_id
            .as_deref()
            .is_some_and(|t| t.starts_with("varchar(32) utf8") && t.ends_with("_bin")),
        "{transaction_id:?}"
    );
    let log_order_id = type_of(widened("order_id", "tb_order_log")).await?;
    assert!(
        log_order_id
            .as_deref()
            .is_some_and(|t| t.starts_with("varchar(200) ")),
        "{log_order_id:?}"
    );
    // The original system's log row still names its order.
    let logs = order_log::Entity::find()
        .filter(order_log::Column::OrderId.eq(ORDER_ID))
        .all(&db)
        .await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    // A restart finds nothing left to widen, and the schema now verifies.
    let again = TestServer::start(database.url()).await?;
    again.stop().await?;
    order_svc::bind(verify_only(database.url())?).await?;
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrow_columns_stop_a_verify_only_start_naming_them() -> anyhow::Result<()> {
    let (database, db) = original_database(false, true).await?;
    db.execute_unprepared(
        "ALTER TABLE tb_order MODIFY transaction_id varchar(30) COLLATE utf8_bin DEFAULT NULL",
    )
    .await?;
    db.execute_unprepared("ALTER TABLE tb_order_log MODIFY order_id bigint(20) DEFAULT NULL")
        .await?;
    let err = order_svc::bind(verify_only(database.url())?)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains("tb_order.transaction_id is varchar(30), narrower than the 32 characters"),
        "{err}"
    );
    assert!(err.contains("tb_order_log.order_id is bigint"), "{err}");
    Ok(())
}

// Setup failures panic, like the assertions.
#![allow(clippy::unwrap_used)]
//! The load tool's database check against real databases: it passes a run whose every order
//! is paid once with a log row of its amount, and names each way a payment can be wrong.

use bench::check::{Expected, paid_exactly_once};
use order_svc::testing::{Backend, TestDatabase};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

async fn database(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let database = TestDatabase::create(backend).await.unwrap();
    let db = Database::connect(database.url()).await.unwrap();
    order_svc::db::schema::migrate(&db).await.unwrap();
    (database, db)
}

/// Order `id` of 100 fen, paid by `T-<id>`, and its log rows (pay_status, money).
async fn order(db: &DatabaseConnection, id: &str, logs: &[(&str, i32)]) {
    db.execute_unprepared(&format!(
        "INSERT INTO tb_order (id, pay_money, pay_status, order_status, transaction_id) \
         VALUES ('{id}', 100, '1', '1', 'T-{id}')"
    ))
    .await
    .unwrap();
    for (n, (pay_status, money)) in logs.iter().enumerate() {
        db.execute_unprepared(&format!(
            "INSERT INTO tb_order_log (id, order_id, pay_status, money) \
             VALUES ('{id}{n}', '{id}', '{pay_status}', {money})"
        ))
        .await
        .unwrap();
    }
}

fn expected(ids: &[&str]) -> Vec<Expected> {
    ids.iter()
        .map(|id| Expected {
            order_id: (*id).to_owned(),
            transaction_id: format!("T-{id}"),
        })
        .collect()
}

async fn the_check_finds_what_is_wrong(backend: Backend) {
    let (_database, db) = database(backend).await;
    order(&db, "1001", &[("1", 100)]).await;
    let report = paid_exactly_once(&db, &expected(&["1001"])).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    order(&db, "1002", &[("1", 90)]).await;
    order(&db, "1003", &[("1", 100), ("1", 100)]).await;
    let report = paid_exactly_once(&db, &expected(&["1001", "1002", "1003", "1004"]))
        .await
        .unwrap();
    let problems = report.problems.join("\n");
    assert_eq!(report.problem_count, 4, "{problems}");
    assert!(
        problems.contains("order 1002: paid log row of Some(90) fen"),
        "{problems}"
    );
    assert!(problems.contains("order 1003: 2 log row(s)"), "{problems}");
    assert!(
        problems.contains("order 1004: not in tb_order"),
        "{problems}"
    );
}

#[tokio::test]
async fn the_check_finds_what_is_wrong_sqlite() {
    the_check_finds_what_is_wrong(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_check_finds_what_is_wrong_postgres() {
    the_check_finds_what_is_wrong(Backend::Postgres).await;
}

#[tokio::test]
async fn the_check_finds_what_is_wrong_mariadb() {
    the_check_finds_what_is_wrong(Backend::Mysql).await;
}

//! MarkPaid of a WeChat transaction that already paid another order: refused
//! (FAILED_PRECONDITION `transaction_reused`, the order left as it is), yet recorded once in
//! `pay_anomaly` with a log row, since WeChat has the money: however many copies arrive, at
//! once or through several replicas, and never answered as a refusal when it could not be
//! recorded. On every backend.

use order_svc::error::{REFUSAL_KEY, REFUSED_TRANSACTION_REUSED};
use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::proto::order::v1 as pb;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

use crate::{Harness, anomalies, mark_paid, outcome, transaction_id};

on_each_backend!(
    reused_transaction_is_refused_and_recorded_once,
    replicas_record_a_reused_transaction_once,
    a_reused_transaction_that_cannot_be_recorded_is_an_error,
    a_reused_transaction_whose_log_row_cannot_be_written_is_an_error,
);

/// The refusal as pay-svc reads it: code and `x-order-refusal`.
fn refusal(answer: &Result<pb::MarkPaidResponse, tonic::Status>) -> Option<(Code, String)> {
    let status = answer.as_ref().err()?;
    let refusal = status
        .metadata()
        .get(REFUSAL_KEY)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    Some((status.code(), refusal.to_owned()))
}

fn reused() -> Option<(Code, String)> {
    Some((
        Code::FailedPrecondition,
        REFUSED_TRANSACTION_REUSED.to_owned(),
    ))
}

async fn reused_transaction_is_refused_and_recorded_once(backend: Backend) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let paid = h.create_order(4200).await?;
    let named = h.create_order(4200).await?;
    let tx = transaction_id(500);
    h.mark_paid(&paid.id, &tx, 4200).await?;
    let paid = h.get_order(&paid.id).await?;

    for _ in 0..2 {
        let answer = h.mark_paid(&named.id, &tx, 4200).await;
        assert_eq!(refusal(&answer), reused(), "{answer:?}");
    }
    // Copies at once (on SQLite, in one group commit) still record it once.
    let copies = (0..8).map(|_| {
        let client = h.client.clone();
        let (order_id, tx) = (named.id.clone(), tx.clone());
        tokio::spawn(async move { mark_paid(&client, &order_id, &tx, 4200).await })
    });
    for copy in futures::future::join_all(copies).await {
        let answer = copy?;
        assert_eq!(refusal(&answer), reused(), "{answer:?}");
    }

    assert_eq!(h.get_order(&named.id).await?, named);
    let anomalies = h.anomalies(&named.id).await?;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let anomaly = &anomalies[0];
    assert_eq!(anomaly.kind, "transaction_reused");
    assert_eq!(
        (anomaly.transaction_id.as_str(), anomaly.amount_fen),
        (tx.as_str(), 4200)
    );
    let logs = h.logs(&named.id).await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(
        (logs[0].pay_status.as_str(), logs[0].order_status.as_str()),
        ("0", "0")
    );
    assert_eq!((logs[0].operater.as_str(), logs[0].money), ("system", 4200));
    assert!(
        logs[0].remarks.contains(&tx) && logs[0].remarks.contains("已支付其他订单"),
        "{}",
        logs[0].remarks
    );

    // The order the transaction paid is not touched.
    assert_eq!(h.get_order(&paid.id).await?, paid);
    assert_eq!(h.logs(&paid.id).await?.len(), 1);
    assert!(h.anomalies(&paid.id).await?.is_empty());
    // The order it named can still be paid by its own transaction.
    let own = h.mark_paid(&named.id, &transaction_id(501), 4200).await?;
    assert_eq!(outcome(&own), pb::MarkPaidOutcome::MarkedPaid);
    Ok(())
}

/// Two order-svc processes on one database get copies of the same refused payments at once:
/// each (order, transaction) has one anomaly and one log row, whichever process wrote them.
async fn replicas_record_a_reused_transaction_once(backend: Backend) -> anyhow::Result<()> {
    const ORDERS: usize = 4;
    const COPIES: usize = 10;
    let database = TestDatabase::create(backend).await?;
    let (a, b) = tokio::try_join!(
        TestServer::start(database.url()),
        TestServer::start(database.url())
    )?;
    let clients = [a.client().await?, b.client().await?];
    let db = Database::connect(database.url()).await?;
    let create = |pay_money| {
        let mut client = clients[0].clone();
        async move {
            let created = client
                .create_order(pb::CreateOrderRequest {
                    pay_money,
                    ..Default::default()
                })
                .await?
                .into_inner();
            anyhow::Ok(created.order.unwrap_or_default())
        }
    };
    let paid = create(900).await?;
    let tx = transaction_id(600);
    mark_paid(&clients[1], &paid.id, &tx, 900).await?;
    let mut named = Vec::new();
    for _ in 0..ORDERS {
        named.push(create(900).await?.id);
    }

    let mut calls = Vec::new();
    for order_id in &named {
        for copy in 0..COPIES {
            let client = clients[copy % 2].clone();
            let (order_id, tx) = (order_id.clone(), tx.clone());
            calls.push(tokio::spawn(async move {
                mark_paid(&client, &order_id, &tx, 900).await
            }));
        }
    }
    for call in futures::future::join_all(calls).await {
        let answer = call?;
        assert_eq!(refusal(&answer), reused(), "{answer:?}");
    }

    for order_id in &named {
        let anomalies = anomalies(&db, order_id).await?;
        assert_eq!(anomalies.len(), 1, "{order_id}: {anomalies:?}");
        assert_eq!(anomalies[0].kind, "transaction_reused");
        let logs = clients[0]
            .clone()
            .list_order_logs(pb::ListOrderLogsRequest {
                order_id: order_id.clone(),
            })
            .await?
            .into_inner()
            .logs;
        assert_eq!(logs.len(), 1, "{order_id}: {logs:?}");
        let order = clients[1]
            .clone()
            .get_order(pb::GetOrderRequest {
                id: order_id.clone(),
            })
            .await?
            .into_inner()
            .order
            .unwrap_or_default();
        assert_eq!(order.state(), pb::OrderState::Unpaid, "{order_id}");
        assert_eq!(order.transaction_id, "", "{order_id}");
    }
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

/// A confirmed payment is never dropped silently: when the anomaly cannot be written (here
/// its table is gone), MarkPaid answers an error, not the refusal, so pay-svc answers FAIL
/// and WeChat sends the notification again; the resend, once the table is back, records it.
async fn a_reused_transaction_that_cannot_be_recorded_is_an_error(
    backend: Backend,
) -> anyhow::Result<()> {
    recording_fails_while_a_table_is_gone(backend, "pay_anomaly").await
}

/// The same when the anomaly is written but its log row is not (here the log table is gone):
/// the two are one transaction, so no anomaly is left behind without its log row, and the
/// resend records both.
async fn a_reused_transaction_whose_log_row_cannot_be_written_is_an_error(
    backend: Backend,
) -> anyhow::Result<()> {
    recording_fails_while_a_table_is_gone(backend, "tb_order_log").await
}

/// Renames `table` away, sends a reused transaction and expects an error with nothing
/// recorded; then renames it back and expects the resend to be refused and recorded, with its
/// anomaly and log row.
async fn recording_fails_while_a_table_is_gone(
    backend: Backend,
    table: &str,
) -> anyhow::Result<()> {
    let h = Harness::start(backend).await?;
    let paid = h.create_order(300).await?;
    let named = h.create_order(300).await?;
    let tx = transaction_id(700);
    h.mark_paid(&paid.id, &tx, 300).await?;

    let rename = |from: &str, to: &str| format!("ALTER TABLE {table}{from} RENAME TO {table}{to}");
    h.db.execute_unprepared(&rename("", "_gone")).await?;
    let answer = h.mark_paid(&named.id, &tx, 300).await;
    let code = answer.as_ref().err().map(tonic::Status::code);
    assert!(
        matches!(
            code,
            Some(Code::Internal | Code::Unavailable | Code::Aborted)
        ),
        "{answer:?}"
    );
    h.db.execute_unprepared(&rename("_gone", "")).await?;
    assert_eq!(h.get_order(&named.id).await?, named);
    assert!(h.logs(&named.id).await?.is_empty());
    assert!(h.anomalies(&named.id).await?.is_empty());

    let resent = h.mark_paid(&named.id, &tx, 300).await;
    assert_eq!(refusal(&resent), reused(), "{resent:?}");
    let anomalies = h.anomalies(&named.id).await?;
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    assert_eq!(anomalies[0].kind, "transaction_reused");
    assert_eq!(h.logs(&named.id).await?.len(), 1);
    assert_eq!(h.get_order(&named.id).await?, named);
    Ok(())
}

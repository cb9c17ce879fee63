//! Several order-svc processes on one database: correctness must come from the database (the
//! conditional update and the anomaly key), never from anything held in one process.

use std::collections::HashMap;

use order_svc::testing::{Backend, TestDatabase, TestServer};
use paynotify::proto::order::v1 as pb;
use sea_orm::Database;

use crate::{anomalies, mark_paid, outcome, transaction_id};

const ORDERS: usize = 10;
const CALLS_PER_ORDER: usize = 20;
/// Orders from this index on get two competing transactions instead of one.
const FIRST_CONTESTED: usize = 7;

pub async fn two_servers_on_one_database_pay_exactly_once(backend: Backend) -> anyhow::Result<()> {
    let database = TestDatabase::create(backend).await?;
    // Started together, so their migrations race too.
    let (a, b) = tokio::try_join!(
        TestServer::start(database.url()),
        TestServer::start(database.url())
    )?;
    let clients = [a.client().await?, b.client().await?];
    let db = Database::connect(database.url()).await?;

    let mut orders = Vec::new();
    for i in 0..ORDERS {
        let created = clients[i % 2]
            .clone()
            .create_order(pb::CreateOrderRequest {
                pay_money: 1000 + i as i64,
                ..Default::default()
            })
            .await?
            .into_inner();
        orders.push(created.order.unwrap_or_default());
    }

    // All calls for all orders at once, alternating between the two servers.
    let mut calls = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        for call in 0..CALLS_PER_ORDER {
            let contested = i >= FIRST_CONTESTED && call % 2 == 1;
            let tx = transaction_id((i * 2 + usize::from(contested)) as u32 + 100);
            let client = clients[call % 2].clone();
            let (order_id, amount) = (order.id.clone(), order.pay_money);
            calls.push(tokio::spawn(async move {
                let response = mark_paid(&client, &order_id, &tx, amount).await;
                (order_id, response)
            }));
        }
    }
    let mut outcomes: HashMap<String, HashMap<pb::MarkPaidOutcome, usize>> = HashMap::new();
    for call in futures::future::join_all(calls).await {
        let (order_id, response) = call?;
        *outcomes
            .entry(order_id)
            .or_default()
            .entry(outcome(&response?))
            .or_insert(0) += 1;
    }

    for (i, order) in orders.iter().enumerate() {
        let seen = &outcomes[&order.id];
        let count = |o| seen.get(&o).copied().unwrap_or(0);
        assert_eq!(
            count(pb::MarkPaidOutcome::MarkedPaid),
            1,
            "order {i}: {seen:?}"
        );
        let logs = clients[0]
            .clone()
            .list_order_logs(pb::ListOrderLogsRequest {
                order_id: order.id.clone(),
            })
            .await?
            .into_inner()
            .logs;
        let anomalies = anomalies(&db, &order.id).await?;
        if i < FIRST_CONTESTED {
            assert_eq!(
                count(pb::MarkPaidOutcome::AlreadyPaid),
                CALLS_PER_ORDER - 1,
                "{seen:?}"
            );
            assert_eq!(logs.len(), 1, "order {i}: {logs:?}");
            assert!(anomalies.is_empty());
        } else {
            // Half the calls carry the losing transaction, whichever won.
            assert_eq!(
                count(pb::MarkPaidOutcome::PaymentConflict),
                CALLS_PER_ORDER / 2,
                "order {i}: {seen:?}"
            );
            assert_eq!(logs.len(), 2, "order {i}: {logs:?}");
            assert_eq!(anomalies.len(), 1, "order {i}: {anomalies:?}");
        }
    }
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

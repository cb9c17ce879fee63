//! WeChat resends, from several servers at once: one state change, one log row, every
//! reply SUCCESS, and no WeChat API calls spent on duplicates of a paid order.

use futures::future::join_all;
use order_svc::testing::Backend;

use crate::support::*;

async fn fifty_concurrent_copies_change_the_order_once(backend: Backend) {
    let stack = start(backend).await;
    let order = new_order(&stack, 1_288).await;
    let body = sign(&paid_notification(&stack, &order).await);
    let transaction_id = stack
        .sim_client()
        .order(&order.id)
        .await
        .unwrap()
        .transaction_id
        .unwrap();

    let replies = join_all((0..50).map(|_| post(&stack, body.clone()))).await;
    for (status, reply) in &replies {
        assert_eq!(*status, 200);
        assert!(is_success(reply), "{reply}");
    }
    assert_paid_once(&stack, &order.id, &transaction_id).await;

    // Once paid, duplicates are answered without asking WeChat.
    let queries_before = orderquery_calls(&stack).await;
    let replies = join_all((0..20).map(|_| post(&stack, body.clone()))).await;
    assert!(replies.iter().all(|(_, reply)| is_success(reply)));
    assert_eq!(orderquery_calls(&stack).await, queries_before);
    assert_paid_once(&stack, &order.id, &transaction_id).await;
}

#[tokio::test]
async fn fifty_concurrent_copies_change_the_order_once_sqlite() {
    fifty_concurrent_copies_change_the_order_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn fifty_concurrent_copies_change_the_order_once_postgres() {
    fifty_concurrent_copies_change_the_order_once(Backend::Postgres).await;
}

#[tokio::test]
async fn fifty_concurrent_copies_change_the_order_once_mariadb() {
    fifty_concurrent_copies_change_the_order_once(Backend::Mysql).await;
}

#[tokio::test]
async fn a_second_transaction_for_a_paid_order_is_not_acknowledged_and_overwrites_nothing() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 500).await;
    let first = paid_notification(&stack, &order).await;
    assert!(is_success(&post(&stack, sign(&first)).await.1));

    // A genuine-looking second payment (e.g. the buyer paid twice): signed, and WeChat's
    // orderquery still reports the first transaction, so it is not confirmed.
    let mut second = first.clone();
    second.transaction_id = "4200000000000000000000000001".into();
    let (_, reply) = post(&stack, sign(&second)).await;
    assert!(is_fail(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &first.transaction_id).await;
}

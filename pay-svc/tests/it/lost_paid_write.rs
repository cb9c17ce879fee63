//! pay-svc remembers the orders it has seen paid, so WeChat's resent notifications cost
//! neither order-svc nor orderquery. That memory must not outlive the database's: when a paid
//! write is lost (the database restored from a backup, a failover to a replica that missed the
//! last commits), reconciliation finds the order unpaid again and must pay it again, even on
//! the pay-svc replica that still remembers it paid.

use std::time::Duration;

use order_svc::testing::{Backend, TestDatabase};
use paynotify::proto::{
    order::v1::{CreateOrderRequest, OrderState},
    pay::v1::NotifyOutcome,
};

use crate::support::{
    Stack, bounded, paid_notification, reconciling_every_second, signed, stack, stack_with,
    start_order_svc,
};

#[tokio::test]
async fn a_resent_notification_is_answered_without_order_svc_or_wechat() {
    bounded(async {
        let mut s = stack().await;
        let (order, transaction_id) = s.paid_at_wechat(990).await;
        let notification = paid_notification(&order.id, 990, &transaction_id);
        let first = s.confirm(signed(&notification)).await.expect("first copy");
        assert_eq!(first.outcome(), NotifyOutcome::Paid, "{first:?}");
        let queries = s.orderquery_calls().await;

        // With order-svc gone, any call to it would end the resent copy in UNAVAILABLE.
        s.order_svc
            .take()
            .expect("order-svc running")
            .stop()
            .await
            .expect("order-svc stopped");
        let again = s
            .confirm(signed(&notification))
            .await
            .expect("the resent copy is answered without order-svc");
        assert_eq!(again.outcome(), NotifyOutcome::Duplicate, "{again:?}");
        assert!(again.acknowledge, "{again:?}");
        assert_eq!(s.orderquery_calls().await, queries);
    })
    .await;
}

#[tokio::test]
async fn reconciliation_pays_again_an_order_whose_paid_write_was_lost() {
    bounded(async {
        let mut s = stack_with(reconciling_every_second).await;
        let (order, transaction_id) = s.paid_at_wechat(1800).await;
        let notification = paid_notification(&order.id, 1800, &transaction_id);
        let first = s
            .confirm(signed(&notification))
            .await
            .expect("notification");
        // Reconciliation may have paid it a moment before; either way this pay-svc has now
        // seen it paid by this transaction.
        assert!(
            first.acknowledge
                && matches!(
                    first.outcome(),
                    NotifyOutcome::Paid | NotifyOutcome::Duplicate
                ),
            "{first:?}"
        );
        assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);

        // The database is restored from a backup taken before the payment: the order is there,
        // unpaid, without its paid log row, and WeChat has long been told SUCCESS.
        let restored = TestDatabase::create(Backend::Sqlite)
            .await
            .expect("restored database");
        restart_order_svc_on(&mut s, &restored).await;
        s.orders
            .create_order(CreateOrderRequest {
                id: order.id.clone(),
                pay_money: 1800,
                username: "tester".into(),
                ..CreateOrderRequest::default()
            })
            .await
            .expect("the order as the backup holds it");
        assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);
        assert!(s.logs(&order.id).await.is_empty());

        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while s.order(&order.id).await.state() != OrderState::Paid {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reconciliation did not pay the order again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let repaired = s.order(&order.id).await;
        assert_eq!(repaired.transaction_id, transaction_id);
        assert_eq!(s.logs(&order.id).await.len(), 1);

        if let Some(order_svc) = s.order_svc.take() {
            order_svc.stop().await.expect("order-svc stopped");
        }
    })
    .await;
}

/// Stops the stack's order-svc and starts one on `database` at the same address, the one
/// pay-svc was configured with.
async fn restart_order_svc_on(s: &mut Stack, database: &TestDatabase) {
    let old = s.order_svc.take().expect("order-svc running");
    let addr = old.addr();
    old.stop().await.expect("order-svc stopped");
    let (restarted, orders) = start_order_svc(database, Some(addr)).await;
    s.orders = orders;
    s.order_svc = Some(restarted);
}

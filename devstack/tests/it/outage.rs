//! A dependency down: the gateway answers FAIL, WeChat resends, and once the dependency is
//! back the payment is recorded. Nothing is lost.

use std::time::Duration;

use order_svc::testing::Backend;

use crate::support::*;

#[tokio::test]
async fn order_svc_down_then_back_the_retry_marks_the_order_paid() {
    let mut stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 880).await;
    let notification = paid_notification(&stack, &order).await;

    stack.stop_order_svc().await.unwrap();
    let (status, reply) = post(&stack, sign(&notification)).await;
    assert_eq!(status, 200);
    assert!(is_fail(&reply), "{reply}");

    // WeChat's own delivery: the simulator pays a second order while order-svc is down...
    stack.restart_order_svc().await.unwrap();
    let second = new_order(&stack, 990).await;
    stack.stop_order_svc().await.unwrap();
    let paid = stack.sim_client().pay(&second.id, true).await.unwrap();
    // ...its first attempts fail (time scale 0.001: retries after 15 ms, 15 ms, 30 ms, 180 ms...)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts = stack.sim_client().order(&second.id).await.unwrap().attempts;
    assert!(
        !attempts.is_empty() && attempts.iter().all(|a| !a.success),
        "{attempts:?}"
    );

    // ...and once order-svc is back, a later retry is acknowledged and the order is paid.
    stack.restart_order_svc().await.unwrap();
    wait_until_paid(&stack, &second.id, Duration::from_secs(30)).await;
    assert_paid_once(&stack, &second.id, &paid.transaction_id).await;
    let sim_order = stack
        .sim_client()
        .wait_for_order(&second.id, Duration::from_secs(5), |o| o.delivered)
        .await
        .unwrap();
    assert!(sim_order.attempts.len() >= 2);

    // The first notification, resent by hand now, is recorded too.
    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_success(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &notification.transaction_id).await;
}

#[tokio::test]
async fn wechat_api_failing_gets_fail_and_nothing_changes() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 100).await;
    let notification = paid_notification(&stack, &order).await;
    let mut faults = stack.sim_client().faults().await.unwrap();
    faults.orderquery_fail_ratio = 1.0;
    faults.orderquery_fail_modes = vec![
        wxpay_sim::FailMode::SystemError,
        wxpay_sim::FailMode::Http500,
    ];
    stack.sim_client().set_faults(&faults).await.unwrap();

    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_fail(&reply), "{reply}");
    assert_untouched(&stack, &order.id).await;

    faults.orderquery_fail_ratio = 0.0;
    stack.sim_client().set_faults(&faults).await.unwrap();
    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_success(&reply), "{reply}");
}

/// A payment pay-svc has seen recorded is final, so WeChat's resends of its notification are
/// acknowledged from pay-svc's memory, even while order-svc is down; a payment it has not seen
/// still gets FAIL until order-svc is back.
#[tokio::test]
async fn resends_of_a_recorded_payment_are_acknowledged_while_order_svc_is_down() {
    let mut stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 770).await;
    let notification = paid_notification(&stack, &order).await;
    let (_, reply) = post(&stack, sign(&notification)).await;
    assert!(is_success(&reply), "{reply}");
    let other = new_order(&stack, 660).await;
    let unseen = paid_notification(&stack, &other).await;
    let orderqueries = stack.sim_client().stats().await.unwrap().orderquery_calls;

    stack.stop_order_svc().await.unwrap();
    for _ in 0..3 {
        let (_, reply) = post(&stack, sign(&notification)).await;
        assert!(is_success(&reply), "{reply}");
    }
    let (_, reply) = post(&stack, sign(&unseen)).await;
    assert!(is_fail(&reply), "{reply}");
    assert_eq!(
        stack.sim_client().stats().await.unwrap().orderquery_calls,
        orderqueries,
        "a resend spent an orderquery"
    );
    stack.restart_order_svc().await.unwrap();
    assert_paid_once(&stack, &order.id, &notification.transaction_id).await;
}

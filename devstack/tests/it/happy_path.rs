//! A payment travels from the simulator through gateway, pay-svc and order-svc.

use std::time::Duration;

use order_svc::testing::Backend;

use crate::support::*;

async fn simulator_payment_marks_the_order_paid_once(backend: Backend) {
    let stack = start(backend).await;
    let order = new_order(&stack, 2_999).await;
    let paid = stack.sim_client().pay(&order.id, true).await.unwrap();
    assert_eq!(paid.total_fee, 2_999);

    let order = wait_until_paid(&stack, &order.id, Duration::from_secs(10)).await;
    assert_paid_once(&stack, &order.id, &paid.transaction_id).await;
    assert!(!order.pay_time.is_empty());

    // The simulator got the exact SUCCESS ack, so WeChat stops resending.
    let sim_order = stack
        .sim_client()
        .wait_for_order(&order.id, Duration::from_secs(5), |o| o.delivered)
        .await
        .unwrap();
    assert!(sim_order.attempts.iter().any(|a| a.success));
}

#[tokio::test]
async fn simulator_payment_marks_the_order_paid_once_sqlite() {
    simulator_payment_marks_the_order_paid_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn simulator_payment_marks_the_order_paid_once_postgres() {
    simulator_payment_marks_the_order_paid_once(Backend::Postgres).await;
}

#[tokio::test]
async fn simulator_payment_marks_the_order_paid_once_mariadb() {
    simulator_payment_marks_the_order_paid_once(Backend::Mysql).await;
}

#[tokio::test]
async fn a_posted_notification_gets_the_success_ack_and_pay_time_is_wechats() {
    let stack = start(Backend::Sqlite).await;
    let order = new_order(&stack, 100).await;
    let mut notification = paid_notification(&stack, &order).await;
    notification.time_end = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .into();
    let (status, reply) = post(&stack, sign(&notification)).await;
    assert_eq!(status, 200);
    assert!(is_success(&reply), "{reply}");
    assert_paid_once(&stack, &order.id, &notification.transaction_id).await;
    // pay_time is WeChat's time_end (sent as Beijing 20260102110405), stored in UTC.
    assert_eq!(
        order_pay_time(&stack, &order.id).await,
        "2026-01-02T03:04:05Z"
    );
}

async fn order_pay_time(stack: &devstack::Stack, id: &str) -> String {
    order(stack, id).await.pay_time
}

#[tokio::test]
async fn the_demo_runs_against_a_test_stack() {
    let stack = start(Backend::Sqlite).await;
    devstack::demo::run(&stack).await.unwrap();
}

/// Without tokens (a trusted network) every hop runs open and a payment still goes through.
#[tokio::test]
async fn a_stack_without_tokens_runs_open() {
    let database = order_svc::testing::TestDatabase::create(Backend::Sqlite)
        .await
        .unwrap();
    let mut config = devstack::StackConfig::for_tests(database.url());
    config.grpc_auth_token = None;
    config.gateway_auth_token = None;
    config.order_svc_auth_token = None;
    let stack = devstack::Stack::start(config).await.unwrap();
    let order = new_order(&stack, 1_500).await;
    let paid = stack.sim_client().pay(&order.id, true).await.unwrap();
    wait_until_paid(&stack, &order.id, Duration::from_secs(10)).await;
    assert_paid_once(&stack, &order.id, &paid.transaction_id).await;
}

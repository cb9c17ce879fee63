//! A stack per test, and the operations the tests share.

use std::time::{Duration, Instant};

use devstack::{Stack, StackConfig};
use order_svc::testing::{Backend, TestDatabase};
use paynotify::{
    proto::{
        order::v1::{
            CreateOrderRequest, GetOrderRequest, ListOrderLogsRequest, Order, OrderLog, OrderState,
        },
        pay::v1::CreateNativePayRequest,
    },
    wxpay::{reply::SUCCESS_ACK, sign::SignType},
};
use wxpay_sim::{Notification, config::DEMO_API_KEY, signed_notification};

/// A running stack and the database under it (dropped after the stack).
pub struct TestStack {
    pub stack: Stack,
    _database: TestDatabase,
}

impl std::ops::Deref for TestStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl std::ops::DerefMut for TestStack {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}

pub async fn start(backend: Backend) -> TestStack {
    let database = TestDatabase::create(backend).await.unwrap();
    let stack = Stack::start(StackConfig::for_tests(database.url()))
        .await
        .unwrap();
    TestStack {
        stack,
        _database: database,
    }
}

/// An unpaid order in order-svc that WeChat (the simulator) knows through unifiedorder.
pub async fn new_order(stack: &Stack, pay_money: i64) -> Order {
    let order = stack
        .order_client()
        .unwrap()
        .create_order(CreateOrderRequest {
            pay_money,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    stack
        .pay_client()
        .unwrap()
        .create_native_pay(CreateNativePayRequest {
            out_trade_no: order.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    order
}

/// Pays `order` in the simulator without notifying, and returns the notification WeChat
/// would send for it (to be posted by the test).
pub async fn paid_notification(stack: &Stack, order: &Order) -> Notification {
    let paid = stack.sim_client().pay(&order.id, false).await.unwrap();
    let mut notification = Notification::paid(
        &stack.config.appid,
        &stack.config.mch_id,
        &order.id,
        paid.total_fee,
    );
    notification.transaction_id = paid.transaction_id;
    notification
}

pub fn sign(notification: &Notification) -> String {
    signed_notification(notification, DEMO_API_KEY, SignType::Md5)
}

/// Posts a body to the gateway's notify URL; returns the HTTP status and the reply.
pub async fn post(stack: &Stack, body: impl Into<reqwest::Body>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(stack.notify_url())
        .header("content-type", "text/xml")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub fn is_success(reply: &str) -> bool {
    reply == SUCCESS_ACK
}

pub fn is_fail(reply: &str) -> bool {
    reply.starts_with("<xml><return_code><![CDATA[FAIL]]></return_code>")
}

pub async fn order(stack: &Stack, id: &str) -> Order {
    stack
        .order_client()
        .unwrap()
        .get_order(GetOrderRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
}

pub async fn logs(stack: &Stack, id: &str) -> Vec<OrderLog> {
    stack
        .order_client()
        .unwrap()
        .list_order_logs(ListOrderLogsRequest {
            order_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .logs
}

/// Asserts the order is unpaid with no log rows: nothing changed.
pub async fn assert_untouched(stack: &Stack, id: &str) {
    let order = order(stack, id).await;
    assert_eq!(order.state(), OrderState::Unpaid, "{order:?}");
    assert!(order.transaction_id.is_empty());
    assert!(logs(stack, id).await.is_empty());
}

/// Asserts the order is paid by `transaction_id` with exactly one log row.
pub async fn assert_paid_once(stack: &Stack, id: &str, transaction_id: &str) {
    let order = order(stack, id).await;
    assert_eq!(order.state(), OrderState::Paid, "{order:?}");
    assert_eq!(order.transaction_id, transaction_id);
    let logs = logs(stack, id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].pay_status, "1");
    assert_eq!(logs[0].operater, "system");
    assert!(logs[0].remarks.contains(transaction_id));
}

pub async fn wait_until_paid(stack: &Stack, id: &str, within: Duration) -> Order {
    let started = Instant::now();
    loop {
        let current = order(stack, id).await;
        if current.state() == OrderState::Paid {
            return current;
        }
        assert!(
            started.elapsed() < within,
            "order {id} not paid within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn orderquery_calls(stack: &Stack) -> u64 {
    stack.sim_client().stats().await.unwrap().orderquery_calls
}

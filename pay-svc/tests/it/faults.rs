//! WeChat failing in the ways the simulator can inject: orderquery answering SYSTEMERROR,
//! HTTP 500 or nothing at all. pay-svc retries a bounded number of times, then gives no
//! verdict (UNAVAILABLE) and changes nothing; WeChat will resend the notification.

use std::time::Duration;

use paynotify::proto::order::v1::OrderState;
use wxpay_sim::{FailMode, Faults};

use crate::support::{bounded, paid_notification, signed, stack_with};

/// Matches the stack's `wxpay_max_attempts` below.
const ATTEMPTS: u64 = 3;

async fn orderquery_failing(mode: FailMode) {
    let mut s = stack_with(|config| {
        config.wxpay_max_attempts = ATTEMPTS as u32;
        config.wxpay_timeout_ms = 300;
    })
    .await;
    let (order, transaction_id) = s.paid_at_wechat(2500).await;
    s.sim
        .set_faults(&Faults {
            orderquery_fail_ratio: 1.0,
            orderquery_fail_modes: vec![mode],
            ..Faults::default()
        })
        .await
        .expect("set faults");
    let before = s.orderquery_calls().await;

    let started = tokio::time::Instant::now();
    let status = s
        .confirm(signed(&paid_notification(&order.id, 2500, &transaction_id)))
        .await
        .expect_err("no verdict while WeChat fails");
    let took = started.elapsed();

    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{mode:?}: {status:?}"
    );
    assert_eq!(
        s.orderquery_calls().await - before,
        ATTEMPTS,
        "{mode:?}: retried a bounded number of times"
    );
    // 3 × 300 ms timeouts plus backoff at most, for the slowest (hanging) mode.
    assert!(took < Duration::from_secs(3), "{mode:?} took {took:?}");
    assert_eq!(s.order(&order.id).await.state(), OrderState::Unpaid);

    // Once WeChat recovers, the resent notification goes through.
    s.sim
        .set_faults(&Faults::default())
        .await
        .expect("clear faults");
    let response = s
        .confirm(signed(&paid_notification(&order.id, 2500, &transaction_id)))
        .await
        .expect("a verdict once WeChat recovers");
    assert!(response.acknowledge, "{response:?}");
    assert_eq!(s.order(&order.id).await.state(), OrderState::Paid);
}

#[tokio::test]
async fn orderquery_systemerror_means_no_verdict() {
    bounded(orderquery_failing(FailMode::SystemError)).await;
}

#[tokio::test]
async fn orderquery_http_500_means_no_verdict() {
    bounded(orderquery_failing(FailMode::Http500)).await;
}

#[tokio::test]
async fn orderquery_hanging_means_no_verdict() {
    bounded(orderquery_failing(FailMode::Hang)).await;
}

//! Reconciliation against the real order-svc and simulator: an order paid at WeChat whose
//! notification never came is marked paid (through the same checks as a notification), one
//! WeChat reports CLOSED is closed, and the rest are left alone.

use std::time::Duration;

use paynotify::{
    proto::order::v1::OrderState,
    wxpay::client::{ClientConfig, WechatClient},
};
use wxpay_sim::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};

use crate::support::{bounded, reconciling_every_second, stack_with};

#[tokio::test]
async fn reconciliation_pays_silent_payments_and_closes_closed_orders() {
    bounded(async {
        let mut s = stack_with(reconciling_every_second).await;

        // Paid at WeChat, notification never sent.
        let (silent, transaction_id) = s.paid_at_wechat(1500).await;
        // Closed at WeChat (e.g. expired).
        let closed = s.create_native_order(800).await;
        let wechat = WechatClient::new(ClientConfig {
            base_url: s.sim_url.clone(),
            ..ClientConfig::new(DEMO_APPID, DEMO_MCH_ID, DEMO_API_KEY.into())
        })
        .unwrap();
        wechat.close_order(&closed.id).await.unwrap();
        // Still NOTPAY at WeChat, and never submitted to WeChat at all.
        let waiting = s.create_native_order(600).await;
        let unknown = s.create_order(700).await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while s.order(&silent.id).await.state() != OrderState::Paid
            || s.order(&closed.id).await.state() != OrderState::Closed
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reconciliation did not settle the orders in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let paid = s.order(&silent.id).await;
        assert_eq!(paid.transaction_id, transaction_id);
        assert_eq!(s.logs(&silent.id).await.len(), 1);
        assert_eq!(s.order(&waiting.id).await.state(), OrderState::Unpaid);
        assert_eq!(s.order(&unknown.id).await.state(), OrderState::Unpaid);

        // Later runs change nothing more: still one log row for the paid order.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(s.logs(&silent.id).await.len(), 1);
        assert_eq!(s.order(&closed.id).await.state(), OrderState::Closed);
    })
    .await;
}

#[tokio::test]
async fn reconciliation_stops_with_the_server() {
    bounded(async {
        let s = stack_with(|config| {
            config.reconcile_interval_secs = 1;
            config.reconcile_min_age_secs = 0;
        })
        .await;
        // run_until returns (and with it the reconciliation task) promptly after shutdown.
        let started = tokio::time::Instant::now();
        s.pay_svc.stop().await;
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn reconciliation_queries_wechat_at_a_bounded_rate() {
    bounded(async {
        const PER_SEC: f64 = 4.0;
        let started = tokio::time::Instant::now();
        let mut s = stack_with(|config| {
            config.reconcile_interval_secs = 1;
            config.reconcile_min_age_secs = 0;
            config.reconcile_queries_per_sec = PER_SEC;
        })
        .await;
        // Twenty orders waiting at WeChat (NOTPAY): each run wants to query them all.
        for _ in 0..20 {
            s.create_native_order(100).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let calls = s.orderquery_calls().await;
        let window = started.elapsed().as_secs_f64();
        // Each run may query once at its start, then PER_SEC per second; a run starts at most
        // once a second.
        let bound = (PER_SEC * window + window + 2.0).floor() as u64;
        assert!(calls >= 1, "reconciliation never ran");
        assert!(
            calls <= bound,
            "{calls} orderquery calls in {window:.1}s (bound {bound})"
        );
    })
    .await;
}

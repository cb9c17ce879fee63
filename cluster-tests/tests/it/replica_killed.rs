//! Issue 3, a replica killed mid-run: two of every service behind a load balancer, WeChat (the
//! simulator, its retry schedule compressed a thousandfold) delivering as users pay; one
//! order-svc, one pay-svc and one gateway are `kill -9`ed a third of the way in. The
//! survivors carry on, WeChat's retries complete every payment, each exactly once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cluster_tests::{Cluster, ClusterConfig, ledger::assert_no_problems, report};
use futures::{StreamExt as _, stream};
use order_svc::testing::{Backend, TestDatabase};

use crate::support::{create_orders, one_at_a_time, pay_paced, wait_until_paid};

const ORDERS: usize = 300;
/// Users pay one order per tick, so notifications are still flowing at the kill.
const PAY_EVERY: Duration = Duration::from_millis(8);
const KILL_AFTER_PAID: usize = ORDERS / 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_and_wechat_retries_finish_every_payment_after_a_kill_9() {
    let _serial = one_at_a_time().await;
    let started = Instant::now();
    let database = TestDatabase::create(Backend::Postgres).await.unwrap();
    let mut cluster = Cluster::start(
        ClusterConfig::new(database.url(), 2, 2, 2)
            .with_balancer()
            .sim("SIM_TIME_SCALE", 0.001)
            .sim("SIM_REPLY_DEADLINE_MS", 5_000),
    )
    .await
    .unwrap();
    let notify_url = cluster.notify_url();
    let orders = create_orders(&cluster, ORDERS, |_| notify_url.clone()).await;
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();

    let progress = Arc::new(AtomicUsize::new(0));
    let payments = orders.iter().map(|o| (o.clone(), true)).collect();
    let payer = tokio::spawn(pay_paced(
        cluster.sim_client(),
        payments,
        PAY_EVERY,
        progress.clone(),
    ));
    while progress.load(Ordering::Relaxed) < KILL_AFTER_PAID {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (order_svc, pay_svc, gateway) = (
        &mut cluster.order_svcs[1],
        &mut cluster.pay_svcs[1],
        &mut cluster.gateways[1],
    );
    tokio::try_join!(order_svc.kill(), pay_svc.kill(), gateway.kill()).unwrap();
    let paid_at_kill = progress.load(Ordering::Relaxed);
    let kill_at = started.elapsed();
    let transactions = payer.await.unwrap();
    assert!(
        paid_at_kill < ORDERS,
        "the kill came after every payment: nothing was tested"
    );

    let ledger = wait_until_paid(database.url(), &ids, Duration::from_secs(60), &cluster).await;
    let all_paid_at = started.elapsed();
    let sim = cluster.sim_client();
    // Every payment's notification ends acknowledged: WeChat stops only on SUCCESS.
    let sim_orders: Vec<_> = stream::iter(&ids)
        .map(|id| sim.wait_for_order(id, Duration::from_secs(30), |o| o.delivered))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut failed_attempts = 0;
    let mut retried_orders = 0;
    for order in sim_orders {
        let order = order.unwrap();
        let failed = order.attempts.iter().filter(|a| !a.success).count();
        failed_attempts += failed;
        retried_orders += usize::from(failed > 0);
    }

    assert_no_problems(
        "paid exactly once",
        &ledger.paid_exactly_once(&transactions),
    );
    assert_eq!(ledger.log_rows(), ORDERS);
    assert!(!cluster.order_svcs[1].is_running() && !cluster.pay_svcs[1].is_running());
    let stats = sim.stats().await.unwrap();
    let forwarded = cluster
        .balancer
        .as_ref()
        .map(|b| b.forwarded())
        .unwrap_or_default();
    report(format!(
        "replica killed: {ORDERS} orders; order-svc-2, pay-svc-2 and gateway-2 killed -9 at \
         {kill_at:.1?} with {paid_at_kill} paid; all paid at {all_paid_at:.1?}; \
         {failed_attempts} failed notification attempts on {retried_orders} orders, all retried \
         to SUCCESS; notifications sent {} acked {}; balancer connections per gateway {forwarded:?}; \
         total {:.1?}",
        stats.notifications_sent,
        stats.notifications_acked,
        started.elapsed()
    ));
}
